//! The dispatcher: the one place where what the runner learns about tests becomes [`Event`]s. Executors
//! (the supervisor and what reads a child's output) and the scheduler report here; nothing else in the
//! runner builds a test's event. It also keeps the run's ledger, so every test announced in `RunStarted`
//! ends in exactly one `TestFinished`: [`Dispatcher::close`] gives the ones never reached NOT RUN.
//! Under `--fail-fast` it is also what notices the first failure, which the schedulers read before
//! starting another test, and which the supervisor awaits to stop a process running several tests
//! (libtest would go on starting the rest).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::events::{
    BatchKind, Event, EventReceiver, EventSender, Outcome, Stamped, Start, TestId,
};

/// Cheap to clone; every clone reports into the same run.
#[derive(Debug, Clone)]
pub(crate) struct Dispatcher {
    events: EventSender,
    ledger: Arc<Mutex<Ledger>>,
    /// Turns true at the first failure under `--fail-fast`.
    failed_fast: Arc<tokio::sync::watch::Sender<bool>>,
    /// The number the next batch gets.
    batches: Arc<AtomicUsize>,
}

#[derive(Debug, Default)]
struct Ledger {
    /// Announced and not finished yet.
    pending: BTreeSet<TestId>,
    /// Finished: a second result for one of these is dropped.
    finished: BTreeSet<TestId>,
    /// Reported SLOW (once per test).
    slow: BTreeSet<TestId>,
    /// Ran and did not pass (their databases may be kept).
    failed: BTreeSet<TestId>,
    /// What a failure leads to: retries, fail-fast.
    on_failure: OnFailure,
    /// The failed attempts of tests being retried.
    attempts: BTreeMap<TestId, Vec<TestResult>>,
    /// The test that failed first under `--fail-fast`.
    first_failure: Option<TestId>,
}

/// What a failure leads to, one of the run's settings ([`super::Settings`]): how many more times a failing
/// test is run (`--retries`, the `retries` key), and whether the first failure stops the run
/// (`--fail-fast`: no test is started after it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OnFailure {
    pub(crate) retries: usize,
    pub(crate) fail_fast: bool,
}

/// What a runner does once an attempt of a test has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// The test has its result.
    Done,
    /// Run the test again, alone, in a fresh database.
    Retry,
}

/// How a test that ran ended, as an executor saw it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TestResult {
    pub(crate) outcome: Outcome,
    /// None where the harness does not tell (doc tests).
    pub(crate) duration: Option<Duration>,
    pub(crate) output: String,
}

impl Dispatcher {
    pub(crate) fn new(events: EventSender) -> Dispatcher {
        Dispatcher {
            events,
            ledger: Arc::default(),
            failed_fast: Arc::new(tokio::sync::watch::Sender::new(false)),
            batches: Arc::default(),
        }
    }

    /// A dispatcher of its own whose events are held apart, stamped on this one's clock, to be passed on
    /// or not (a read-only group's results count only once its database is found untouched).
    pub(crate) fn beside(&self) -> (Dispatcher, EventReceiver) {
        let (sender, receiver) = self.events.channel_beside();
        (Dispatcher::new(sender), receiver)
    }

    /// What a failure leads to in this run.
    pub(crate) fn on_failure(self, on_failure: OnFailure) -> Dispatcher {
        self.ledger().on_failure = on_failure;
        self
    }

    /// A failing test is run up to `retries` more times before its failure counts.
    #[cfg(test)]
    pub(crate) fn retrying(self, retries: usize) -> Dispatcher {
        self.ledger().on_failure.retries = retries;
        self
    }

