//! Per-test isolation: up to `jobs` tests at a time, each in a database of its own cloned from its package's
//! template. Clones are made ahead, in the order the tests will start, so a test rarely waits for one; used
//! databases are dropped off the critical path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::dispatch::{Dispatcher, Next, TestResult};
use crate::events::{Outcome, TestId};
use super::exec::{self, Limits};
use super::keep::Keeper;
use super::list::TestCase;
use super::retry;
use crate::cancel::Cancel;
use crate::cluster::{Cluster, Endpoint};
use crate::template::reuse::Reuse;
use crate::template::{self, MaintenancePool, Extras};

/// What every test of an isolated run shares.
#[derive(Debug, Clone)]
pub(crate) struct Isolated {
    pub(crate) databases: MaintenancePool,
    pub(crate) endpoint: Endpoint,
    /// Package name → template database name.
    pub(crate) templates: Arc<BTreeMap<String, String>>,
    /// Test → the snapshot database it is cloned from instead of its package's template.
    pub(crate) starting_points: Arc<BTreeMap<TestId, String>>,
    pub(crate) database_env: String,
    pub(crate) jobs: usize,
    pub(crate) limits: Limits,
    /// Where a failed test's database goes instead of being dropped, while the cap allows.
    pub(crate) keeper: Keeper,
    /// The extra databases each test gets fresh copies of, made and dropped with its own.
    pub(crate) extras: Extras,
    /// Hands a database its test left untouched to a later test (None: `reuse = false`, or unavailable).
    pub(crate) reuse: Option<Reuse>,
    /// How many databases the cluster held before the tests (read-only groups included), for the check
    /// that every test's is gone again at the end.
    pub(crate) databases_before: Option<i64>,
}

/// A clone on its way: the outcome of `CREATE DATABASE`, and the slot it holds among the clones made ahead.
type CloneReady = oneshot::Receiver<(Result<(), String>, OwnedSemaphorePermit)>;

