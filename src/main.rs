//! The `trex` binary: parse the command line and hand over to the library. Its allocator is
//! mimalloc: with glibc's, `malloc` and `free` were a tenth of a `tools/call` under load.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
