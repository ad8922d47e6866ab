//! Tests of one binary run together in one process, as `cargo test` runs them: `isolation = "shared"`, and
//! the `#[sqlx::test]`s that isolate themselves. Per-test results come from libtest's plain output.
//!
//! libtest names a test only once it ends, but it starts them in a known order: sorted by name, the first
//! `--test-threads` at once, then the next one as each ends. That tells which tests are running and since
//! when, so SLOW and TIMEOUT are per test as elsewhere. A failed test's captured output comes in the
//! summary at the end, so its result is reported once that is read (or the process is gone).
//!
//! Under `--fail-fast` the process is stopped at the first failure (libtest itself would start every
//! remaining test): the tests it was running and the ones it had not started are NOT RUN. libtest prints
//! a failure's captured output only at its end, so that first failure comes without it, and says so.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::dispatch::{Dispatcher, Next, TestResult};
use super::exec::{base_command, outcome_of};
use super::libtest::{classify, Line, Verdict};
use super::selection::TestCase;
use super::supervisor::{self, Ended, Stop, Watch};
use super::{RunnerError, Settings};
use crate::cancel::Cancel;
use crate::cargo::TestBinary;
use crate::events::{DatabaseKind, Outcome, Start, TestId};

/// One binary's cases, run in one process with a test thread per job slot it holds.
pub(crate) struct Together<'a> {
    pub(crate) binary: &'a TestBinary,
    pub(crate) cases: &'a [TestCase],
    pub(crate) settings: &'a Settings,
    /// The job slots it holds (see [`super::slots`]): its threads, and its tests' lanes.
    pub(crate) slots: &'a [usize],
    /// The batch it is (its `batch_started` number) and its tests' database, for their `test_started`.
    pub(crate) batch: usize,
    pub(crate) database: DatabaseKind,
}

impl Together<'_> {
    fn libtest_args(&self) -> Vec<String> {
        let mut args: Vec<String> = self.cases.iter().map(|case| case.name.clone()).collect();
        args.push("--exact".to_owned());
        if self.cases.iter().any(|case| case.ignored) {
            args.push("--include-ignored".to_owned());
        }
        let threads = self.slots.len().max(1);
        args.extend(["--test-threads".to_owned(), threads.to_string()]);
        args
    }

    /// Runs the cases; returns the ones the dispatcher wants run again (`--retries`), each alone.
    pub(crate) async fn run(
        &self,
        env: &[(String, String)],
        cancel: Cancel,
        dispatch: &Dispatcher,
    ) -> Result<Vec<TestCase>, RunnerError> {
        let mut command = base_command(self.binary);
        command
            .args(self.libtest_args())
            .envs(env.iter().map(|(k, v)| (k, v)));
        let names = self.cases.iter().map(|case| case.name.clone());
        let mut watch = InOneProcess::new(&self.binary.id, names, self.slots.len())
            .on_slots(self.slots)
            .in_batch(self.batch, self.database);
        let ended = supervisor::supervise(
            command,
            Some(self.settings.limits),
            cancel,
            dispatch,
            &mut watch,
        )
        .await
        .map_err(|source| RunnerError::Spawn {
            binary: self.binary.path.clone(),
            source,
        })?;
        let again = watch.finish(&ended, dispatch);
        let again = self.cases.iter().filter(|case| again.contains(&case.name));
        Ok(again.cloned().collect())
    }
}

/// The output of the failure that stopped its process under `--fail-fast`.
const LOST_TO_FAIL_FAST: &str = "(its captured output is lost: --fail-fast stopped the process it shared with other tests before libtest printed it; run the test again without --fail-fast to see it)";

