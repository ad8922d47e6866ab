//! Doc tests: `cargo test --doc` for the packages with a library, run by the supervisor like every other
//! child, its plain output read as it streams.
//!
//! Doc tests are named only as they end, and their number is known only per crate, so SLOW and TIMEOUT
//! are measured on the whole run: while doc tests are under way and none has ended for the limit, every
//! one still running has run at least that long (libtest starts a test only as another ends). Such a
//! stop, and a failure that names no test, are reported as [`whole_run`].

use std::collections::BTreeMap;
use std::time::Instant;

use super::dispatch::{Dispatcher, TestResult};
use super::exec::{outcome_of, Limits};
use super::libtest::{classify, Line, Verdict};
use super::selection::TestArgs;
use super::supervisor::{self, Ended, Stop, Watch};
use super::{DocTests, RunnerError};
use crate::cancel::Cancel;
use crate::events::{Outcome, TestId};

/// The name results about the whole `cargo test --doc` run go under.
pub(crate) fn whole_run() -> TestId {
    TestId {
        binary: "doc-tests".to_owned(),
        name: "(cargo test --doc)".to_owned(),
    }
}

/// cargo's arguments for the doc tests: the caller's, without any `--color` (its value included: cargo's
/// output is read here, so it is asked for without colour).
pub(crate) fn cargo_args(doc: &DocTests, args: &TestArgs, threads: usize) -> Vec<String> {
    let mut cargo = vec!["test", "--doc", "--color", "never"]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let mut given = doc.cargo_args.iter();
    while let Some(arg) = given.next() {
        if arg == "--color" {
            given.next();
        } else if !arg.starts_with("--color=") {
            cargo.push(arg.clone());
        }
    }
    cargo.push("--".to_owned());
    cargo.extend(args.to_plain_libtest_args());
    cargo.extend(["--test-threads".to_owned(), threads.to_string()]);
    cargo
}

/// Runs `cargo test --doc` and reports its tests. `package_of_crate` names the package a crate belongs to.
pub(crate) async fn run(
    cargo_args: Vec<String>,
    env: &[(String, String)],
    limits: Limits,
    package_of_crate: impl Fn(&str) -> String + Send,
    cancel: Cancel,
    dispatch: &Dispatcher,
) -> Result<(), RunnerError> {
    let mut command = tokio::process::Command::new(crate::cargo::cargo_program());
    command
        .args(cargo_args)
        .envs(env.iter().map(|(k, v)| (k, v)));
    let mut watch = DocWatch::new(package_of_crate);
    let ended = supervisor::supervise(command, Some(limits), cancel, dispatch, &mut watch)
        .await
        .map_err(|source| RunnerError::Spawn {
            binary: crate::cargo::cargo_program().into(),
            source,
        })?;
    watch.finish(&ended, dispatch);
    Ok(())
}

/// What `cargo test --doc` output tells, crate by crate.
struct DocWatch<F> {
    package_of_crate: F,
    crate_name: String,
    /// Doc tests of the current crate still to end, and when the last one ended (or they began).
    under_way: Option<(usize, Instant)>,
    /// Failed doc tests, waiting for their output at the end of their crate's run.
    failed: Vec<TestId>,
    outputs: BTreeMap<TestId, String>,
    section: Option<TestId>,
    any_failed: bool,
    filtered_out: usize,
    /// Everything, for a failure that names no doc test.
    text: String,
}

impl<F: Fn(&str) -> String + Send> DocWatch<F> {
    fn new(package_of_crate: F) -> Self {
        DocWatch {
            package_of_crate,
            crate_name: String::new(),
            under_way: None,
            failed: Vec::new(),
            outputs: BTreeMap::new(),
            section: None,
            any_failed: false,
            filtered_out: 0,
            text: String::new(),
        }
    }

    fn id(&self, name: &str) -> TestId {
        TestId {
            binary: format!("{}::doc", (self.package_of_crate)(&self.crate_name)),
            name: name.to_owned(),
        }
    }

    fn ended(&mut self, name: &str, verdict: Verdict, dispatch: &Dispatcher) {
        if let Some((left, last)) = &mut self.under_way {
            *left = left.saturating_sub(1);
            *last = Instant::now();
        }
        let test = self.id(name);
        match verdict {
            Verdict::Ok => {
                let result = TestResult {
                    outcome: Outcome::Passed,
                    duration: None,
                    output: String::new(),
                };
                dispatch.finished(test, result);
            }
            Verdict::Ignored => dispatch.ignored(test),
            Verdict::Failed => {
                self.any_failed = true;
                self.failed.push(test);
            }
        }
    }

    fn report_failures(&mut self, dispatch: &Dispatcher) {
        for test in std::mem::take(&mut self.failed) {
            let output = self.outputs.remove(&test).unwrap_or_default();
            let result = TestResult {
                outcome: Outcome::Failed { exit_code: None },
                duration: None,
                output: output.trim_end().to_owned(),
            };
            dispatch.finished(test, result);
        }
    }

