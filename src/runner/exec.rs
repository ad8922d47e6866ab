//! Running test processes: listing a binary's tests, and running one test alone in its own process group
//! with its output captured, a slow-test notice, a timeout and Ctrl-C handling.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::events::{Event, EventSender, Outcome, TestId};
use super::list::TestCase;
use super::{Cancel, RunnerError};
use crate::cargo::TestBinary;

/// How long a test may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub slow_after: Duration,
    pub timeout: Option<Duration>,
}

/// Lists a binary's tests: all of them, and the ignored ones.
pub async fn list(binary: &TestBinary) -> Result<(Vec<String>, Vec<String>), RunnerError> {
    let all = list_with(binary, &[]).await?;
    let ignored = list_with(binary, &["--ignored"]).await?;
    Ok((all, ignored))
}

async fn list_with(binary: &TestBinary, extra: &[&str]) -> Result<Vec<String>, RunnerError> {
    let output = base_command(binary)
        .args(["--list", "--format", "terse"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| RunnerError::Spawn {
            binary: binary.path.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(RunnerError::List {
            binary: binary.id.clone(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(super::list::parse_terse_list(&String::from_utf8_lossy(
        &output.stdout,
    )))
}

/// A test binary's command, with the environment and directory cargo would give it.
pub fn base_command(binary: &TestBinary) -> Command {
    let mut command = Command::new(&binary.path);
    command
        .current_dir(&binary.cwd)
        .envs(binary.env.iter().map(|(k, v)| (k, v)));
    // SAFETY: the hook only makes async-signal-safe system calls.
    unsafe { command.pre_exec(crate::cluster::server::die_with_parent(libc::SIGKILL)) };
    command
}

/// What running one test gave.
#[derive(Debug)]
pub struct Finished {
    pub outcome: Outcome,
    pub duration: Duration,
    pub output: String,
}

/// Runs one test (`<binary> NAME --exact --nocapture`) with `database_env` added to its environment.
pub async fn run_test(
    case: &TestCase,
    database_env: &[(String, String)],
    limits: Limits,
    mut cancel: Cancel,
    events: &EventSender,
) -> Finished {
    let id = TestId {
        binary: case.binary.id.clone(),
        name: case.name.clone(),
    };
    let mut command = base_command(&case.binary);
    command
        .arg(&case.name)
        .args(["--exact", "--nocapture", "--test-threads", "1"]);
    if case.ignored {
        command.arg("--ignored");
    }
    let started = Instant::now();
    let not_run = |reason: String| Finished {
        outcome: Outcome::NotRun { reason },
        duration: started.elapsed(),
        output: String::new(),
    };

    // One pipe for stdout and stderr keeps the test's output in the order it was written.
    let (sender, mut receiver) = match tokio::net::unix::pipe::pipe() {
        Ok(pipe) => pipe,
        Err(error) => return not_run(format!("could not make a pipe: {error}")),
    };
    let write_end = match sender
        .into_blocking_fd()
        .and_then(|fd| Ok((fd.try_clone()?, fd)))
    {
        Ok(fds) => fds,
        Err(error) => return not_run(format!("could not make a pipe: {error}")),
    };
    command
        .envs(database_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end.0))
        .stderr(Stdio::from(write_end.1))
        // Its own process group, so a timeout or Ctrl-C can stop the test and anything it started.
        .process_group(0)
        .kill_on_drop(true);
    let spawned = command.spawn();
    // The Command holds the pipe's write ends; drop it so the reader sees the end when the test exits.
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            return not_run(format!(
                "could not start {}: {error}",
                case.binary.path.display()
            ))
        }
    };
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    let reader = tokio::spawn(async move {
        let mut output = Vec::new();
        let _ = receiver.read_to_end(&mut output).await;
        output
    });

    let slow_at = tokio::time::Instant::from_std(started + limits.slow_after);
    let timeout_at = limits
        .timeout
        .map(|t| tokio::time::Instant::from_std(started + t));
    let mut slow_reported = false;
    let mut stopped_because = None;
    let status: Option<ExitStatus> = loop {
        tokio::select! {
            status = child.wait() => break status.ok(),
            _ = tokio::time::sleep_until(slow_at), if !slow_reported => {
                slow_reported = true;
                let _ = events.send(Event::TestSlow { test: id.clone(), elapsed: started.elapsed() });
            }
            _ = sleep_until_option(timeout_at), if stopped_because.is_none() => {
                stopped_because = Some(Outcome::TimedOut);
                kill_group(group);
            }
            signal = cancel.cancelled(), if stopped_because.is_none() => {
                stopped_because = Some(Outcome::NotRun { reason: format!("stopped by {signal}") });
                kill_group(group);
            }
        }
    };
    let duration = started.elapsed();
    // Whatever the test started in its group dies with it, so the pipe closes; the deadline guards against a
    // child that escaped the group and keeps the pipe open.
    kill_group(group);
    let output = match tokio::time::timeout(Duration::from_secs(2), reader).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    };
    let outcome = stopped_because.unwrap_or_else(|| outcome_of(status));
    Finished {
        outcome,
        duration,
        output: strip_libtest_framing(&output, &case.name),
    }
}

async fn sleep_until_option(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn kill_group(group: Option<Pid>) {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// Reads a test process's exit status: 0 passed, 101 (libtest's failure code) or another code failed, a
/// signal crashed.
pub fn outcome_of(status: Option<ExitStatus>) -> Outcome {
    let Some(status) = status else {
        return Outcome::NotRun {
            reason: "its exit status could not be read".to_owned(),
        };
    };
    if status.success() {
        return Outcome::Passed;
    }
    if let Some(signal) = status.signal() {
        let name = Signal::try_from(signal)
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|_| format!("SIG{signal}"));
        return Outcome::Crashed { signal: name };
    }
    Outcome::Failed {
        exit_code: status.code(),
    }
}

/// Drops the lines libtest itself prints around a single test, leaving what the test wrote.
pub fn strip_libtest_framing(output: &str, name: &str) -> String {
    let verdict = format!("test {name} ... ");
    let listed = format!("    {name}");
    let kept: Vec<&str> = output
        .lines()
        .filter(|line| {
            let line_trimmed = line.trim_end();
            !(line_trimmed == "running 1 test"
                || line_trimmed == "running 0 tests"
                || line_trimmed == "failures:"
                || line_trimmed == "successes:"
                || line_trimmed == listed
                || line_trimmed.starts_with("test result: ")
                || line_trimmed == format!("test {name} ...")
                || line.starts_with(&verdict)
                    && matches!(&line[verdict.len()..], "ok" | "FAILED" | "ignored"))
        })
        .map(|line| line.strip_prefix(&verdict).unwrap_or(line))
        .collect();
    let mut text = kept.join("\n").trim_matches('\n').to_owned();
    // With --nocapture the verdict comes after the test's own output, alone on the last line (or glued to
    // the test's last words when it printed no newline).
    for verdict in ["FAILED", "ok"] {
        if text == verdict {
            text.clear();
        } else if let Some(rest) = text.strip_suffix(&format!("\n{verdict}")) {
            text = rest.trim_end_matches('\n').to_owned();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_become_outcomes() {
        assert_eq!(outcome_of(Some(ExitStatus::from_raw(0))), Outcome::Passed);
        assert_eq!(
            outcome_of(Some(ExitStatus::from_raw(101 << 8))),
            Outcome::Failed {
                exit_code: Some(101)
            }
        );
        assert_eq!(
            outcome_of(Some(ExitStatus::from_raw(libc::SIGSEGV))),
            Outcome::Crashed {
                signal: "SIGSEGV".into()
            }
        );
        assert_eq!(
            outcome_of(Some(ExitStatus::from_raw(libc::SIGABRT))),
            Outcome::Crashed {
                signal: "SIGABRT".into()
            }
        );
    }

    #[test]
    fn libtest_framing_is_removed_and_the_test_output_kept() {
        let output = "\nrunning 1 test\ntest db::alone ... \nthread 'db::alone' panicked at tests/db.rs:9:5:\nexpected 3 rows, found 4\nnote: run with `RUST_BACKTRACE=1`\nFAILED\n\nfailures:\n\nfailures:\n    db::alone\n\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 9 filtered out; finished in 0.01s\n\n";
        let kept = strip_libtest_framing(output, "db::alone");
        assert!(kept.starts_with("thread 'db::alone' panicked"), "{kept}");
        assert!(kept.contains("expected 3 rows, found 4"));
        assert!(!kept.contains("test result"));
        assert!(!kept.contains("running 1 test"));
        assert!(
            kept.ends_with("note: run with `RUST_BACKTRACE=1`"),
            "the trailing verdict is dropped: {kept}"
        );
    }
}
