//! `kvserver`: one raftkv node. Flags: `kvserver --help`; details in `kvserver::cli`.
fn main() -> std::process::ExitCode {
    kvserver::cli::main(std::env::args_os())
}