    fn finish(mut self, ended: &Ended, dispatch: &Dispatcher) {
        self.report_failures(dispatch);
        dispatch.filtered_out(self.filtered_out);
        let tail = || crate::cluster::server::last_lines(&self.text, 30);
        let result = |outcome| TestResult {
            outcome,
            duration: None,
            output: tail(),
        };
        match &ended.stopped {
            Some(Stop::TimedOut(_)) => dispatch.finished(whole_run(), result(Outcome::TimedOut)),
            Some(Stop::Signal(signal)) if self.under_way.is_some() => {
                dispatch.not_run([whole_run()], &format!("stopped by {signal}"));
            }
            Some(Stop::Signal(_) | Stop::FailFast) => {}
            None if !ended.status.is_some_and(|s| s.success()) && !self.any_failed => {
                dispatch.finished(whole_run(), result(outcome_of(ended.status)));
            }
            None => {}
        }
    }
}

impl<F: Fn(&str) -> String + Send> Watch for DocWatch<F> {
    fn line(&mut self, line: &str, dispatch: &Dispatcher) {
        self.text.push_str(line);
        self.text.push('\n');
        if let Some(name) = line.trim_start().strip_prefix("Doc-tests ") {
            self.crate_name = name.trim().to_owned();
            return;
        }
        match classify(line) {
            Line::Running(count) => {
                self.under_way = (count > 0).then(|| (count, Instant::now()));
            }
            Line::Result { name, verdict } => self.ended(name, verdict, dispatch),
            Line::OutputOf(name) => self.section = Some(self.id(name)),
            Line::Summary | Line::Notice => self.section = None,
            Line::Done { filtered_out } => {
                self.section = None;
                self.under_way = None;
                self.filtered_out += filtered_out;
                self.report_failures(dispatch);
            }
            _ => {
                if let Some(test) = &self.section {
                    let output = self.outputs.entry(test.clone()).or_default();
                    output.push_str(line);
                    output.push('\n');
                }
            }
        }
    }

    fn running(&self) -> Vec<(TestId, Instant)> {
        match self.under_way {
            Some((left, last)) if left > 0 => vec![(whole_run(), last)],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{self, Event};

    #[test]
    fn doc_test_output_is_read_as_it_comes() {
        let (sender, mut receiver) = events::channel();
        let dispatch = Dispatcher::new(sender);
        let mut watch = DocWatch::new(|name: &str| name.replace('_', "-"));
        let text = "   Doc-tests my_app\n\nrunning 3 tests\ntest src/lib.rs - add (line 3) ... ok\ntest src/lib.rs - sub (line 10) ... FAILED\ntest src/lib.rs - mul (line 20) ... ignored\n\nfailures:\n\n---- src/lib.rs - sub (line 10) stdout ----\nTest executable failed (exit status: 101).\nassertion failed\n\nfailures:\n    src/lib.rs - sub (line 10)\n\ntest result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 2 filtered out; finished in 0.20s\n";
        for line in text.lines() {
            watch.line(line, &dispatch);
        }
        assert!(watch.running().is_empty(), "the crate's doc tests are over");
        let ended = Ended {
            status: None,
            stopped: None,
            ran: std::time::Duration::ZERO,
        };
        watch.finish(&ended, &dispatch);
        let events: Vec<Event> = std::iter::from_fn(|| receiver.try_recv().ok()).collect();
        let summary: Vec<String> = events
            .iter()
            .map(|event| match event {
                Event::TestFinished {
                    test,
                    outcome,
                    output,
                    ..
                } => {
                    format!("{test} {} {output:?}", outcome.label())
                }
                Event::TestIgnored { test } => format!("{test} IGNORED"),
                Event::FilteredOut { count } => format!("{count} filtered out"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "my-app::doc src/lib.rs - add (line 3) PASS \"\"",
                "my-app::doc src/lib.rs - mul (line 20) IGNORED",
                "my-app::doc src/lib.rs - sub (line 10) FAIL \"Test executable failed (exit status: 101).\\nassertion failed\"",
                "2 filtered out",
            ]
        );
    }

    #[test]
    fn the_color_flag_is_dropped_with_its_value_and_nothing_else() {
        let doc = DocTests {
            cargo_args: [
                "--features",
                "never",
                "--color",
                "always",
                "--color=auto",
                "-p",
                "always",
            ]
            .map(String::from)
            .to_vec(),
            packages: vec!["app".to_owned()],
        };
        let args = cargo_args(&doc, &TestArgs::default(), 2);
        assert_eq!(
            args,
            [
                "test",
                "--doc",
                "--color",
                "never",
                "--features",
                "never",
                "-p",
                "always",
                "--",
                "--test-threads",
                "2"
            ]
        );
    }
}