/// What the output of a process running several tests tells about them.
pub(crate) struct InOneProcess {
    binary: String,
    threads: usize,
    /// Not started yet, in the order libtest starts them.
    waiting: VecDeque<String>,
    running: BTreeMap<String, Instant>,
    done: BTreeSet<String>,
    /// Failed tests and their times, waiting for their output.
    failed: Vec<(String, Option<Duration>)>,
    outputs: BTreeMap<String, String>,
    /// The failed test whose output is being read.
    section: Option<String>,
    /// Past libtest's `failures:` line: only its summary follows.
    summary: bool,
    /// With one thread: the test libtest named as it started, whose verdict has not come yet.
    begun: Option<String>,
    /// Output no test claimed (a crash's message, output printed past libtest's capture).
    loose: String,
    /// Tests whose attempt here failed and that the dispatcher wants run again.
    again: BTreeSet<String>,
    /// The job slot of each running test (its libtest thread's, as far as one can tell), and the free ones.
    slots: BTreeMap<String, usize>,
    free: BTreeSet<usize>,
    /// The batch its tests run in and their database, for their `test_started`.
    batch: Option<usize>,
    database: DatabaseKind,
}

impl InOneProcess {
    pub(crate) fn new(
        binary: &str,
        names: impl IntoIterator<Item = String>,
        threads: usize,
    ) -> Self {
        let mut waiting: Vec<String> = names.into_iter().collect();
        waiting.sort();
        waiting.dedup();
        InOneProcess {
            binary: binary.to_owned(),
            threads: threads.max(1),
            waiting: waiting.into(),
            running: BTreeMap::new(),
            done: BTreeSet::new(),
            failed: Vec::new(),
            outputs: BTreeMap::new(),
            section: None,
            summary: false,
            begun: None,
            loose: String::new(),
            again: BTreeSet::new(),
            slots: BTreeMap::new(),
            free: (0..threads.max(1)).collect(),
            batch: None,
            database: DatabaseKind::Shared,
        }
    }

    /// The process holds the job slots `slots` (one per thread): its tests' lanes.
    pub(crate) fn on_slots(mut self, slots: &[usize]) -> Self {
        if !slots.is_empty() {
            self.free = slots.iter().copied().collect();
        }
        self
    }

    /// The process is batch `batch` of the run, its tests on a database of `database` kind.
    pub(crate) fn in_batch(mut self, batch: usize, database: DatabaseKind) -> Self {
        self.batch = Some(batch);
        self.database = database;
        self
    }

    fn id(&self, name: &str) -> TestId {
        TestId {
            binary: self.binary.clone(),
            name: name.to_owned(),
        }
    }

    fn start_next(&mut self, dispatch: &Dispatcher) {
        // After a failure under --fail-fast the process is being stopped: what libtest starts now is not run.
        if dispatch.stop_reason().is_some() {
            return;
        }
        while self.running.len() < self.threads {
            let Some(name) = self.waiting.pop_front() else {
                return;
            };
            let slot = self.free.pop_first().unwrap_or(self.threads);
            let start = Start {
                database_wait: None,
                slot,
                database: self.database,
                batch: self.batch,
            };
            dispatch.started(self.id(&name), start);
            self.slots.insert(name.clone(), slot);
            self.running.insert(name, Instant::now());
        }
    }

    fn ended(&mut self, name: &str, verdict: Verdict, dispatch: &Dispatcher) {
        if self.done.contains(name)
            || !(self.running.contains_key(name) || self.waiting.iter().any(|w| w == name))
        {
            return;
        }
        self.done.insert(name.to_owned());
        self.begun = None;
        if let Some(slot) = self.slots.remove(name) {
            self.free.insert(slot);
        }
        let duration = match self.running.remove(name) {
            Some(since) => Some(since.elapsed()),
            // Started out of the expected order: its time is unknown.
            None => {
                self.waiting.retain(|w| w != name);
                None
            }
        };
        let test = self.id(name);
        match verdict {
            Verdict::Ok => {
                let result = TestResult {
                    outcome: Outcome::Passed,
                    duration,
                    output: String::new(),
                };
                self.attempt_finished(test, result, true, dispatch);
            }
            Verdict::Ignored => dispatch.ignored(test),
            Verdict::Failed => {
                dispatch.failing(&test);
                self.failed.push((name.to_owned(), duration));
            }
        }
        self.start_next(dispatch);
    }

