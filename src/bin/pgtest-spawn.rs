//! `pgtest-spawn PARENT PROGRAM ARGS…`: the exec shim cargo-pgtest starts its test processes through (see
//! `src/platform/exec_shim.rs`). It sets SIGKILL as its parent-death signal, dies at once when its parent
//! is no longer PARENT (the parent died before the setting took effect), then becomes PROGRAM: same pid,
//! process group, pipes, environment and directory, and the setting survives the `exec`. A binary of its
//! own, with nothing but the standard library and libc, so that starting it costs next to nothing (the
//! main binary links TLS libraries and far more code that every start would load and relocate).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let parent = args
        .get(1)
        .and_then(|p| p.to_str())
        .and_then(|p| p.parse::<libc::pid_t>().ok());
    let (Some(parent), Some(program)) = (parent, args.get(2)) else {
        eprintln!("error: pgtest-spawn is cargo-pgtest's internal helper: it expects a parent pid and a program");
        return ExitCode::from(2);
    };
    die_with(parent);
    // The standard library's exec restores SIGPIPE's default, which this program's runtime had ignored.
    let error = std::process::Command::new(program).args(&args[3..]).exec();
    eprintln!(
        "error: cargo-pgtest could not start {}: {error}",
        std::path::Path::new(program).display()
    );
    ExitCode::from(127)
}

/// SIGKILL when `parent` dies; at once if it is already gone (or the setting cannot be made).
#[cfg(target_os = "linux")]
fn die_with(parent: libc::pid_t) {
    // SAFETY: plain system calls with integer arguments.
    unsafe {
        let set = libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        if set != 0 || libc::getppid() != parent {
            libc::raise(libc::SIGKILL);
        }
    }
}

/// Elsewhere there is no parent-death signal: cargo-pgtest does not use the shim there.
#[cfg(not(target_os = "linux"))]
fn die_with(_parent: libc::pid_t) {}
