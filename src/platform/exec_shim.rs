//! Starting a test process without copying cargo-pgtest's address space. A pre-exec hook (what the
//! parent-death signal needs) makes the standard library `fork()` the whole process, which copies every page
//! table of cargo-pgtest per test; without a hook it uses `posix_spawn` (`vfork`-like, nothing copied). So on
//! Linux the child is started as cargo-pgtest itself in a tiny shim mode (`cargo-pgtest __pgtest-spawn PARENT
//! PROGRAM ARGS…`): the shim sets its parent-death signal, makes sure the parent is still the one that
//! started it, and `exec`s the program in its place (same pid, process group, pipes, environment and
//! directory; the setting survives `exec`). Its own executable is reached through `/proc/self/exe`, which
//! names the running binary even when the file on disk was replaced meanwhile.
//!
//! Only the real binary knows the shim mode, so it is switched on from `main_with_args`; elsewhere (the
//! library's unit tests run inside a test harness) callers fall back to the pre-exec hook.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

/// The first argument that selects the shim mode.
pub(crate) const MODE: &str = "__pgtest-spawn";

/// The shim's executable, once [`enable`] has been called.
static SHIM: OnceLock<PathBuf> = OnceLock::new();

/// Switches the shim on for this process (Linux only: elsewhere there is no parent-death signal to set, and
/// children start without a hook anyway).
pub(crate) fn enable() {
    if cfg!(target_os = "linux") {
        let _ = SHIM.set(PathBuf::from("/proc/self/exe"));
    }
}

/// The shim's executable when it is on.
pub(crate) fn shim() -> Option<&'static Path> {
    SHIM.get().map(PathBuf::as_path)
}

pub(crate) fn is_shim_mode(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|arg| arg == MODE)
}

/// `command` started through the shim at `shim`, for a child of `parent`: the same program, arguments,
/// environment changes and directory. (No caller clears the environment: that setting cannot be read back.)
pub(crate) fn through(
    command: &tokio::process::Command,
    shim: &Path,
    parent: u32,
) -> tokio::process::Command {
    let original = command.as_std();
    let mut wrapped = tokio::process::Command::new(shim);
    wrapped
        .arg(MODE)
        .arg(parent.to_string())
        .arg(original.get_program())
        .args(original.get_args());
    for (name, value) in original.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    if let Some(dir) = original.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// The shim: `ARGS = [exe, MODE, PARENT, PROGRAM, ARGS…]`. Sets SIGKILL as the parent-death signal, dies at
/// once when the parent is already gone, then becomes PROGRAM. Returns only when that failed (exit 127, as
/// a shell does for a command it cannot run).
pub(crate) fn main(args: Vec<OsString>) -> ExitCode {
    let parent = args
        .get(2)
        .and_then(|p| p.to_str())
        .and_then(|p| p.parse::<i32>().ok());
    let (Some(parent), Some(program)) = (parent, args.get(3)) else {
        eprintln!("error: cargo-pgtest {MODE} is internal: it expects a parent pid and a program");
        return ExitCode::from(2);
    };
    #[cfg(target_os = "linux")]
    {
        use nix::sys::signal::{raise, Signal};
        if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err()
            || nix::unistd::getppid().as_raw() != parent
        {
            // The parent died before the setting took effect (or it cannot be set): nothing would stop us.
            let _ = raise(Signal::SIGKILL);
            return ExitCode::from(137);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
    use std::os::unix::process::CommandExt;
    // The standard library's exec restores SIGPIPE's default, which the shim's runtime had ignored.
    let error = std::process::Command::new(program).args(&args[4..]).exec();
    eprintln!(
        "error: cargo-pgtest could not start {}: {error}",
        Path::new(program).display()
    );
    ExitCode::from(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_runs_the_same_program_arguments_environment_and_directory() {
        let mut command = tokio::process::Command::new("/bin/test-binary");
        command
            .args(["--exact", "a test"])
            .env("DATABASE_URL", "postgres://x")
            .env_remove("GONE")
            .current_dir("/tmp");
        let wrapped = through(&command, Path::new("/proc/self/exe"), 4242);
        let std = wrapped.as_std();
        assert_eq!(std.get_program(), "/proc/self/exe");
        let args: Vec<_> = std.get_args().collect();
        assert_eq!(
            args,
            [MODE, "4242", "/bin/test-binary", "--exact", "a test"]
        );
        let envs: Vec<_> = std.get_envs().collect();
        assert!(envs.contains(&("DATABASE_URL".as_ref(), Some("postgres://x".as_ref()))));
        assert!(envs.contains(&("GONE".as_ref(), None)));
        assert_eq!(std.get_current_dir(), Some(Path::new("/tmp")));
        assert!(is_shim_mode(&["cargo-pgtest".into(), MODE.into()]));
        assert!(!is_shim_mode(&["cargo-pgtest".into(), "pgtest".into()]));
    }
}
