//! The test processes the runner starts, each run by the [`supervisor`](super::supervisor): a binary's
//! `--list`, and one test alone in a process of its own; and how such a process's end reads as an outcome.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Instant;

use nix::sys::signal::Signal;
use tokio::process::Command;

use super::dispatch::{Dispatcher, TestResult};
use super::selection::TestCase;
use super::supervisor::{self, Stop, Watch};
use super::RunnerError;
use crate::cancel::Cancel;
use crate::cargo::TestBinary;
use crate::events::{Outcome, TestId};

pub(crate) use super::supervisor::Limits;

/// Lists a binary's tests: all of them, and the ignored ones; None if the run was stopped first.
pub(crate) async fn list(
    binary: &TestBinary,
    cancel: &Cancel,
    dispatch: &Dispatcher,
) -> Result<Option<(Vec<String>, Vec<String>)>, RunnerError> {
    let Some(all) = list_with(binary, &[], cancel, dispatch).await? else {
        return Ok(None);
    };
    let ignored = list_with(binary, &["--ignored"], cancel, dispatch).await?;
    Ok(ignored.map(|ignored| (all, ignored)))
}

async fn list_with(
    binary: &TestBinary,
    extra: &[&str],
    cancel: &Cancel,
    dispatch: &Dispatcher,
) -> Result<Option<Vec<String>>, RunnerError> {
    let mut command = base_command(binary);
    command.args(["--list", "--format", "terse"]).args(extra);
    let mut output = Output::default();
    let ended = supervisor::supervise(command, None, cancel.clone(), dispatch, &mut output)
        .await
        .map_err(|source| RunnerError::Spawn {
            binary: binary.path.clone(),
            source,
        })?;
    if ended.stopped.is_some() {
        return Ok(None);
    }
    if !ended.status.is_some_and(|status| status.success()) {
        return Err(RunnerError::List {
            binary: binary.id.clone(),
            status: ended
                .status
                .map_or_else(|| "exit status unknown".to_owned(), |s| s.to_string()),
            stderr: crate::cluster::server::last_lines(&output.text, 20),
        });
    }
    Ok(Some(super::selection::parse_terse_list(&output.text)))
}

/// A test binary's command, with the environment and directory cargo would give it.
pub(crate) fn base_command(binary: &TestBinary) -> Command {
    let mut command = Command::new(&binary.path);
    command
        .current_dir(&binary.cwd)
        .envs(binary.env.iter().map(|(k, v)| (k, v)));
    command
}

/// A child's whole output; with `test`, the one test it runs, since its start.
#[derive(Default)]
struct Output {
    text: String,
    test: Option<(TestId, Instant)>,
}

impl Watch for Output {
    fn line(&mut self, line: &str, _: &Dispatcher) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn running(&self) -> Vec<(TestId, Instant)> {
        self.test.iter().cloned().collect()
    }
}

/// Runs one test alone (`<binary> NAME --exact --nocapture`) with `env`, its database's variables.
pub(crate) async fn run_alone(
    case: &TestCase,
    env: &[(String, String)],
    limits: Limits,
    cancel: Cancel,
    dispatch: &Dispatcher,
) -> TestResult {
    let mut command = base_command(&case.binary);
    command
        .arg(&case.name)
        .args(["--exact", "--nocapture", "--test-threads", "1"])
        .envs(env.iter().map(|(k, v)| (k, v)));
    if case.ignored {
        command.arg("--ignored");
    }
    let test = TestId {
        binary: case.binary.id.clone(),
        name: case.name.clone(),
    };
    let started = Instant::now();
    let mut output = Output {
        text: String::new(),
        test: Some((test, started)),
    };
    match supervisor::supervise(command, Some(limits), cancel, dispatch, &mut output).await {
        Ok(ended) => TestResult {
            outcome: match ended.stopped {
                Some(Stop::TimedOut(_)) => Outcome::TimedOut,
                Some(Stop::Signal(signal)) => Outcome::NotRun {
                    reason: format!("stopped by {signal}"),
                },
                // A test alone is never stopped for another's failure.
                Some(Stop::FailFast) | None => outcome_of(ended.status),
            },
            duration: Some(ended.ran),
            output: strip_libtest_framing(&output.text, &case.name),
        },
        Err(error) => TestResult {
            outcome: Outcome::NotRun {
                reason: format!("could not start {}: {error}", case.binary.path.display()),
            },
            duration: Some(started.elapsed()),
            output: String::new(),
        },
    }
}

/// Reads a test process's exit status: 0 passed, 101 (libtest's failure code) or another code failed, a
/// signal crashed.
pub(crate) fn outcome_of(status: Option<ExitStatus>) -> Outcome {
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
pub(crate) fn strip_libtest_framing(output: &str, name: &str) -> String {
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
