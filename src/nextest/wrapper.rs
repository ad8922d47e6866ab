//! The target runner nextest starts for every test binary invocation: `cargo-pgtest __pgtest-exec
//! <binary> <args>...`. A listing (`--list`) is the binary as it is; a test gets a fresh database from the
//! cargo-pgtest that started nextest (see [`super::protocol`]) and the test binary is then exec'd in this
//! very process, holding the connection: its pid, exit status, signals and output stay nextest's to see,
//! and the connection closing is how cargo-pgtest learns the test ended. Synchronous and std-only: it
//! runs once per test.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

use super::protocol::{Reply, Request};
use super::{SOCKET_ENV, WRAPPER_MODE};
use crate::exit_code;

/// Why a test could not be started with a database.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WrapperError {
    #[error("`cargo-pgtest {WRAPPER_MODE}` needs the test binary to run as its first argument; it is the target runner `cargo pgtest nextest` sets, not a command to run by hand")]
    NoBinary,
    #[error("{SOCKET_ENV} is not set: `cargo-pgtest {WRAPPER_MODE}` only works under `cargo pgtest nextest`, which sets it")]
    NoSocket,
    #[error("could not reach cargo-pgtest at {socket} for a test database: {source} (did the `cargo pgtest nextest` that started this run end?)")]
    Connect {
        socket: String,
        source: std::io::Error,
    },
    #[error("lost cargo-pgtest while asking it for a test database: {0}")]
    Talk(#[source] std::io::Error),
    #[error("cargo-pgtest answered something unexpected while handing out a test database: {0}")]
    Protocol(String),
    #[error("cargo-pgtest could not make a database for this test: {0}")]
    Refused(String),
    #[error("could not run the test binary {binary}: {source}")]
    Exec {
        binary: String,
        source: std::io::Error,
    },
}

/// The whole runner mode: `args` are the process's arguments (`[exe, WRAPPER_MODE, binary, args...]`).
/// Returns only when the test binary could not be started.
pub(crate) fn main(args: Vec<OsString>) -> ExitCode {
    let error = run(args);
    eprintln!("error: {error}");
    ExitCode::from(exit_code::SETUP_FAILED)
}

fn run(args: Vec<OsString>) -> WrapperError {
    let mut args = args.into_iter().skip(2);
    let Some(binary) = args.next() else {
        return WrapperError::NoBinary;
    };
    let args: Vec<OsString> = args.collect();
    let mut command = Command::new(&binary);
    command.args(&args).env_remove(SOCKET_ENV);
    // Listing runs no test: no database.
    if !args.iter().any(|arg| arg == "--list") {
        match database_for_test(&mut command) {
            // Kept open (and inherited) for the test's whole life: its end tells cargo-pgtest to drop.
            Ok(connection) => std::mem::forget(connection),
            Err(error) => return error,
        }
    }
    let source = command.exec();
    WrapperError::Exec {
        binary: Path::new(&binary).display().to_string(),
        source,
    }
}

/// Asks cargo-pgtest for a database and puts its variables on `command`; returns the connection, made
/// inheritable so the test holds it.
fn database_for_test(command: &mut Command) -> Result<UnixStream, WrapperError> {
    let socket = std::env::var_os(SOCKET_ENV)
        .filter(|s| !s.is_empty())
        .ok_or(WrapperError::NoSocket)?;
    let connection = UnixStream::connect(&socket).map_err(|source| WrapperError::Connect {
        socket: Path::new(&socket).display().to_string(),
        source,
    })?;
    // nextest sets the package's name, as cargo does for tests.
    let package = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
    (&connection)
        .write_all(Request { package }.line().as_bytes())
        .map_err(WrapperError::Talk)?;
    let mut reader = BufReader::new(&connection);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(WrapperError::Talk)? == 0 {
            return Err(WrapperError::Protocol(
                "the connection closed before a database was named".into(),
            ));
        }
        match Reply::parse(&line).map_err(WrapperError::Protocol)? {
            Reply::Env(key, value) => {
                command.env(key, value);
            }
            Reply::Unset(key) => {
                command.env_remove(key);
            }
            Reply::Ready(_) => break,
            Reply::Error(message) => return Err(WrapperError::Refused(message)),
        }
    }
    drop(reader);
    inheritable(&connection).map_err(WrapperError::Talk)?;
    Ok(connection)
}

/// Clears close-on-exec, which std sets on every descriptor it opens.
fn inheritable(connection: &UnixStream) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::fd::AsRawFd;
    let fd = connection.as_fd().as_raw_fd();
    let flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD)?);
    fcntl(fd, FcntlArg::F_SETFD(flags - FdFlag::FD_CLOEXEC))?;
    Ok(())
}