    /// Hands an attempt's result to the dispatcher, noting the test if it is to run again.
    fn attempt_finished(
        &mut self,
        test: TestId,
        result: TestResult,
        may_retry: bool,
        dispatch: &Dispatcher,
    ) {
        let name = test.name.clone();
        if dispatch.attempt_finished(test, result, may_retry) == Next::Retry {
            self.again.insert(name);
        }
    }

    /// Reports what is left once the process is gone: failures with their output, the tests it was
    /// running, and the ones it never reached. Returns the tests to run again.
    pub(crate) fn finish(mut self, ended: &Ended, dispatch: &Dispatcher) -> BTreeSet<String> {
        let may_retry = !matches!(ended.stopped, Some(Stop::Signal(_) | Stop::FailFast));
        let fail_fast = |test: &TestId| {
            let first = dispatch.first_failure();
            let first = first.as_ref().unwrap_or(test);
            format!("--fail-fast: its process was stopped after {first} failed")
        };
        for (name, duration) in std::mem::take(&mut self.failed) {
            let mut output = self.outputs.remove(&name).unwrap_or_default();
            if output.is_empty() && ended.stopped == Some(Stop::FailFast) {
                output = LOST_TO_FAIL_FAST.to_owned();
            }
            let outcome = Outcome::Failed { exit_code: None };
            let result = TestResult {
                outcome,
                duration,
                output: output.trim_end().to_owned(),
            };
            self.attempt_finished(self.id(&name), result, may_retry, dispatch);
        }
        let output = self.loose.trim_end().to_owned();
        for (name, since) in std::mem::take(&mut self.running) {
            let test = self.id(&name);
            let outcome = match &ended.stopped {
                Some(Stop::Signal(signal)) => Outcome::NotRun {
                    reason: format!("stopped by {signal}"),
                },
                Some(Stop::TimedOut(late)) if *late == test => Outcome::TimedOut,
                Some(Stop::TimedOut(late)) => Outcome::NotRun {
                    reason: format!("its process was stopped when {} timed out", late.name),
                },
                Some(Stop::FailFast) => Outcome::NotRun {
                    reason: fail_fast(&test),
                },
                // It was running when the process ended by itself: whatever ended it ended the test.
                None => match outcome_of(ended.status) {
                    Outcome::Passed => Outcome::Failed { exit_code: Some(0) },
                    other => other,
                },
            };
            let duration = Some(since.elapsed());
            let output = output.clone();
            let result = TestResult {
                outcome,
                duration,
                output,
            };
            self.attempt_finished(test, result, may_retry, dispatch);
        }
        let reason = match &ended.stopped {
            Some(Stop::Signal(signal)) => format!("stopped by {signal}"),
            Some(Stop::TimedOut(late)) => {
                format!("its process was stopped when {} timed out", late.name)
            }
            Some(Stop::FailFast) => dispatch.stop_reason().unwrap_or_default(),
            None => "its process ended before it got to it".to_owned(),
        };
        let waiting: Vec<TestId> = self.waiting.iter().map(|name| self.id(name)).collect();
        dispatch.not_run(waiting, &reason);
        self.again
    }
}

impl Watch for InOneProcess {
    fn line(&mut self, line: &str, dispatch: &Dispatcher) {
        match classify(line) {
            Line::Running(_) if self.running.is_empty() && self.done.is_empty() => {
                self.start_next(dispatch)
            }
            Line::Result { name, verdict } => self.ended(name, verdict, dispatch),
            Line::Begun(name) if self.running.contains_key(name) => {
                self.begun = Some(name.to_owned())
            }
            Line::Verdict(verdict) if self.begun.is_some() => {
                let name = self.begun.take().unwrap_or_default();
                self.ended(&name, verdict, dispatch);
            }
            Line::OutputOf(name) if self.done.contains(name) => {
                self.section = Some(name.to_owned())
            }
            Line::Summary => {
                self.section = None;
                self.summary = true;
            }
            Line::Done { .. } | Line::Notice => self.section = None,
            _ => match &self.section {
                Some(name) => {
                    let output = self.outputs.entry(name.clone()).or_default();
                    output.push_str(line);
                    output.push('\n');
                }
                None if !self.summary => {
                    self.loose.push_str(line);
                    self.loose.push('\n');
                }
                None => {}
            },
        }
    }

