//! Read-only groups: the tests whose latest passing run left their database untouched (the test history
//! remembers it, see [`crate::history`]) run together, as `cargo test` runs them, a group of them in one
//! process against one database. Isolation costs those tests one process and one database per group
//! instead of per test.
//!
//! A group's results count only once its database is found untouched afterwards, by the check that
//! decides reuse ([`crate::template::reuse`]): then no test of the group wrote anything, so each saw the
//! database exactly as a fresh copy. Until then they are held back. A group whose database was written to
//! (a test that read only before writes now) counts for nothing: each of its tests runs again alone, in a
//! fresh database, as every other test does. So does every test that did not pass in its group: a failure
//! is reported only as it happens alone, never one that sharing a process or a database could have caused.
//! A group that counts tells its tests' starts and ends at the times they happened, in the group's batch.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::dispatch::TestResult;
use super::schedule::Group;
use super::selection::TestCase;
use super::shared::Together;
use super::slots::{Held, JobSlots};
use super::Runner;
use crate::events::{BatchKind, DatabaseKind, Event, Outcome, Start, TestId};
use crate::template::{Obtain, Return};

/// Runs the groups side by side, each on the job slots free when it comes (at most one per test),
/// reporting the tests whose results count; returns the tests to run alone. Without reuse's check to judge
/// them (it could not start) every test runs alone. A group not started when the run is stopped
/// (`must_stop`) reports nothing: the dispatcher says its tests were NOT RUN.
pub(crate) async fn run(
    groups: &[Group],
    runner: &Runner<'_>,
    slots: &JobSlots,
    must_stop: impl Fn() -> bool,
) -> Vec<TestCase> {
    if !runner.databases.reuses() {
        return groups
            .iter()
            .flat_map(|group| group.cases.clone())
            .collect();
    }
    let jobs = runner.settings.jobs;
    let must_stop = &must_stop;
    let ran = futures_util::future::join_all(groups.iter().enumerate().map(
        |(number, group)| async move {
            let held = slots.take(group.cases.len().min(jobs)).await;
            if must_stop() {
                return None;
            }
            let name = format!("pgtest_group_{number}");
            Some(run_group(group, &name, runner, &held).await.counted)
        },
    ))
    .await;
    let mut alone = Vec::new();
    for (group, counted) in groups.iter().zip(ran) {
        let Some(counted) = counted else { continue };
        let not_counted = group
            .cases
            .iter()
            .filter(|case| !counted.contains(&case.id()));
        alone.extend(not_counted.cloned());
    }
    if !groups.is_empty() {
        let tests = groups.iter().map(|group| group.cases.len()).sum();
        runner
            .dispatch
            .read_only_groups(tests, groups.len(), alone.len());
    }
    alone
}

/// What became of a group.
pub(super) struct GroupOutcome {
    /// The tests whose results were reported (they passed, in a database found untouched).
    pub(super) counted: BTreeSet<TestId>,
    /// Whether its database was found written to.
    pub(super) written: bool,
}

/// Runs one group in the database `database`, on the job slots `held`.
pub(super) async fn run_group(
    group: &Group,
    database: &str,
    runner: &Runner<'_>,
    held: &Held,
) -> GroupOutcome {
    let (databases, dispatch, cancel) = (runner.databases, runner.dispatch, runner.cancel);
    let nothing = |written| GroupOutcome {
        counted: BTreeSet::new(),
        written,
    };
    // Every test of a group starts from its package's template (the schedule groups no snapshot test).
    let template = databases.template_for(&group.binary.package, None);
    let lease = match databases
        .lease(&template, database, Obtain::Checkable)
        .await
    {
        Ok(lease) => lease,
        Err(_) => {
            // Whatever was made of it goes; the tests run alone, where a database that cannot be made is
            // reported for each.
            databases.give_back(database, Return::Drop).await;
            return nothing(false);
        }
    };
    let lanes = held.numbers();
    let batch =
        dispatch.batch_started(BatchKind::Group, &group.binary.id, group.cases.len(), lanes);
    let began = Instant::now();
    let passed = run_together(group, batch, &lease.env, runner, held.numbers()).await;
    dispatch.batch_finished(batch, began.elapsed());
    let untouched = databases.give_back(&lease.name, Return::Check).await;
    let Some(passed) = passed.filter(|_| untouched && cancel.signal().is_none()) else {
        return nothing(!untouched);
    };
    let mut counted = BTreeSet::new();
    for passed in passed {
        let test = passed.test;
        dispatch.started_at(Some(passed.started_at), test.clone(), passed.start);
        dispatch.finished_at(Some(passed.finished_at), test.clone(), passed.result);
        dispatch.untouched(test.clone());
        counted.insert(test);
    }
    GroupOutcome {
        counted,
        written: false,
    }
}

/// A test that passed in its group, held back until the group counts: its start and result, each with
/// when it happened.
struct Passed {
    test: TestId,
    start: Start,
    started_at: Duration,
    result: TestResult,
    finished_at: Duration,
}

/// The group's process (batch `batch`), its results held back in a dispatcher of its own; the tests that
/// passed (they count once the database is found untouched), or None if it could not start.
async fn run_together(
    group: &Group,
    batch: usize,
    env: &[(String, String)],
    runner: &Runner<'_>,
    slots: &[usize],
) -> Option<Vec<Passed>> {
    let (held, mut receiver) = runner.dispatch.beside();
    let together = Together {
        binary: &group.binary,
        cases: &group.cases,
        settings: runner.settings,
        slots,
        batch,
        database: DatabaseKind::Group,
    };
    together.run(env, runner.cancel.clone(), &held).await.ok()?;
    let mut starts: BTreeMap<TestId, (Start, Duration)> = BTreeMap::new();
    let mut passed = Vec::new();
    // Every result was sent before the process was reaped.
    while let Ok(stamped) = receiver.try_recv_stamped() {
        match stamped.event {
            Event::TestStarted { test, start } => {
                starts.insert(test, (start, stamped.at));
            }
            Event::TestFinished {
                test,
                outcome: outcome @ Outcome::Passed,
                duration,
                output,
            } => {
                let Some((start, started_at)) = starts.remove(&test) else {
                    continue;
                };
                let result = TestResult {
                    outcome,
                    duration,
                    output,
                };
                passed.push(Passed {
                    test,
                    start,
                    started_at,
                    result,
                    finished_at: stamped.at,
                });
            }
            _ => {}
        }
    }
    Some(passed)
}
