//! The `trex` binary: parse the command line and hand over to the library.

fn main() -> anyhow::Result<()> {
    trex::cli::main()
}
