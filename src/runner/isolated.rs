//! Per-test isolation: each test in a database of its own cloned from its package's template, on a job slot
//! of the run's (see [`super::slots`]), so up to `jobs` at a time beside whatever else holds slots. Clones
//! are made ahead, in the order the tests will start, so a test rarely waits for one; used databases are
//! dropped off the critical path. The slot a test holds is named by its `test_started`: the lanes of the
//! HTML report's timeline.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::dispatch::{Dispatcher, Next, TestResult};
use super::exec::{self, Limits};
use super::schedule::Alone;
use super::slots::{Held, JobSlots};
use super::{retry, snapshot_builders, Runner, Server};
use crate::cancel::Cancel;
use crate::events::{DatabaseKind, Outcome, Start, TestId};
use crate::template::keep::Keeper;
use crate::template::{self, Obtain, Return, TestDatabases};

/// A clone on its way: the outcome of making it (whether it was an untouched database handed on instead),
/// and the slot it holds among the clones made ahead.
type CloneReady = oneshot::Receiver<(Result<Reused, String>, OwnedSemaphorePermit)>;

/// Whether a test's database is one an earlier test left untouched.
type Reused = bool;

/// Runs the tests, each of them unless the run is stopped (or the server dies, or a test fails under
/// `--fail-fast`) first: the ones not started then are left to the dispatcher's NOT RUN. A test whose
/// snapshot is `unbuilt` is NOT RUN, saying why. The databases are named `pgtest_<prefix><n>`: several
/// of these runs go on at once. Returns how many tests started.
pub(crate) async fn run(
    tests: Vec<Alone>,
    unbuilt: &BTreeSet<usize>,
    prefix: &str,
    runner: &Runner<'_>,
    server: &Server<'_>,
    slots: &JobSlots,
) -> usize {
    let (databases, dispatch, cancel) = (runner.databases, runner.dispatch, runner.cancel);
    let tests = without_unbuilt(tests, unbuilt, databases, dispatch);
    let names: Vec<String> = (0..tests.len())
        .map(|n| format!("pgtest_{prefix}{n}"))
        .collect();
    let jobs = runner.settings.jobs;
    let (mut clones, mut makers) = make_clones_ahead(&tests, &names, jobs, databases, dispatch);
    let mut pending = tests.into_iter().zip(names.iter().cloned()).peekable();
    let mut running: JoinSet<Handback> = JoinSet::new();
    let mut drops: JoinSet<()> = JoinSet::new();
    let mut stopping = false;
    let mut started = 0;
    let must_stop = || cancel.signal().is_some() || dispatch.stop_reason().is_some();
    loop {
        stopping |= must_stop();
        let more = !stopping && pending.peek().is_some();
        // A test that ends frees its slot: it is handled first, then the next test asks for a slot.
        let joined = tokio::select! {
            biased;
            joined = running.join_next(), if !running.is_empty() => joined,
            slot = slots.take(1), if more => {
                // Decided again now that the slot is ours: the test that freed it may have stopped the run
                // (a failure under --fail-fast) after this wait began, and it ends on another thread.
                if must_stop() {
                    stopping = true;
                    continue;
                }
                let (Some((test, database)), Some(ready)) = (pending.next(), clones.next()) else {
                    // A clone is ordered for every test: never here.
                    stopping = true;
                    continue;
                };
                started += 1;
                let assigned = Assignment {
                    test,
                    database,
                    ready,
                    slot,
                };
                let (databases, limits) = (databases.clone(), runner.settings.limits);
                let (cancel, dispatch) = (cancel.clone(), dispatch.clone());
                running.spawn(async move { assigned.run(&databases, limits, cancel, &dispatch).await });
                continue;
            }
            else => break,
        };
        let Some(Ok(Handback {
            database,
            test,
            failed,
        })) = joined
        else {
            continue;
        };
        if failed && databases.keep(test.clone(), &database) {
            continue;
        }
        if !server.is_running() {
            stopping = true;
            continue;
        }
        drops.spawn(check_and_give_back(
            databases.clone(),
            dispatch.clone(),
            database,
            test,
        ));
    }
    makers.abort_all();
    while makers.join_next().await.is_some() {}
    let remaining: Vec<(Alone, String)> = pending.collect();
    // Clones made for tests that will not run now (a dead server has nothing left to drop).
    if server.is_running() {
        for (mut ready, (_, database)) in clones.zip(&remaining) {
            if let Ok((Ok(_), _)) = ready.try_recv() {
                databases.give_back(database, Return::Drop).await;
            }
        }
    }
    while drops.join_next().await.is_some() {}
    started
}

/// Gives `test`'s database back, checked: handed on to a later test if untouched, else dropped.
async fn check_and_give_back(
    databases: TestDatabases,
    dispatch: Dispatcher,
    database: String,
    test: TestId,
) {
    let checking = Instant::now();
    let untouched = databases.give_back(&database, Return::Check).await;
    if databases.reuses() {
        dispatch.checked(test.clone(), untouched, checking.elapsed());
    }
    if untouched {
        dispatch.untouched(test);
    }
}

