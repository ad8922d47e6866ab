//! `cargo-pgtest`: run as `cargo pgtest`. Everything lives in the library; this only hands over the arguments.

fn main() -> std::process::ExitCode {
    cargo_pgtest::main_with_args(std::env::args_os())
}