    fn running(&self) -> Vec<(TestId, Instant)> {
        self.running
            .iter()
            .map(|(name, since)| (self.id(name), *since))
            .collect()
    }

    fn stops_on_failure(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{self, Event};

    fn feed(watch: &mut InOneProcess, text: &str, dispatch: &Dispatcher) {
        for line in text.lines() {
            watch.line(line, dispatch);
        }
    }

    /// The tests finished so far, in order: name, outcome and output.
    fn finished_tests(receiver: &mut events::EventReceiver) -> Vec<(String, Outcome, String)> {
        std::iter::from_fn(|| receiver.try_recv().ok())
            .filter_map(|event| match event {
                Event::TestFinished {
                    test,
                    outcome,
                    output,
                    ..
                } => Some((test.name, outcome, output)),
                _ => None,
            })
            .collect()
    }

    fn names(running: Vec<(TestId, Instant)>) -> Vec<String> {
        running.into_iter().map(|(test, _)| test.name).collect()
    }

    #[test]
    fn each_test_takes_the_lowest_free_slot_of_its_batch() {
        let (sender, mut receiver) = events::channel();
        let dispatch = Dispatcher::new(sender);
        let cases = ["a", "b", "c", "d"].map(String::from);
        let mut watch = InOneProcess::new("app::it", cases, 2).in_batch(7, DatabaseKind::Group);
        feed(
            &mut watch,
            "\nrunning 4 tests\ntest b ... ok\ntest a ... ok\ntest c ... ok",
            &dispatch,
        );
        let starts: Vec<(String, usize)> = std::iter::from_fn(|| receiver.try_recv().ok())
            .filter_map(|event| match event {
                Event::TestStarted { test, start } => {
                    assert_eq!(
                        (start.batch, start.database),
                        (Some(7), DatabaseKind::Group)
                    );
                    Some((test.name, start.slot))
                }
                _ => None,
            })
            .collect();
        let expected = [("a", 0), ("b", 1), ("c", 1), ("d", 0)];
        assert_eq!(starts, expected.map(|(name, slot)| (name.to_owned(), slot)));
    }

    #[test]
    fn tests_start_in_libtest_order_and_failures_get_their_output() {
        let (sender, mut receiver) = events::channel();
        let dispatch = Dispatcher::new(sender);
        let cases = ["d", "b", "a", "c"].map(String::from);
        let mut watch = InOneProcess::new("app::it", cases, 2);
        assert!(
            watch.running().is_empty(),
            "nothing runs before libtest says so"
        );
        feed(&mut watch, "\nrunning 4 tests", &dispatch);
        assert_eq!(names(watch.running()), ["a", "b"]);
        feed(&mut watch, "test b ... FAILED", &dispatch);
        assert_eq!(names(watch.running()), ["a", "c"]);
        feed(
            &mut watch,
            "hello from a child process\ntest a ... ok",
            &dispatch,
        );
        assert_eq!(names(watch.running()), ["c", "d"]);
        feed(&mut watch, "test d ... ok\ntest c ... ok\n\nfailures:\n\n---- b stdout ----\nthread 'b' panicked at tests/it.rs:3:5:\nexpected 3 rows, found 4\n\n\nfailures:\n    b\n\ntest result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s", &dispatch);
        let ended = Ended {
            status: None,
            stopped: None,
            ran: Duration::ZERO,
        };
        watch.finish(&ended, &dispatch);
        let finished: Vec<_> = finished_tests(&mut receiver)
            .into_iter()
            .map(|(name, outcome, output)| (name, outcome.label(), output))
            .collect();
        let row = |name: &str, label: &str, output: &str| {
            (name.to_owned(), label.to_owned(), output.to_owned())
        };
        assert_eq!(
            finished,
            [
                row("a", "PASS", ""),
                row("d", "PASS", ""),
                row("c", "PASS", ""),
                row(
                    "b",
                    "FAIL",
                    "thread 'b' panicked at tests/it.rs:3:5:\nexpected 3 rows, found 4"
                ),
            ]
        );
    }

    #[test]
    fn a_timeout_stops_the_process_and_the_rest_is_not_run() {
        let (sender, mut receiver) = events::channel();
        let dispatch = Dispatcher::new(sender);
        let cases = ["hangs", "passes", "waits"].map(String::from);
        let mut watch = InOneProcess::new("app::it", cases, 2);
        feed(&mut watch, "running 3 tests\ntest passes ... ok", &dispatch);
        assert_eq!(names(watch.running()), ["hangs", "waits"]);
        let late = watch.running()[0].0.clone();
        let ended = Ended {
            status: None,
            stopped: Some(Stop::TimedOut(late)),
            ran: Duration::ZERO,
        };
        watch.finish(&ended, &dispatch);
        let finished: Vec<_> = finished_tests(&mut receiver)
            .into_iter()
            .map(|(name, outcome, _)| format!("{name} {}", outcome.label()))
            .collect();
        assert_eq!(finished, ["passes PASS", "hangs TIMEOUT", "waits NOT RUN"]);
    }

    #[tokio::test]
    async fn under_fail_fast_the_first_failure_stops_the_process_and_the_rest_is_not_run() {
        let (sender, mut receiver) = events::channel();
        let dispatch = Dispatcher::new(sender).fail_fast(true);
        let cases = ["a", "b", "c", "d"].map(String::from);
        let mut watch = InOneProcess::new("app::it", cases, 2);
        assert!(watch.stops_on_failure());
        feed(&mut watch, "running 4 tests\ntest a ... ok", &dispatch);
        assert_eq!(names(watch.running()), ["b", "c"]);
        let stopped = tokio::time::timeout(Duration::from_millis(10), dispatch.failed_fast());
        assert!(stopped.await.is_err(), "nothing failed yet");
        feed(&mut watch, "test b ... FAILED", &dispatch);
        let stopped = tokio::time::timeout(Duration::from_secs(5), dispatch.failed_fast());
        assert!(stopped.await.is_ok(), "the supervisor is told to stop");
        assert_eq!(names(watch.running()), ["c"], "d is not started");
        let ended = Ended {
            status: None,
            stopped: Some(Stop::FailFast),
            ran: Duration::ZERO,
        };
        watch.finish(&ended, &dispatch);
        let finished: Vec<_> = finished_tests(&mut receiver)
            .into_iter()
            .map(|(name, outcome, output)| match outcome {
                Outcome::NotRun { reason } => format!("{name} {reason}"),
                _ => format!("{name} {output}"),
            })
            .collect();
        assert_eq!(
            finished,
            [
                "a ".to_owned(),
                format!("b {LOST_TO_FAIL_FAST}"),
                "c --fail-fast: its process was stopped after app::it b failed".to_owned(),
                "d --fail-fast: not started after app::it b failed".to_owned(),
            ]
        );
    }

    #[test]
    fn with_one_thread_a_verdict_after_the_test_own_output_still_counts() {
        let (sender, mut receiver) = events::channel();
        let dispatch = Dispatcher::new(sender);
        let mut watch = InOneProcess::new("app::it", ["a".to_owned()], 1);
        feed(
            &mut watch,
            "running 1 test\ntest a ... psql: hello\nok",
            &dispatch,
        );
        assert!(watch.running().is_empty());
        let passed = std::iter::from_fn(|| receiver.try_recv().ok()).any(|event| {
            matches!(
                event,
                Event::TestFinished {
                    outcome: Outcome::Passed,
                    ..
                }
            )
        });
        assert!(passed);
    }
}