/// The tests whose snapshot was built; the others are NOT RUN, saying why.
fn without_unbuilt(
    tests: Vec<Alone>,
    unbuilt: &BTreeSet<usize>,
    databases: &TestDatabases,
    dispatch: &Dispatcher,
) -> Vec<Alone> {
    let snapshots = &databases.snapshots().snapshots;
    let (runs, not_built): (Vec<_>, Vec<_>) = tests
        .into_iter()
        .partition(|test| test.snapshot.is_none_or(|index| !unbuilt.contains(&index)));
    for test in not_built {
        if let Some(snapshot) = test.snapshot.and_then(|index| snapshots.get(index)) {
            let reason = snapshot_builders::unbuilt_reason(snapshot);
            dispatch.not_run([test.case.id()], &reason);
        }
    }
    runs
}

/// Starts cloning the tests' databases in order, never more than `jobs` made and not yet taken by a test
/// (and so never more than `jobs` clones competing with the tests for the CPUs).
fn make_clones_ahead(
    tests: &[Alone],
    names: &[String],
    jobs: usize,
    databases: &TestDatabases,
    dispatch: &Dispatcher,
) -> (std::vec::IntoIter<CloneReady>, JoinSet<()>) {
    let slots = Arc::new(Semaphore::new(jobs.max(1)));
    let mut receivers = Vec::with_capacity(tests.len());
    let mut orders = Vec::with_capacity(tests.len());
    for (test, name) in tests.iter().zip(names) {
        let (sender, receiver) = oneshot::channel();
        receivers.push(receiver);
        let template = databases.template_for(&test.case.binary.package, test.snapshot);
        orders.push((template, name.clone(), sender));
    }
    let mut makers = JoinSet::new();
    let (databases, dispatch) = (databases.clone(), dispatch.clone());
    makers.spawn(async move {
        let mut in_flight = JoinSet::new();
        for (template, name, sender) in orders {
            // Semaphores are fair: slots are handed out in test order.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (databases, dispatch) = (databases.clone(), dispatch.clone());
            in_flight.spawn(async move {
                let made = databases.lease(&template, &name, Obtain::Reusable).await;
                if let Ok(Some(cloning)) = made.as_ref().map(|lease| lease.cloning) {
                    dispatch.database_cloned(cloning);
                }
                let made = made
                    .map(|lease| lease.cloning.is_none())
                    .map_err(|error| template::server_message(&error));
                let _ = sender.send((made, slot));
            });
            // Reap finished clones as we go so the set stays small.
            while in_flight.try_join_next().is_some() {}
        }
        while in_flight.join_next().await.is_some() {}
    });
    (receivers.into_iter(), makers)
}

/// A test's database once the test has ended: dropped, handed on, or kept if the test failed.
struct Handback {
    database: String,
    test: TestId,
    failed: bool,
}

/// A test, the database made for it, word of when it is ready, and the job slot it holds (given back
/// when it ends).
struct Assignment {
    test: Alone,
    database: String,
    ready: CloneReady,
    slot: Held,
}

impl Assignment {
    /// Waits for the test's database, runs the test against it, reports it; returns the database.
    async fn run(
        self,
        databases: &TestDatabases,
        limits: Limits,
        cancel: Cancel,
        dispatch: &Dispatcher,
    ) -> Handback {
        let Assignment {
            test,
            database,
            ready,
            slot,
        } = self;
        let case = test.case;
        let waiting = Instant::now();
        let made = match ready.await {
            // The slot is given back as the test takes its database, so the next clone can start.
            Ok((made, _slot)) => made,
            Err(_) => Err("the cloning task stopped".to_owned()),
        };
        let kind = match (&made, test.snapshot) {
            (Ok(true), _) => DatabaseKind::Reused,
            (_, Some(_)) => DatabaseKind::Snapshot,
            (_, None) => DatabaseKind::Fresh,
        };
        let lane = slot.first();
        dispatch.started(case.id(), Start::alone(lane, kind, Some(waiting.elapsed())));
        let failed = match made {
            Ok(_) => {
                let env = databases.env(&database);
                let result = exec::run_alone(&case, &env, limits, cancel.clone(), dispatch).await;
                let may_retry = cancel.signal().is_none();
                if dispatch.attempt_finished(case.id(), result, may_retry) == Next::Retry {
                    let attempts = retry::AttemptDatabase::Clone {
                        databases,
                        template: databases.template_for(&case.binary.package, test.snapshot),
                        base: &database,
                    };
                    retry::run_again(&case, &attempts, lane, limits, &cancel, dispatch).await;
                }
                // Failed for good: its first attempt's database may be kept (the retries' are dropped).
                dispatch.has_failed(&case.id())
            }
            Err(message) => {
                let result = not_made(&message);
                let failed = Keeper::worth_keeping(&result.outcome);
                dispatch.finished(case.id(), result);
                failed
            }
        };
        drop(slot);
        Handback {
            database,
            test: case.id(),
            failed,
        }
    }
}

/// The result of a test whose database could not be made.
fn not_made(message: &str) -> TestResult {
    TestResult {
        outcome: Outcome::NotRun {
            reason: format!("its database could not be created: {message}"),
        },
        duration: Some(Duration::ZERO),
        output: String::new(),
    }
}
