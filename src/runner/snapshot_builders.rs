//! The runner's side of named snapshots ([`crate::template::snapshots`]): the `from_test` snapshots are
//! built before the other tests. The builder runs alone against a fresh copy of its template, is reported
//! like any test, and what it leaves is sealed as the snapshot. A builder that does not pass fails the run
//! (its own FAIL, with its output), and the tests that needed its snapshot are NOT RUN, saying why
//! ([`unbuilt_reason`]). Which test starts from which snapshot is the schedule's decision
//! ([`super::schedule`]).

use std::collections::BTreeSet;

use super::dispatch::TestResult;
use super::exec;
use super::schedule::Builder;
use super::Runner;
use crate::events::{DatabaseKind, Outcome, Start};
use crate::template::snapshots::{self, NamedSnapshot};
use crate::template::{server_message, Obtain, Return};

/// Builds the `from_test` snapshots, one builder after another; returns those that were not built.
pub(crate) async fn build(builders: &[Builder], runner: &Runner<'_>) -> BTreeSet<usize> {
    let mut failed = BTreeSet::new();
    for builder in builders {
        let Some(snapshot) = runner.databases.snapshots().snapshots.get(builder.snapshot) else {
            continue;
        };
        if runner.cancel.signal().is_some() || !build_one(builder, snapshot, runner).await {
            failed.insert(builder.snapshot);
        }
    }
    failed
}

/// Runs the builder against a fresh copy of the snapshot's template and seals what it leaves; true when
/// the snapshot is ready.
async fn build_one(builder: &Builder, snapshot: &NamedSnapshot, runner: &Runner<'_>) -> bool {
    let (case, databases, dispatch) = (&builder.case, runner.databases, runner.dispatch);
    // Builders run one after another, before any other test: the first slot.
    dispatch.started(case.id(), Start::alone(0, DatabaseKind::Fresh, None));
    let lease = databases
        .lease(&snapshot.base, &snapshot.database, Obtain::Fresh)
        .await;
    let lease = match lease {
        Ok(lease) => lease,
        Err(error) => {
            databases
                .give_back(&snapshot.database, Return::Sealed)
                .await;
            let reason = format!(
                "the database for snapshot `{}` could not be created: {}",
                snapshot.name,
                server_message(&error)
            );
            dispatch.not_run([case.id()], &reason);
            return false;
        }
    };
    let (limits, cancel) = (runner.settings.limits, runner.cancel.clone());
    let result = exec::run_alone(case, &lease.env, limits, cancel, dispatch).await;
    // A snapshot holds the main database only: the extra databases' copies go.
    databases.give_back(&lease.name, Return::Sealed).await;
    let passed = result.outcome == Outcome::Passed;
    let sealed = match passed {
        true => snapshots::seal(databases.endpoint(), snapshot).await,
        false => Ok(()),
    };
    let ready = passed && sealed.is_ok();
    let result = match sealed {
        Ok(()) => result,
        Err(error) => TestResult {
            outcome: Outcome::Failed { exit_code: None },
            output: format!("{}\n{error}\n", result.output),
            ..result
        },
    };
    dispatch.finished(case.id(), result);
    ready
}

/// Why a test starting from snapshot `snapshot`, which was not built, does not run.
pub(crate) fn unbuilt_reason(snapshot: &NamedSnapshot) -> String {
    let builder = snapshot.from_test.as_deref().unwrap_or_default();
    format!(
        "it starts from snapshot `{}`, which was not built: its from_test `{builder}` did not pass (see \
         its result)",
        snapshot.name
    )
}