/// Runs the cases, each of them unless the run is stopped (or the server dies, or a test fails under
/// `--fail-fast`) first: the ones not started then are left to the dispatcher's NOT RUN.
pub(crate) async fn run(
    cases: Vec<TestCase>,
    context: &Isolated,
    cluster: &mut Cluster,
    cancel: &Cancel,
    dispatch: &Dispatcher,
) {
    let names: Vec<String> = (0..cases.len()).map(|n| format!("pgtest_{n}")).collect();
    let (mut clones, mut makers) = make_clones_ahead(&cases, &names, context, dispatch);
    let mut pending = cases.into_iter().zip(names.iter().cloned());
    let mut running: JoinSet<Used> = JoinSet::new();
    let mut drops: JoinSet<()> = JoinSet::new();
    let mut stopping = false;
    let mut started = 0;
    loop {
        while running.len() < context.jobs && !stopping {
            if cancel.signal().is_some() || dispatch.stop_reason().is_some() {
                stopping = true;
                break;
            }
            let Some((case, database)) = pending.next() else {
                break;
            };
            let Some(ready) = clones.next() else { break };
            started += 1;
            let context = context.clone();
            let (cancel, dispatch) = (cancel.clone(), dispatch.clone());
            running.spawn(async move {
                run_one(case, database, ready, &context, cancel, &dispatch).await
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let Ok(Used {
            database,
            test,
            failed,
        }) = joined
        else {
            continue;
        };
        if failed && context.keeper.keep(test.clone(), &database) {
            if let Some(reuse) = &context.reuse {
                context.extras.forget_with(reuse, &database);
            }
            continue;
        }
        if !cluster.is_running() {
            stopping = true;
            continue;
        }
        let (databases, extras) = (context.databases.clone(), context.extras.clone());
        let (reuse, dispatch) = (context.reuse.clone(), dispatch.clone());
        drops.spawn(async move {
            let untouched = extras
                .release_with(&databases, reuse.as_ref(), &database)
                .await;
            if untouched {
                dispatch.untouched(test);
            }
        });
    }
    makers.abort_all();
    while makers.join_next().await.is_some() {}
    let remaining: Vec<(TestCase, String)> = pending.collect();
    // Clones made for tests that will not run now (a dead server has nothing left to drop).
    if cluster.is_running() {
        for (mut ready, (_, database)) in clones.zip(&remaining) {
            if let Ok((Ok(()), _)) = ready.try_recv() {
                context.extras.drop_with(&context.databases, database).await;
            }
        }
    }
    while drops.join_next().await.is_some() {}
    settle(context, cluster, dispatch, started).await;
}

/// Once every test has ended: what happens to the untouched databases still waiting, the reuse count and
/// the leak check.
async fn settle(context: &Isolated, cluster: &mut Cluster, dispatch: &Dispatcher, started: usize) {
    // The untouched databases waiting for a test go with the cluster at teardown, at no cost; only a
    // cluster saved for its kept databases is cleared of them first.
    let saved = !context.keeper.kept().is_empty();
    let mut idle = 0;
    if let Some(reuse) = context.reuse.as_ref().filter(|_| cluster.is_running()) {
        match saved {
            true => reuse.drop_idle().await,
            false => idle = reuse.idle_count(),
        }
    }
    let reused = context.reuse.as_ref().map_or(0, Reuse::reused);
    dispatch.databases_reused(reused, started);
    // What a leak check reads: every clone made for a test is gone again, or waits for reuse.
    if let (Some(before), true) = (context.databases_before, cluster.is_running()) {
        if let Ok(after) = context.databases.count().await {
            let after = after - idle as i64;
            let message = format!("cluster databases before the tests: {before}, after: {after}");
            dispatch.info(message);
        }
    }
}

/// Starts cloning the cases' databases in order, never more than `jobs` made and not yet taken by a test (and
/// so never more than `jobs` clones competing with the tests for the CPUs).
fn make_clones_ahead(
    cases: &[TestCase],
    names: &[String],
    context: &Isolated,
    dispatch: &Dispatcher,
) -> (std::vec::IntoIter<CloneReady>, JoinSet<()>) {
    let slots = Arc::new(Semaphore::new(context.jobs.max(1)));
    let mut receivers = Vec::with_capacity(cases.len());
    let mut orders = Vec::with_capacity(cases.len());
    for (case, name) in cases.iter().zip(names) {
        let (sender, receiver) = oneshot::channel();
        receivers.push(receiver);
        let template = template_of(case, context);
        orders.push((template, name.clone(), sender));
    }
    let mut makers = JoinSet::new();
    let (databases, dispatch) = (context.databases.clone(), dispatch.clone());
    let (extras, reuse) = (context.extras.clone(), context.reuse.clone());
    makers.spawn(async move {
        let mut in_flight = JoinSet::new();
        for (template, name, sender) in orders {
            // Semaphores are fair: slots are handed out in test order.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (databases, dispatch) = (databases.clone(), dispatch.clone());
            let (extras, reuse) = (extras.clone(), reuse.clone());
            in_flight.spawn(async move {
                let made = extras
                    .obtain_with(&databases, reuse.as_ref(), &template, &name)
                    .await;
                if let Ok(Some(cloning)) = made {
                    dispatch.database_cloned(cloning);
                }
                let made = made
                    .map(|_| ())
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
struct Used {
    database: String,
    test: TestId,
    failed: bool,
}

/// Waits for the test's database, runs the test against it, reports it; returns the database.
async fn run_one(
    case: TestCase,
    database: String,
    ready: CloneReady,
    context: &Isolated,
    cancel: Cancel,
    dispatch: &Dispatcher,
) -> Used {
    let waiting = Instant::now();
    let made = match ready.await {
        // The slot is given back as the test takes its database, so the next clone can start.
        Ok((made, _slot)) => made,
        Err(_) => Err("the cloning task stopped".to_owned()),
    };
    dispatch.started(case.id(), Some(waiting.elapsed()));
    let result = match made {
        Ok(()) => {
            let env = context.endpoint.env(&database, &context.database_env);
            let env = context.extras.with_env(env, &context.endpoint, &database);
            let result =
                exec::run_alone(&case, &env, context.limits, cancel.clone(), dispatch).await;
            let may_retry = cancel.signal().is_none();
            if dispatch.attempt_finished(case.id(), result, may_retry) == Next::Retry {
                let fresh = retry::Fresh::Clone {
                    databases: &context.databases,
                    endpoint: &context.endpoint,
                    template: template_of(&case, context),
                    database_env: &context.database_env,
                    base: database.clone(),
                    extras: &context.extras,
                };
                retry::run_again(&case, &fresh, context.limits, &cancel, dispatch).await;
            }
            // Failed for good: its first attempt's database may be kept (the retries' are dropped).
            let failed = dispatch.has_failed(&case.id());
            return Used {
                database,
                test: case.id(),
                failed,
            };
        }
        Err(message) => TestResult {
            outcome: Outcome::NotRun {
                reason: format!("its database could not be created: {message}"),
            },
            duration: Some(Duration::ZERO),
            output: String::new(),
        },
    };
    let failed = Keeper::worth_keeping(&result.outcome);
    dispatch.finished(case.id(), result);
    Used {
        database,
        test: case.id(),
        failed,
    }
}

/// The template database `case` is cloned from: its snapshot's, else its package's.
pub(super) fn template_of(case: &TestCase, context: &Isolated) -> String {
    if let Some(snapshot) = context.starting_points.get(&case.id()) {
        return snapshot.clone();
    }
    context
        .templates
        .get(&case.binary.package)
        .cloned()
        .unwrap_or_default()
}
