//! Whole-binary runs against one shared database: `isolation = "shared"` (libtest's JSON event stream gives
//! per-test results and times) and doc tests (`cargo test --doc`, read from its plain output).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::events::{Event, EventSender, Outcome, TestId};
use super::exec::Limits;
use super::exec::{base_command, outcome_of};
use super::list::{TestArgs, TestCase};
use super::{Cancel, RunnerError};
use crate::cargo::TestBinary;

/// One line of libtest's JSON output, as far as the report needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum LibtestEvent {
    Started {
        name: String,
    },
    Finished {
        name: String,
        outcome: Outcome,
        duration: Option<Duration>,
        output: String,
    },
    Ignored {
        name: String,
    },
    Suite {
        filtered_out: usize,
    },
}

/// Parses one line of `--format json` output; `None` for anything else (a test's own output).
pub fn parse_libtest_line(line: &str) -> Option<LibtestEvent> {
    let value: Value = serde_json::from_str(line).ok()?;
    let event = value.get("event")?.as_str()?;
    match value.get("type")?.as_str()? {
        "suite" if event != "started" => Some(LibtestEvent::Suite {
            filtered_out: value
                .get("filtered_out")
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize,
        }),
        "test" => {
            let name = value.get("name")?.as_str()?.to_owned();
            let output = value
                .get("stdout")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let outcome = match event {
                "started" => return Some(LibtestEvent::Started { name }),
                "ignored" => return Some(LibtestEvent::Ignored { name }),
                "ok" => Outcome::Passed,
                "failed" => Outcome::Failed { exit_code: None },
                "timeout" => return None,
                _ => Outcome::Failed { exit_code: None },
            };
            Some(LibtestEvent::Finished {
                name,
                outcome,
                duration: exec_time(&value),
                output,
            })
        }
        _ => None,
    }
}