    /// An attempt of a test that may be run again ended: a failure with retries left (and `may_retry`: the
    /// run goes on) is told as a retry and answered [`Next::Retry`]; anything else is the test's result,
    /// which after failed attempts carries every attempt's output (see [`super::retry`]).
    pub(crate) fn attempt_finished(
        &self,
        test: TestId,
        result: TestResult,
        may_retry: bool,
    ) -> Next {
        let mut ledger = self.ledger();
        if ledger.finished.contains(&test) {
            return Next::Done;
        }
        let earlier = ledger.attempts.get(&test).map_or(0, Vec::len);
        let fails = !matches!(result.outcome, Outcome::Passed | Outcome::NotRun { .. });
        if fails && may_retry && earlier < ledger.on_failure.retries {
            ledger
                .attempts
                .entry(test.clone())
                .or_default()
                .push(result.clone());
            drop(ledger);
            self.send(Event::TestRetry {
                test,
                attempt: earlier + 1,
                outcome: result.outcome,
                duration: result.duration,
                output: result.output,
            });
            return Next::Retry;
        }
        let attempts = ledger.attempts.remove(&test).unwrap_or_default();
        drop(ledger);
        self.finished(test, super::retry::last_attempt(attempts, result));
        Next::Done
    }

    /// `--fail-fast`: once a test fails, [`Dispatcher::stop_reason`] says so and no test is started.
    #[cfg(test)]
    pub(crate) fn fail_fast(self, on: bool) -> Dispatcher {
        self.ledger().on_failure.fail_fast = on;
        self
    }

    /// A test of a process running several failed; its result (and output) comes once the process is
    /// gone. Under `--fail-fast`, with no retry left for it, it is the failure that stops the run.
    pub(crate) fn failing(&self, test: &TestId) {
        let mut ledger = self.ledger();
        let retried = ledger.attempts.get(test).map_or(0, Vec::len) < ledger.on_failure.retries;
        if ledger.on_failure.fail_fast && !retried && ledger.first_failure.is_none() {
            ledger.first_failure = Some(test.clone());
            drop(ledger);
            self.failed_fast.send_replace(true);
        }
    }

