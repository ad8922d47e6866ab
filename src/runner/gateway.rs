//! The `#[sqlx::test]` gateway as a run sees it: started on a cluster of our own, and what it did reported
//! when it stops.

use super::dispatch::Dispatcher;
use super::Runner;
use crate::cluster::Cluster;
use crate::sqlx::gateway::{Gateway, GatewayReport};

/// Starts the gateway through which `#[sqlx::test]`s get their databases; without it (it could not
/// start, which the report says) they reach the server directly and make their databases as sqlx does.
/// It makes its copies through the run's test databases, and hands untouched ones on when their reuse is
/// on.
pub(super) fn start(cluster: &Cluster, runner: &Runner<'_>) -> Option<Gateway> {
    // The gateway lives in the run directory and relies on template1 migrated: a cluster of our own only.
    if cluster.is_existing() {
        return None;
    }
    let started = Gateway::start(
        cluster.endpoint(),
        &cluster.info.run_dir,
        cluster.info.version.major,
        runner.settings.jobs,
        Some(runner.databases.clone()),
    );
    match started {
        Ok(gateway) => Some(gateway),
        Err(error) => {
            runner.dispatch.warning(format!(
                "{error}; #[sqlx::test]s make their own databases instead"
            ));
            None
        }
    }
}

pub(super) fn report(report: GatewayReport, dispatch: &Dispatcher) {
    let counts = report.counts;
    let message = format!(
        "#[sqlx::test] databases: {} from copies made ahead ({} of them used untouched before), {} copied while the test waited, {} dropped or handed on after their test",
        counts.ready, counts.reused, counts.inline, counts.deferred_drops
    );
    dispatch.info(message);
    dispatch.sqlx_databases_reused(counts.reused, counts.ready + counts.inline);
    let mut threads = report.thread_cpu.into_iter();
    if let Some(own) = threads.next() {
        dispatch.thread_cpu("sqlx-gateway", own);
    }
    for (index, relay) in threads.enumerate() {
        dispatch.thread_cpu(&format!("sqlx-gateway-relay-{}", index + 1), relay);
    }
    if let Some(reason) = report.broken {
        dispatch.warning(format!(
            "copies for #[sqlx::test] stopped being made ahead: {reason}"
        ));
    }
}
