//! `cargo pgtest nextest`: the suite run by cargo-nextest against cargo-pgtest's cluster. cargo-pgtest
//! boots the cluster and prepares the templates as for any run, then starts `cargo nextest run` with
//! itself as the target runner ([`wrapper`]): every test process nextest starts asks cargo-pgtest, over
//! a socket in the run directory ([`broker`], [`protocol`]), for a database of its own, cloned ahead
//! ([`pool`]), and that database is dropped when the process ends. nextest keeps everything else: its
//! profiles, filters, retries (each attempt a new process, so a new database), partitions, archives and
//! reports. Its exit code becomes cargo-pgtest's.

pub(crate) mod broker;
pub(crate) mod command;
pub(crate) mod pool;
pub(crate) mod protocol;
pub(crate) mod wrapper;

use std::ffi::OsString;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Child;

use crate::cancel::Cancel;
use crate::exit_code;

/// The first argument that puts cargo-pgtest in its target-runner mode.
pub(crate) const WRAPPER_MODE: &str = "__pgtest-exec";
/// The variable through which the target runner finds cargo-pgtest's socket.
pub(crate) const SOCKET_ENV: &str = "PGTEST_NEXTEST_SOCKET";
/// How long nextest gets to stop its tests after the run is stopped, before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Whether `args` (the process's arguments) ask for the target-runner mode.
pub(crate) fn is_wrapper_mode(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|arg| arg == WRAPPER_MODE)
}

/// The target-runner mode: see [`wrapper`].
pub(crate) fn wrapper_main(args: Vec<OsString>) -> std::process::ExitCode {
    wrapper::main(args)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum NextestError {
    #[error("cargo-nextest is not installed (`cargo nextest --version` failed): install it with `{}`, or run the tests with `cargo pgtest` alone", command::INSTALL)]
    NotInstalled,
    #[error(
        "could not run cargo to look for cargo-nextest: {source}; is cargo on PATH (or CARGO set)?"
    )]
    Cargo { source: std::io::Error },
    #[error("could not run `{rustc} -vV` to learn the host's target triple for nextest's target runner: {source}; pass `--target <triple>` to nextest")]
    Rustc {
        rustc: String,
        source: std::io::Error,
    },
    #[error(
        "`{rustc} -vV` did not name the host's target triple; pass `--target <triple>` to nextest"
    )]
    NoHost { rustc: String },
    #[error("cargo-pgtest's own path {path} has a space in it, which a cargo target runner cannot hold; install cargo-pgtest under a path without spaces")]
    ExePath { path: String },
    #[error(
        "could not find cargo-pgtest's own executable to make it nextest's target runner: {0}"
    )]
    Exe(#[source] std::io::Error),
    #[error(
        "cargo-nextest does not run doc tests: drop `--doc` (run them with `cargo pgtest --doc`)"
    )]
    DocTests,
    #[error("could not open the socket through which nextest's tests get their databases, in {dir}: {source}")]
    Socket { dir: String, source: std::io::Error },
    #[error("could not start `cargo nextest run`: {source}")]
    Spawn { source: std::io::Error },
    #[error("`cargo nextest run` {}", describe(*.status))]
    Failed { status: ExitStatus },
}

/// What an exit status of nextest's means, for the error line under its own report.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(100), _) => {
            "failed: at least one test failed (exit code 100; nextest's summary is above)".into()
        }
        (Some(101), _) => "failed: the build failed (exit code 101)".into(),
        (Some(4), _) => "ran no tests (exit code 4): nextest's filters matched none".into(),
        (Some(code), _) => format!("failed with exit code {code} (nextest's message is above)"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended without an exit status".into(),
    }
}

impl NextestError {
    /// nextest's own exit code when it ran; 2 (setup failed) when it could not.
    pub(crate) fn exit_code(&self) -> u8 {
        use std::os::unix::process::ExitStatusExt;
        match self {
            NextestError::Failed { status } => match (status.code(), status.signal()) {
                (Some(code), _) => u8::try_from(code).unwrap_or(exit_code::TEST_FAILED),
                (None, Some(signal)) => 128u8.saturating_add(signal as u8),
                (None, None) => exit_code::TEST_FAILED,
            },
            _ => exit_code::SETUP_FAILED,
        }
    }
}

/// Waits for nextest to end. A stop request (Ctrl-C, SIGTERM) is passed on to it, since a signal sent to
/// cargo-pgtest alone would not reach it; if it has not ended [`STOP_GRACE`] later, it is killed.
pub(crate) async fn wait(
    child: &mut Child,
    mut cancel: Cancel,
) -> Result<ExitStatus, NextestError> {
    let waited = tokio::select! {
        status = child.wait() => Some(status),
        signal = cancel.cancelled() => {
            if let Some(pid) = child.id() {
                let signal = if signal == "SIGTERM" { Signal::SIGTERM } else { Signal::SIGINT };
                // It may have ended already.
                let _ = kill(Pid::from_raw(pid as i32), signal);
            }
            None
        }
    };
    let status = match waited {
        Some(status) => status,
        None => match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                let _ = child.start_kill();
                child.wait().await
            }
        },
    };
    status.map_err(|source| NextestError::Spawn { source })
}
