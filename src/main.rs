//! The `trex` binary: parse the command line and hand over to the library.

fn main() -> std::process::ExitCode {
    match trex::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // the message and its causes, without a backtrace
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
