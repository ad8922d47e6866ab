//! Per-test isolation: up to `jobs` tests at a time, each in a database cloned from its package's template
//! just before it starts and dropped off the critical path after it ends.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::events::{Event, EventSender, Outcome, TestId};
use super::exec::{self, Limits};
use super::list::TestCase;
use super::Cancel;
use crate::cluster::{Cluster, Endpoint};
use crate::template::{self, Databases};

/// What every test of an isolated run shares.
#[derive(Debug, Clone)]
pub struct Isolated {
    pub databases: Databases,
    pub endpoint: Endpoint,
    /// Package name → template database name.
    pub templates: Arc<BTreeMap<String, String>>,
    pub database_env: String,
    pub jobs: usize,
    pub limits: Limits,
}

/// Runs the cases; every case ends in exactly one `TestFinished` event.
pub async fn run(
    cases: Vec<TestCase>,
    context: &Isolated,
    cluster: &mut Cluster,
    cancel: &Cancel,
    events: &EventSender,
) {
    let mut pending = cases.into_iter().enumerate();
    let mut running: JoinSet<String> = JoinSet::new();
    let mut drops: JoinSet<()> = JoinSet::new();
    let mut stop_reason: Option<String> = None;
    loop {
        while running.len() < context.jobs && stop_reason.is_none() {
            if let Some(signal) = cancel.signal() {
                stop_reason = Some(format!("the run was stopped by {signal}"));
                break;
            }
            let Some((number, case)) = pending.next() else {
                break;
            };
            let context = context.clone();
            let (cancel, events) = (cancel.clone(), events.clone());
            running.spawn(async move { run_one(number, case, &context, cancel, &events).await });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let Ok(database) = joined else { continue };
        if stop_reason.is_none() && !cluster.is_running() {
            stop_reason = Some(format!(
                "the PostgreSQL server died during the run; the end of its log:\n{}",
                cluster.log_tail(15)
            ));
        }
        let databases = context.databases.clone();
        drops.spawn(async move {
            // A failure here leaves only a database in a cluster that is about to be removed.
            let _ = databases.drop_database(&database).await;
        });
    }
    if let Some(reason) = stop_reason {
        for (_, case) in pending {
            let test = TestId {
                binary: case.binary.id.clone(),
                name: case.name.clone(),
            };
            let outcome = Outcome::NotRun {
                reason: reason.clone(),
            };
            let _ = events.send(Event::TestFinished {
                test,
                outcome,
                duration: None,
                output: String::new(),
            });
        }
    }
    while drops.join_next().await.is_some() {}
}

/// Clones a database, runs the test against it, reports it; returns the database to drop.
async fn run_one(
    number: usize,
    case: TestCase,
    context: &Isolated,
    cancel: Cancel,
    events: &EventSender,
) -> String {
    let test = TestId {
        binary: case.binary.id.clone(),
        name: case.name.clone(),
    };
    let database = format!("pgtest_{number}");
    let _ = events.send(Event::TestStarted { test: test.clone() });
    let template = context
        .templates
        .get(&case.binary.package)
        .cloned()
        .unwrap_or_default();
    let finished = match context.databases.create_from(&template, &database).await {
        Ok(()) => {
            let env = context.endpoint.env(&database, &context.database_env);
            exec::run_test(&case, &env, context.limits, cancel, events).await
        }
        Err(error) => exec::Finished {
            outcome: Outcome::NotRun {
                reason: format!(
                    "its database could not be created: {}",
                    template::server_message(&error)
                ),
            },
            duration: Default::default(),
            output: String::new(),
        },
    };
    let _ = events.send(Event::TestFinished {
        test,
        outcome: finished.outcome,
        duration: Some(finished.duration),
        output: finished.output,
    });
    database
}