    /// Resolves once a test has failed under `--fail-fast` (at once if one has); never without it.
    pub(crate) async fn failed_fast(&self) {
        let mut failed = self.failed_fast.subscribe();
        if failed.wait_for(|failed| *failed).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The test whose failure stopped the run under `--fail-fast`, if one did.
    pub(crate) fn first_failure(&self) -> Option<TestId> {
        self.ledger().first_failure.clone()
    }

    /// Why no further test may start because of a failure (`--fail-fast`); None while none may stop it.
    pub(crate) fn stop_reason(&self) -> Option<String> {
        self.ledger()
            .first_failure
            .as_ref()
            .map(|test| format!("--fail-fast: not started after {test} failed"))
    }

    fn send(&self, event: Event) {
        // The receiver goes away only when the whole run is over: nothing left to tell it.
        let _ = self.events.send(event);
    }

    /// Sends `event` stamped `at` (when it happened), or now.
    fn send_at(&self, at: Option<Duration>, event: Event) {
        let _ = match at {
            Some(at) => self.events.send_stamped(Stamped { at, event }),
            None => self.events.send(event),
        };
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // Never held across an await or a call that could panic, so it cannot be poisoned in use.
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tests are chosen: `tests` will run (and each will end in one `TestFinished`).
    pub(crate) fn run_started(
        &self,
        tests: impl IntoIterator<Item = TestId>,
        filtered_out: usize,
        jobs: usize,
        shared: bool,
    ) {
        let mut ledger = self.ledger();
        ledger.pending.extend(tests);
        let to_run = ledger.pending.len();
        drop(ledger);
        self.send(Event::RunStarted {
            to_run,
            filtered_out,
            jobs,
            shared,
        });
    }

    /// An ignored test: not asked for, or (in a process running several) skipped by libtest.
    pub(crate) fn ignored(&self, test: TestId) {
        let mut ledger = self.ledger();
        if !ledger.finished.insert(test.clone()) {
            return;
        }
        ledger.pending.remove(&test);
        drop(ledger);
        self.send(Event::TestIgnored { test });
    }

    pub(crate) fn filtered_out(&self, count: usize) {
        if count > 0 {
            self.send(Event::FilteredOut { count });
        }
    }

    pub(crate) fn started(&self, test: TestId, start: Start) {
        self.started_at(None, test, start);
    }

    /// A test started at `at` (None: now).
    pub(crate) fn started_at(&self, at: Option<Duration>, test: TestId, start: Start) {
        self.send_at(at, Event::TestStarted { test, start });
    }

    /// A process running several tests starts, holding the job slots `lanes`; returns its number.
    pub(crate) fn batch_started(
        &self,
        kind: BatchKind,
        binary: &str,
        tests: usize,
        lanes: &[usize],
    ) -> usize {
        let batch = self.batches.fetch_add(1, Ordering::Relaxed);
        self.send(Event::BatchStarted {
            batch,
            kind,
            binary: binary.to_owned(),
            tests,
            slots: lanes.len(),
            lanes: lanes.to_vec(),
        });
        batch
    }

    pub(crate) fn batch_finished(&self, batch: usize, duration: Duration) {
        self.send(Event::BatchFinished { batch, duration });
    }

    /// `test`'s database was checked after it, which took `duration`.
    pub(crate) fn checked(&self, test: TestId, untouched: bool, duration: Duration) {
        self.send(Event::DatabaseChecked {
            test,
            untouched,
            duration,
        });
    }

    /// A test has run past the slow threshold; told once per test.
    pub(crate) fn slow(&self, test: &TestId, elapsed: Duration) {
        if self.ledger().slow.insert(test.clone()) {
            self.send(Event::TestSlow {
                test: test.clone(),
                elapsed,
            });
        }
    }

    /// Whether `test` was reported SLOW.
    pub(crate) fn was_slow(&self, test: &TestId) -> bool {
        self.ledger().slow.contains(test)
    }

    /// Whether `test` ran and did not pass.
    pub(crate) fn has_failed(&self, test: &TestId) -> bool {
        self.ledger().failed.contains(test)
    }

    /// A test ended. A second result for the same test is dropped.
    pub(crate) fn finished(&self, test: TestId, result: TestResult) {
        self.finished_at(None, test, result);
    }

    /// A test ended at `at` (None: now).
    pub(crate) fn finished_at(&self, at: Option<Duration>, test: TestId, result: TestResult) {
        let mut ledger = self.ledger();
        if !ledger.finished.insert(test.clone()) {
            return;
        }
        ledger.pending.remove(&test);
        if crate::template::keep::Keeper::worth_keeping(&result.outcome) {
            ledger.failed.insert(test.clone());
        }
        let failed = !matches!(result.outcome, Outcome::Passed | Outcome::NotRun { .. });
        let first = ledger.on_failure.fail_fast && failed && ledger.first_failure.is_none();
        if first {
            ledger.first_failure = Some(test.clone());
        }
        drop(ledger);
        if first {
            self.failed_fast.send_replace(true);
        }
        self.send_at(
            at,
            Event::TestFinished {
                test,
                outcome: result.outcome,
                duration: result.duration,
                output: result.output,
            },
        );
    }

    /// Tests that will not run, and why. The only place NOT RUN is given.
    pub(crate) fn not_run(&self, tests: impl IntoIterator<Item = TestId>, reason: &str) {
        for test in tests {
            let result = TestResult {
                outcome: Outcome::NotRun {
                    reason: reason.to_owned(),
                },
                duration: None,
                output: String::new(),
            };
            self.finished(test, result);
        }
    }

    /// Ends the run's ledger: every announced test that has no result yet did not run, for `reason`
    /// (asked only if there is one).
    pub(crate) fn close(&self, reason: impl FnOnce() -> String) {
        let left: Vec<TestId> = std::mem::take(&mut self.ledger().pending)
            .into_iter()
            .collect();
        if !left.is_empty() {
            self.not_run(left, &reason());
        }
    }

    pub(crate) fn database_cloned(&self, duration: Duration) {
        self.send(Event::DatabaseCloned { duration });
    }

    pub(crate) fn databases_reused(&self, reused: usize, of: usize) {
        self.send(Event::DatabasesReused { reused, of });
    }

    /// `test`'s database was found untouched after it.
    pub(crate) fn untouched(&self, test: TestId) {
        self.send(Event::DatabaseUntouched { test });
    }

    pub(crate) fn read_only_groups(&self, tests: usize, groups: usize, ran_alone: usize) {
        self.send(Event::ReadOnlyGroups {
            tests,
            groups,
            ran_alone,
        });
    }

    /// A thread of ours that served the tests ended, having used `cpu`.
    pub(crate) fn thread_cpu(&self, thread: &str, cpu: Duration) {
        self.send(Event::ThreadCpu {
            thread: thread.to_owned(),
            duration: cpu,
        });
    }

    pub(crate) fn trial_groups(&self, tests: usize, groups: usize, counted: usize) {
        self.send(Event::TrialGroups {
            tests,
            groups,
            counted,
        });
    }

    pub(crate) fn sqlx_databases_reused(&self, reused: u64, of: u64) {
        self.send(Event::SqlxDatabasesReused { reused, of });
    }

    pub(crate) fn info(&self, message: String) {
        self.send(Event::Info { message });
    }

    pub(crate) fn warning(&self, message: String) {
        self.send(Event::Warning { message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> TestId {
        TestId {
            binary: "app".into(),
            name: name.into(),
        }
    }

    fn passed() -> TestResult {
        TestResult {
            outcome: Outcome::Passed,
            duration: Some(Duration::from_millis(1)),
            output: String::new(),
        }
    }

    #[test]
    fn every_announced_test_ends_once() {
        let (sender, mut receiver) = crate::events::channel();
        let dispatch = Dispatcher::new(sender);
        dispatch.run_started([id("a"), id("b"), id("c")], 0, 2, false);
        dispatch.slow(&id("a"), Duration::from_secs(2));
        dispatch.slow(&id("a"), Duration::from_secs(3));
        dispatch.finished(id("a"), passed());
        dispatch.finished(id("a"), passed());
        dispatch.not_run([id("b")], "its database could not be created");
        dispatch.close(|| "the run was stopped by SIGINT".to_owned());
        dispatch.close(|| unreachable!("nothing is left to close"));
        let mut finished = Vec::new();
        let mut slow = 0;
        while let Ok(event) = receiver.try_recv() {
            match event {
                Event::TestFinished { test, outcome, .. } => finished.push((test.name, outcome)),
                Event::TestSlow { .. } => slow += 1,
                _ => {}
            }
        }
        assert_eq!(slow, 1);
        assert_eq!(dispatch.stop_reason(), None, "no --fail-fast, no stop");
        let not_run = |reason: &str| Outcome::NotRun {
            reason: reason.into(),
        };
        assert_eq!(
            finished,
            [
                ("a".to_owned(), Outcome::Passed),
                ("b".to_owned(), not_run("its database could not be created")),
                ("c".to_owned(), not_run("the run was stopped by SIGINT")),
            ]
        );
    }

    #[test]
    fn fail_fast_stops_at_the_first_failure_only() {
        let (sender, _receiver) = crate::events::channel();
        let dispatch = Dispatcher::new(sender).fail_fast(true);
        dispatch.run_started([id("a"), id("b"), id("c"), id("d")], 0, 1, false);
        dispatch.finished(id("a"), passed());
        dispatch.not_run([id("b")], "its database could not be created");
        assert_eq!(
            dispatch.stop_reason(),
            None,
            "passing or not run is no failure"
        );
        let failed = TestResult {
            outcome: Outcome::Failed {
                exit_code: Some(101),
            },
            ..passed()
        };
        dispatch.finished(id("c"), failed.clone());
        dispatch.finished(id("d"), failed);
        assert_eq!(
            dispatch.stop_reason().as_deref(),
            Some("--fail-fast: not started after app c failed")
        );
    }

    #[test]
    fn a_failure_told_before_its_result_stops_only_without_retries_left() {
        let (sender, _receiver) = crate::events::channel();
        let retrying = Dispatcher::new(sender.clone()).fail_fast(true).retrying(1);
        retrying.failing(&id("a"));
        assert_eq!(retrying.stop_reason(), None, "a is run again first");
        let once = Dispatcher::new(sender.clone()).fail_fast(true);
        once.failing(&id("a"));
        once.failing(&id("b"));
        assert_eq!(once.first_failure(), Some(id("a")));
        let off = Dispatcher::new(sender);
        off.failing(&id("a"));
        assert_eq!(off.stop_reason(), None, "no --fail-fast");
    }
}
