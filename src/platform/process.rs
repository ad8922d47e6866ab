//! Another process's command line, to recognise a server left behind by a dead run before stopping it:
//! `/proc/<pid>/cmdline` on Linux, `ps` where there is no `/proc` (macOS).

use std::process::{Command, Stdio};

/// `pid`'s command line, its arguments joined by spaces, or `None` when there is no such process.
pub(crate) fn command_line(pid: u32) -> Option<String> {
    if cfg!(target_os = "linux") {
        from_proc(pid)
    } else {
        from_ps(pid)
    }
}

fn from_proc(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(parse_proc_cmdline(&raw))
}

/// `/proc/<pid>/cmdline` separates (and ends) the arguments with NUL bytes.
fn parse_proc_cmdline(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split('\0')
        .filter(|arg| !arg.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ps -ww -o command= -p PID`, as data.
fn ps_args(pid: u32) -> Vec<String> {
    ["-ww", "-o", "command=", "-p", &pid.to_string()]
        .map(String::from)
        .to_vec()
}

fn from_ps(pid: u32) -> Option<String> {
    let output = Command::new("ps")
        .args(ps_args(pid))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    // `ps` exits non-zero when no process matched.
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_separated_arguments_become_one_line() {
        assert_eq!(
            parse_proc_cmdline(b"postgres\0-D\0/dev/shm/cargo-pgtest-x/data\0"),
            "postgres -D /dev/shm/cargo-pgtest-x/data"
        );
        assert_eq!(ps_args(42), ["-ww", "-o", "command=", "-p", "42"]);
    }

    /// Polls `read` until it shows `sleep 31`, up to five seconds: right after the spawn the child may not
    /// have called exec yet, and still shows this test's command line.
    fn shows_sleep(read: impl Fn() -> Option<String>) -> Option<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let line = read();
            let done = line.as_deref().is_some_and(|l| l.ends_with("sleep 31"));
            if done || std::time::Instant::now() > deadline {
                return line;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn both_ways_read_a_live_process_and_none_for_a_dead_one() {
        let mut child = Command::new("sleep").arg("31").spawn().expect("sleep runs");
        let pid = child.id();
        let read = (
            shows_sleep(|| command_line(pid)),
            shows_sleep(|| from_proc(pid)),
            shows_sleep(|| from_ps(pid)),
        );
        child.kill().expect("sleep is stopped");
        child.wait().expect("sleep is reaped");
        let shows =
            |line: &Option<String>| line.as_deref().is_some_and(|l| l.ends_with("sleep 31"));
        assert!(shows(&read.0) && shows(&read.2), "{read:?}");
        if cfg!(target_os = "linux") {
            assert!(shows(&read.1), "{read:?}");
        }
        assert_eq!(command_line(pid), None);
        assert_eq!(from_ps(pid), None);
    }
}
