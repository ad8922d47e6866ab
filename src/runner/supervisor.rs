//! The supervisor: the one place the runner starts a child process (a test alone, tests together, doc
//! tests, a `--list`) and watches it to its end. Every child gets the same guarantees: its own process
//! group, killed with it when cargo-pgtest dies (parent-death signal), stdin closed, stdout and stderr in
//! one pipe read line by line in the order written, SLOW once per test and TIMEOUT past the limit, Ctrl-C
//! (the [`Cancel`]) stopping the whole group, and the child reaped. What the lines mean is the [`Watch`]'s
//! business; what the supervisor sees of tests it reports to the [`Dispatcher`], never as events itself.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use super::dispatch::Dispatcher;
use crate::cancel::Cancel;
use crate::events::TestId;
use crate::platform::exec_shim;

/// How long a test may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) slow_after: Duration,
    pub(crate) timeout: Option<Duration>,
}

/// What reads a child's output: it knows which tests run in the child, and since when.
pub(crate) trait Watch: Send {
    /// One line of the child's output (stdout and stderr together), without its line end.
    fn line(&mut self, line: &str, dispatch: &Dispatcher);
    /// The tests running in the child now and when each started: what SLOW and TIMEOUT are measured on.
    fn running(&self) -> Vec<(TestId, Instant)>;
    /// Whether the child is stopped at the first failure under `--fail-fast`: a child running several
    /// tests would start the rest; one running a single test ends by itself.
    fn stops_on_failure(&self) -> bool {
        false
    }
}

/// Why the supervisor stopped a child before it ended by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    Signal(&'static str),
    TimedOut(TestId),
    /// A test failed under `--fail-fast`.
    FailFast,
}

/// How a child ended.
#[derive(Debug)]
pub(crate) struct Ended {
    /// None if its exit status could not be read.
    pub(crate) status: Option<ExitStatus>,
    pub(crate) stopped: Option<Stop>,
    /// From the start to the exit of the child.
    pub(crate) ran: Duration,
}

/// Output a process that left the child's group may hold open after the child is gone: read no longer.
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

/// Runs `command` to its end under `limits` (none: no SLOW, no TIMEOUT), feeding its output to `watch`.
/// An error means it could not be started.
pub(crate) async fn supervise(
    command: Command,
    limits: Option<Limits>,
    mut cancel: Cancel,
    dispatch: &Dispatcher,
    watch: &mut dyn Watch,
) -> io::Result<Ended> {
    let started = Instant::now();
    let (mut child, output) = spawn(command)?;
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    let mut output = Lines::new(output);
    let mut stopped = None;
    let mut open = true;
    let status = loop {
        let deadline = limits
            .filter(|_| stopped.is_none())
            .and_then(|limits| next_deadline(&watch.running(), limits, dispatch));
        tokio::select! {
            status = child.wait() => break status.ok(),
            line = output.next(), if open => match line {
                Some(line) => watch.line(&line, dispatch),
                None => open = false,
            },
            _ = sleep_until(deadline) => {
                let late = limits.and_then(|limits| read_clock(&watch.running(), limits, dispatch));
                if let Some(late) = late {
                    stopped = Some(Stop::TimedOut(late));
                    kill_group(group);
                }
            }
            signal = cancel.cancelled(), if stopped.is_none() => {
                stopped = Some(Stop::Signal(signal));
                kill_group(group);
            }
            () = dispatch.failed_fast(), if stopped.is_none() && watch.stops_on_failure() => {
                stopped = Some(Stop::FailFast);
                kill_group(group);
            }
        }
    };
    let ran = started.elapsed();
    // What the child started in its group goes with it, which closes the pipe.
    kill_group(group);
    let rest = async {
        while let Some(line) = output.next().await {
            watch.line(&line, dispatch);
        }
    };
    let _ = tokio::time::timeout(DRAIN_DEADLINE, rest).await;
    Ok(Ended {
        status,
        stopped,
        ran,
    })
}

/// Starts the child: own process group, parent-death signal, stdin closed, stdout and stderr into one pipe.
/// Through the exec shim when it is on, so that no hook forces a `fork()` of cargo-pgtest (see
/// [`exec_shim`]); else with the parent-death signal set in a pre-exec hook.
fn spawn(command: Command) -> io::Result<(Child, pipe::Receiver)> {
    let mut command = match exec_shim::shim() {
        Some(shim) => exec_shim::through(&command, shim, std::process::id()),
        None => with_hook(command),
    };
    let (sender, receiver) = pipe::pipe()?;
    let stdout = sender.into_blocking_fd()?;
    let stderr = stdout.try_clone()?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        // Its own group, so a timeout or Ctrl-C stops the child and everything it started.
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn();
    // The Command holds the pipe's write ends: without it the reader sees the end once the child is gone.
    drop(command);
    Ok((child?, receiver))
}

/// The parent-death signal set between `fork` and `exec`, when the shim is off.
fn with_hook(mut command: Command) -> Command {
    // SAFETY: the hook only makes async-signal-safe system calls.
    unsafe { command.pre_exec(crate::cluster::server::die_with_parent(libc::SIGKILL)) };
    command
}