/// libtest writes `exec_time` as a number of seconds; older versions as a string such as "0.001s".
fn exec_time(value: &Value) -> Option<Duration> {
    let time = value.get("exec_time")?;
    let seconds = match time {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim_end_matches('s').parse().ok()?,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Tests of one binary run together in one process, as `cargo test` runs them (`isolation = "shared"`, and
/// the `#[sqlx::test]`s that isolate themselves), with per-test events from libtest's JSON stream. A test
/// past `slow_after` is reported SLOW; one past the timeout stops the process: it is TIMEOUT, and the tests
/// the process had not finished are NOT RUN.
pub struct Together<'a> {
    pub binary: &'a TestBinary,
    pub cases: &'a [TestCase],
    pub threads: usize,
    pub limits: Limits,
}

/// Why the process was stopped before it was done.
enum Stopped {
    Signal(&'static str),
    TimedOut(String),
}

impl Together<'_> {
    fn libtest_args(&self) -> Vec<String> {
        let mut args: Vec<String> = self.cases.iter().map(|case| case.name.clone()).collect();
        args.push("--exact".to_owned());
        if self.cases.iter().any(|case| case.ignored) {
            args.push("--include-ignored".to_owned());
        }
        args
    }

    pub async fn run(
        &self,
        database_env: &[(String, String)],
        mut cancel: Cancel,
        events: &EventSender,
    ) -> Result<(), RunnerError> {
        let binary = self.binary;
        let mut command = base_command(binary);
        command
            .args(self.libtest_args())
            .args([
                "--test-threads",
                &self.threads.to_string(),
                "-Z",
                "unstable-options",
                "--format",
                "json",
                "--report-time",
            ])
            .envs(database_env.iter().map(|(k, v)| (k, v)))
            // Only the test binary sees this (never cargo: build scripts watch it and everything would rebuild).
            .env("RUSTC_BOOTSTRAP", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| RunnerError::Spawn {
            binary: binary.path.clone(),
            source,
        })?;
        let group = child.id().map(|pid| nix::unistd::Pid::from_raw(pid as i32));
        let stop_group = || {
            if let Some(group) = group {
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
        };
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let stderr_reader = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let mut running: BTreeMap<String, Instant> = BTreeMap::new();
        let mut slow_reported: BTreeSet<String> = BTreeSet::new();
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut loose_output = String::new();
        let mut stopped: Option<Stopped> = None;
        let mut clock = tokio::time::interval(Duration::from_millis(100));
        let id = |name: &str| TestId {
            binary: binary.id.clone(),
            name: name.to_owned(),
        };
        loop {
            let line = tokio::select! {
                line = lines.next_line() => line,
                signal = cancel.cancelled() => {
                    stopped = Some(Stopped::Signal(signal));
                    stop_group();
                    break;
                }
                _ = clock.tick() => {
                    for (name, started) in &running {
                        let elapsed = started.elapsed();
                        if self.limits.timeout.is_some_and(|limit| elapsed > limit) {
                            stopped = Some(Stopped::TimedOut(name.clone()));
                        } else if elapsed > self.limits.slow_after && slow_reported.insert(name.clone()) {
                            let _ = events.send(Event::TestSlow { test: id(name), elapsed });
                        }
                    }
                    if stopped.is_some() {
                        stop_group();
                        break;
                    }
                    continue;
                }
            };
            let Ok(Some(line)) = line else { break };
            match parse_libtest_line(&line) {
                Some(LibtestEvent::Started { name }) => {
                    running.insert(name.clone(), Instant::now());
                    let _ = events.send(Event::TestStarted {
                        test: id(&name),
                        database_wait: None,
                    });
                }
                Some(LibtestEvent::Finished {
                    name,
                    outcome,
                    duration,
                    output,
                }) => {
                    running.remove(&name);
                    done.insert(name.clone());
                    let _ = events.send(Event::TestFinished {
                        test: id(&name),
                        outcome,
                        duration,
                        output,
                    });
                }
                Some(LibtestEvent::Ignored { name }) => {
                    running.remove(&name);
                    done.insert(name.clone());
                    let _ = events.send(Event::TestIgnored { test: id(&name) });
                }
                // The selection was made before the process started: libtest's own counts add nothing.
                Some(LibtestEvent::Suite { .. }) => {}
                None => {
                    loose_output.push_str(&line);
                    loose_output.push('\n');
                }
            }
        }
        let status = child.wait().await.ok();
        let stderr_text = tokio::time::timeout(Duration::from_secs(2), stderr_reader)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let output = format!("{loose_output}{stderr_text}");
        // Tests still running when the process ended died with it; the ones it never reached did not run.
        let ended = |name: &str| match &stopped {
            Some(Stopped::Signal(signal)) => Outcome::NotRun {
                reason: format!("stopped by {signal}"),
            },
            Some(Stopped::TimedOut(late)) if late == name => Outcome::TimedOut,
            Some(Stopped::TimedOut(late)) => Outcome::NotRun {
                reason: format!("its process was stopped when {late} timed out"),
            },
            None => match outcome_of(status) {
                Outcome::Passed => Outcome::Failed { exit_code: Some(0) },
                other => other,
            },
        };
        for (name, started) in &running {
            let _ = events.send(Event::TestFinished {
                test: id(name),
                outcome: ended(name),
                duration: Some(started.elapsed()),
                output: output.clone(),
            });
        }
        for case in self.cases {
            if done.contains(&case.name) || running.contains_key(&case.name) {
                continue;
            }
            let reason = match ended(&case.name) {
                Outcome::NotRun { reason } => reason,
                _ => "its process ended before it got to it".to_owned(),
            };
            let _ = events.send(Event::TestFinished {
                test: id(&case.name),
                outcome: Outcome::NotRun { reason },
                duration: None,
                output: String::new(),
            });
        }
        Ok(())
    }
}

/// One doc test's result, read from `cargo test --doc` output.
#[derive(Debug, Clone, PartialEq)]
pub struct DocTestResult {
    pub crate_name: String,
    pub name: String,
    /// None for an ignored doc test.
    pub outcome: Option<Outcome>,
    pub output: String,
}

/// Reads `cargo test --doc` output (stdout and stderr together): results, failure output and filter counts.
pub fn parse_doc_test_output(text: &str) -> (Vec<DocTestResult>, usize) {
    let mut results: Vec<DocTestResult> = Vec::new();
    let mut filtered_out = 0;
    let mut crate_name = String::new();
    let mut capturing: Option<usize> = None;
    for line in text.lines() {
        if let Some(name) = line.trim_start().strip_prefix("Doc-tests ") {
            crate_name = name.trim().to_owned();
            capturing = None;
        } else if let Some(rest) = line
            .strip_prefix("test ")
            .filter(|_| line.contains(" ... "))
        {
            let (name, verdict) = rest.rsplit_once(" ... ").unwrap_or((rest, ""));
            let outcome = match verdict.trim() {
                "ok" => Some(Outcome::Passed),
                v if v.starts_with("ignored") => None,
                _ => Some(Outcome::Failed { exit_code: None }),
            };
            results.push(DocTestResult {
                crate_name: crate_name.clone(),
                name: name.to_owned(),
                outcome,
                output: String::new(),
            });
        } else if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            capturing = results
                .iter()
                .rposition(|r| r.name == name && r.crate_name == crate_name);
        } else if line == "failures:" || line.starts_with("test result: ") {
            capturing = None;
            if let Some(count) = line
                .split("; ")
                .find_map(|part| part.strip_suffix(" filtered out"))
            {
                filtered_out += count.trim().parse::<usize>().unwrap_or(0);
            }
        } else if let Some(index) = capturing {
            results[index].output.push_str(line);
            results[index].output.push('\n');
        }
    }
    for result in &mut results {
        result.output = result.output.trim_end().to_owned();
    }
    (results, filtered_out)
}

/// Runs `cargo test --doc` and reports its tests. `cargo_args` selects packages, features and profile.
pub async fn run_doc_tests(
    cargo_args: &[String],
    args: &TestArgs,
    threads: usize,
    env: &[(String, String)],
    package_of_crate: impl Fn(&str) -> String,
    mut cancel: Cancel,
    events: &EventSender,
) -> Result<(), RunnerError> {
    let (sender, mut receiver) = tokio::net::unix::pipe::pipe().map_err(RunnerError::Pipe)?;
    let write_end = sender.into_blocking_fd().map_err(RunnerError::Pipe)?;
    let write_end_2 = write_end.try_clone().map_err(RunnerError::Pipe)?;
    let mut command = tokio::process::Command::new(crate::cargo::cargo_program());
    command
        .args(["test", "--doc", "--color", "never"])
        .args(cargo_args)
        .arg("--")
        .args(args.to_libtest_args())
        .args(["--test-threads", &threads.to_string()])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::from(write_end_2))
        .kill_on_drop(true);
    let spawned = command.spawn();
    drop(command);
    let mut child = spawned.map_err(|source| RunnerError::Spawn {
        binary: "cargo".into(),
        source,
    })?;
    let mut text = Vec::new();
    tokio::select! {
        _ = receiver.read_to_end(&mut text) => {}
        _ = cancel.cancelled() => { let _ = child.start_kill(); }
    }
    let status = child.wait().await.ok();
    let text = String::from_utf8_lossy(&text);
    let (results, filtered_out) = parse_doc_test_output(&text);
    for result in &results {
        let test = TestId {
            binary: format!("{}::doc", package_of_crate(&result.crate_name)),
            name: result.name.clone(),
        };
        let event = match &result.outcome {
            Some(outcome) => Event::TestFinished {
                test,
                outcome: outcome.clone(),
                duration: None,
                output: result.output.clone(),
            },
            None => Event::TestIgnored { test },
        };
        let _ = events.send(event);
    }
    if filtered_out > 0 {
        let _ = events.send(Event::FilteredOut {
            count: filtered_out,
        });
    }
    let failed_without_results = status.is_some_and(|s| !s.success())
        && !results
            .iter()
            .any(|r| r.outcome.as_ref().is_some_and(|o| !o.is_success()));
    if failed_without_results && cancel.signal().is_none() {
        let tail = crate::cluster::server::last_lines(&text, 30);
        let test = TestId {
            binary: "doc-tests".to_owned(),
            name: "(cargo test --doc)".to_owned(),
        };
        let _ = events.send(Event::TestFinished {
            test,
            outcome: outcome_of(status),
            duration: None,
            output: tail,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_json_lines_are_read_in_both_time_formats() {
        assert_eq!(
            parse_libtest_line(r#"{ "type": "test", "event": "started", "name": "a" }"#),
            Some(LibtestEvent::Started { name: "a".into() })
        );
        let ok = parse_libtest_line(
            r#"{ "type": "test", "name": "a", "event": "ok", "exec_time": 0.25 }"#,
        )
        .unwrap();
        assert_eq!(
            ok,
            LibtestEvent::Finished {
                name: "a".into(),
                outcome: Outcome::Passed,
                duration: Some(Duration::from_millis(250)),
                output: String::new()
            }
        );
        let old = parse_libtest_line(r#"{ "type": "test", "name": "b", "event": "failed", "exec_time": "0.5s", "stdout": "boom" }"#).unwrap();
        assert_eq!(
            old,
            LibtestEvent::Finished {
                name: "b".into(),
                outcome: Outcome::Failed { exit_code: None },
                duration: Some(Duration::from_millis(500)),
                output: "boom".into()
            }
        );
        assert_eq!(
            parse_libtest_line(
                r#"{ "type": "suite", "event": "ok", "passed": 1, "failed": 0, "ignored": 0, "measured": 0, "filtered_out": 4, "exec_time": 0.1 }"#
            ),
            Some(LibtestEvent::Suite { filtered_out: 4 })
        );
        assert_eq!(parse_libtest_line("hello from a test"), None);
        assert_eq!(
            parse_libtest_line(r#"{ "type": "test", "event": "ignored", "name": "c" }"#),
            Some(LibtestEvent::Ignored { name: "c".into() })
        );
    }

    #[test]
    fn doc_test_output_is_read() {
        let text = "   Doc-tests my_app\n\nrunning 3 tests\ntest src/lib.rs - add (line 3) ... ok\ntest src/lib.rs - sub (line 10) ... FAILED\ntest src/lib.rs - mul (line 20) ... ignored\n\nfailures:\n\n---- src/lib.rs - sub (line 10) stdout ----\nTest executable failed (exit status: 101).\nassertion failed\n\nfailures:\n    src/lib.rs - sub (line 10)\n\ntest result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 2 filtered out; finished in 0.20s\n";
        let (results, filtered) = parse_doc_test_output(text);
        assert_eq!(filtered, 2);
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].outcome, Some(Outcome::Passed));
        assert_eq!(results[0].crate_name, "my_app");
        assert_eq!(
            results[1].outcome,
            Some(Outcome::Failed { exit_code: None })
        );
        assert!(
            results[1].output.contains("assertion failed"),
            "{:?}",
            results[1].output
        );
        assert_eq!(results[2].outcome, None);
    }
}
