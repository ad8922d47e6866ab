//! Children that must not outlive cargo-pgtest, even when it is killed with SIGKILL. On Linux the kernel
//! signals them (`PR_SET_PDEATHSIG`, set in a pre-exec hook). macOS has no such setting, so there the
//! server gets a [`Guardian`]: a tiny shell that reads a pipe whose only write end cargo-pgtest holds. A
//! clean teardown writes a line before closing it; a dead cargo-pgtest closes it without one (the kernel
//! closes every descriptor of a dead process), and the guardian then signals the server's process group.
//! A shell is used rather than a thread because a thread dies with its process; it is portable, so the
//! guardian is tested on Linux too.

use std::io::{self, PipeWriter, Write};
use std::process::Stdio;

use tokio::process::Command;

/// A pre-exec hook: the child gets `signal` when cargo-pgtest dies, even by SIGKILL, so no server (or test)
/// outlives its run. It runs after the switch to the server account, which would otherwise clear the
/// setting. Linux only (`PR_SET_PDEATHSIG`); elsewhere the hook does nothing, and the server is watched by a
/// [`Guardian`] instead.
pub(crate) fn die_with_parent(
    signal: libc::c_int,
) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    #[cfg(target_os = "linux")]
    {
        let parent = nix::unistd::getpid();
        let signal = nix::sys::signal::Signal::try_from(signal);
        move || {
            let signal = signal.map_err(io::Error::from)?;
            // prctl, getppid and kill are single system calls, safe between fork and exec.
            nix::sys::prctl::set_pdeathsig(signal).map_err(io::Error::from)?;
            // The parent may have died before the setting took effect: then nothing would send the signal.
            if nix::unistd::getppid() != parent {
                nix::sys::signal::raise(signal).map_err(io::Error::from)?;
            }
            Ok(())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = signal;
        || Ok(())
    }
}

/// Whether the kernel stops children when cargo-pgtest dies ([`die_with_parent`] works), so that no
/// [`Guardian`] is needed.
pub(crate) const KERNEL_STOPS_CHILDREN: bool = cfg!(target_os = "linux");

/// The line a clean teardown writes: the guardian then exits without signalling.
const RELEASE: &[u8] = b"release\n";

/// `read` fails only at the end of input with nothing read: the write end was closed without the release
/// line, so cargo-pgtest died. `$1` is the signal's name, `$2` the process group.
const GUARDIAN_SCRIPT: &str = r#"read -r _ || kill -s "$1" -- "-$2""#;

/// The guardian's command line, as data: `sh -c SCRIPT NAME SIGNAL GROUP`.
pub(crate) fn guardian_args(signal: &str, process_group: u32) -> Vec<String> {
    vec![
        "-c".into(),
        GUARDIAN_SCRIPT.into(),
        "cargo-pgtest-guardian".into(),
        signal.into(),
        process_group.to_string(),
    ]
}

/// Watches cargo-pgtest on behalf of a process group; dropping it releases the group (the owner stops the
/// server itself on every path that runs destructors).
#[derive(Debug)]
pub(crate) struct Guardian {
    release: Option<PipeWriter>,
    /// Not killed on drop: it exits by itself once released, and tokio reaps it.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "only the tests wait for the guardian")
    )]
    child: tokio::process::Child,
}

impl Guardian {
    /// Starts a guardian that sends `signal` (a name such as `QUIT`) to `process_group` if cargo-pgtest
    /// dies without releasing it.
    pub(crate) fn watch(signal: &str, process_group: u32) -> io::Result<Guardian> {
        // Both ends are close-on-exec, so no other child inherits the write end and holds the pipe open.
        let (reader, writer) = io::pipe()?;
        let mut command = Command::new("sh");
        command
            .args(guardian_args(signal, process_group))
            .env_clear()
            .stdin(Stdio::from(reader))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group: a Ctrl-C meant for cargo-pgtest must not end the watch early.
            .process_group(0);
        let child = command.spawn()?;
        Ok(Guardian {
            release: Some(writer),
            child,
        })
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        if let Some(mut writer) = self.release.take() {
            // A guardian already gone cannot signal anyone: nothing to do if the write fails.
            let _ = writer.write_all(RELEASE);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn the_guardian_signals_the_group_it_was_given() {
        let args = guardian_args("QUIT", 4242);
        assert_eq!(args[0], "-c");
        assert_eq!(args[3..], ["QUIT", "4242"]);
        assert!(args[1].contains(r#"kill -s "$1" -- "-$2""#), "{}", args[1]);
    }

    /// A `sleep` in a process group of its own, standing in for the server.
    fn server_stand_in() -> std::process::Child {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep runs")
    }

    /// Polls until the child has exited, up to five seconds.
    fn exits_soon(child: &mut std::process::Child) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[tokio::test]
    async fn a_closed_pipe_without_release_stops_the_group() {
        let mut server = server_stand_in();
        let mut guardian = Guardian::watch("TERM", server.id()).unwrap();
        // What the kernel does for a dead cargo-pgtest: the write end closes with nothing written.
        drop(guardian.release.take());
        let stopped = exits_soon(&mut server);
        let _ = server.kill();
        assert!(stopped, "the guardian did not stop the process group");
    }

    #[tokio::test]
    async fn a_released_guardian_leaves_the_group_alone() {
        let mut server = server_stand_in();
        let mut guardian = Guardian::watch("TERM", server.id()).unwrap();
        // Dropping the guardian releases it; here the release is done by hand to keep the child to wait on.
        let mut release = guardian.release.take().unwrap();
        release.write_all(RELEASE).unwrap();
        drop(release);
        let exited = tokio::time::timeout(Duration::from_secs(5), guardian.child.wait()).await;
        assert!(
            exited.is_ok_and(|status| status.is_ok()),
            "the guardian did not exit on release"
        );
        let alive = matches!(server.try_wait(), Ok(None));
        let _ = server.kill();
        let _ = server.wait();
        assert!(alive, "a released guardian stopped the process group");
    }
}