fn kill_group(group: Option<Pid>) {
    if let Some(group) = group {
        // It may be gone already; nothing is left to stop then.
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// The next moment a running test turns slow or times out.
fn next_deadline(
    running: &[(TestId, Instant)],
    limits: Limits,
    dispatch: &Dispatcher,
) -> Option<Instant> {
    running
        .iter()
        .flat_map(|(test, since)| {
            let slow = (!dispatch.was_slow(test)).then(|| *since + limits.slow_after);
            slow.into_iter().chain(limits.timeout.map(|t| *since + t))
        })
        .min()
}

/// Reports the tests that turned slow; returns the first that ran past the timeout.
fn read_clock(
    running: &[(TestId, Instant)],
    limits: Limits,
    dispatch: &Dispatcher,
) -> Option<TestId> {
    let mut late = None;
    for (test, since) in running {
        let elapsed = since.elapsed();
        if limits.timeout.is_some_and(|limit| elapsed >= limit) {
            late.get_or_insert_with(|| test.clone());
        } else if elapsed >= limits.slow_after {
            dispatch.slow(test, elapsed);
        }
    }
    late
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// A child's output, line by line, whatever its encoding.
struct Lines {
    reader: BufReader<pipe::Receiver>,
    buffer: Vec<u8>,
}

impl Lines {
    fn new(receiver: pipe::Receiver) -> Lines {
        Lines {
            reader: BufReader::new(receiver),
            buffer: Vec::new(),
        }
    }

    /// The next line; None at the end. Cancel-safe: a partly read line stays in the buffer.
    async fn next(&mut self) -> Option<String> {
        let read = self.reader.read_until(b'\n', &mut self.buffer).await;
        if matches!(read, Ok(0) | Err(_)) && self.buffer.is_empty() {
            return None;
        }
        let line = String::from_utf8_lossy(&self.buffer);
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let line = line.strip_suffix('\r').unwrap_or(line).to_owned();
        self.buffer.clear();
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects the lines, with one test running since the start.
    struct Probe {
        since: Instant,
        lines: Vec<String>,
    }

    impl Watch for Probe {
        fn line(&mut self, line: &str, _: &Dispatcher) {
            self.lines.push(line.to_owned());
        }
        fn running(&self) -> Vec<(TestId, Instant)> {
            let test = TestId {
                binary: "sh".into(),
                name: "probe".into(),
            };
            vec![(test, self.since)]
        }
    }

    async fn run_sh(script: &str, limits: Option<Limits>) -> (Ended, Vec<String>, Vec<String>) {
        let (_stop, cancel) = Cancel::new();
        run_sh_until(script, limits, cancel).await
    }

    async fn run_sh_until(
        script: &str,
        limits: Option<Limits>,
        cancel: Cancel,
    ) -> (Ended, Vec<String>, Vec<String>) {
        let (sender, mut receiver) = crate::events::channel();
        let dispatch = Dispatcher::new(sender);
        let mut probe = Probe {
            since: Instant::now(),
            lines: Vec::new(),
        };
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        let ended = supervise(command, limits, cancel, &dispatch, &mut probe)
            .await
            .unwrap();
        let mut events = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            events.push(format!("{event:?}"));
        }
        (ended, probe.lines, events)
    }

    #[tokio::test]
    async fn output_of_both_streams_comes_in_order_and_the_status_is_read() {
        let (ended, lines, _) = run_sh("echo one; echo two >&2; printf three; exit 3", None).await;
        assert_eq!(lines, ["one", "two", "three"]);
        assert_eq!(ended.status.and_then(|s| s.code()), Some(3));
        assert_eq!(ended.stopped, None);
    }

    #[tokio::test]
    async fn a_test_past_its_time_is_slow_then_stopped_with_its_whole_group() {
        let limits = Limits {
            slow_after: Duration::from_millis(100),
            timeout: Some(Duration::from_millis(400)),
        };
        // The background sleep holds the pipe open: it must die with the group.
        let (ended, _, events) = run_sh("sleep 30 & sleep 30", Some(limits)).await;
        assert!(
            matches!(ended.stopped, Some(Stop::TimedOut(ref t)) if t.name == "probe"),
            "{ended:?}"
        );
        assert!(ended.ran < Duration::from_secs(10), "{ended:?}");
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].starts_with("TestSlow"), "{events:?}");
    }

    #[tokio::test]
    async fn a_stop_request_kills_the_whole_group_at_once() {
        let (stop, cancel) = Cancel::new();
        let (sender, _receiver) = crate::events::channel();
        let dispatch = Dispatcher::new(sender);
        // Asks for the stop once the child has told the pid of the process it left in the background.
        struct StopOnFirstLine(
            Option<tokio::sync::watch::Sender<Option<&'static str>>>,
            Vec<String>,
        );
        impl Watch for StopOnFirstLine {
            fn line(&mut self, line: &str, _: &Dispatcher) {
                self.1.push(line.to_owned());
                if let Some(stop) = self.0.take() {
                    let _ = stop.send(Some("SIGINT"));
                }
            }
            fn running(&self) -> Vec<(TestId, Instant)> {
                Vec::new()
            }
        }
        let mut watch = StopOnFirstLine(Some(stop), Vec::new());
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 30 & echo $!; wait"]);
        let ended = supervise(command, None, cancel, &dispatch, &mut watch)
            .await
            .unwrap();
        assert_eq!(ended.stopped, Some(Stop::Signal("SIGINT")));
        let background = &watch.1[0];
        let stat = format!("/proc/{background}/stat");
        let deadline = Instant::now() + Duration::from_secs(5);
        // Gone, or a zombie waiting for a reaper: either way no longer running.
        let alive = || std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z "));
        while alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !alive(),
            "the background process {background} outlived its group"
        );
    }
}
