//! Starting a test process without copying cargo-pgtest's address space. A pre-exec hook (what the
//! parent-death signal needs) makes the standard library `fork()` the whole process, which copies every page
//! table of cargo-pgtest per test; without a hook it uses `posix_spawn` (`vfork`-like, nothing copied). So on
//! Linux the child is started through `pgtest-spawn PARENT PROGRAM ARGS…` (src/bin/pgtest-spawn.rs, a tiny
//! binary installed beside cargo-pgtest): it sets its parent-death signal, makes sure the parent is still the
//! one that started it, and `exec`s the program in its place (same pid, process group, pipes, environment
//! and directory; the setting survives `exec`).
//!
//! [`enable`] looks for the shim beside the running executable; where it is missing (the library's unit
//! tests run inside a test harness, or only cargo-pgtest was copied somewhere) callers fall back to the
//! pre-exec hook.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The shim's file name, beside cargo-pgtest.
pub(crate) const SHIM_NAME: &str = "pgtest-spawn";

/// The shim's executable, once [`enable`] has found it.
static SHIM: OnceLock<PathBuf> = OnceLock::new();

/// Switches the shim on for this process when it is installed beside the running executable (Linux only:
/// elsewhere there is no parent-death signal to set, and children start without a hook anyway).
pub(crate) fn enable() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let beside = std::env::current_exe().map(|exe| exe.with_file_name(SHIM_NAME));
    if let Some(shim) = beside.ok().filter(|shim| shim.is_file()) {
        let _ = SHIM.set(shim);
    }
}

/// The shim's executable when it is on.
pub(crate) fn shim() -> Option<&'static Path> {
    SHIM.get().map(PathBuf::as_path)
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
        let wrapped = through(&command, Path::new("/usr/bin/pgtest-spawn"), 4242);
        let std = wrapped.as_std();
        assert_eq!(std.get_program(), "/usr/bin/pgtest-spawn");
        let args: Vec<_> = std.get_args().collect();
        assert_eq!(args, ["4242", "/bin/test-binary", "--exact", "a test"]);
        let envs: Vec<_> = std.get_envs().collect();
        assert!(envs.contains(&("DATABASE_URL".as_ref(), Some("postgres://x".as_ref()))));
        assert!(envs.contains(&("GONE".as_ref(), None)));
        assert_eq!(std.get_current_dir(), Some(Path::new("/tmp")));
    }
}
