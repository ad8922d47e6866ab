//! Stage 3 on an existing server (`--server URL`, `PGTEST_SERVER_URL`, the `server` key): instead of
//! finding binaries and booting a cluster of our own, connect to that server, prove the run alive there and
//! remove what runs that are gone left behind (see [`crate::cluster::external`]). The snapshot cache and
//! `#[sqlx::test]`'s template1 and gateway assume a cluster of our own, so they are left out.

use std::time::Instant;

use super::context::Run;
use super::error::Error;
use crate::cache::Cache;
use crate::cargo::Project;
use crate::cluster::external::{self, External};
use crate::cluster::{Cluster, ClusterError};
use crate::config::Config;
use crate::events::Phase;

/// The environment variable that names an existing server.
pub(crate) const SERVER_URL_VARIABLE: &str = "PGTEST_SERVER_URL";

/// The existing server to use, if any: `--server`, then `PGTEST_SERVER_URL`, then the `server` key.
pub(crate) fn url(run: &Run<'_>, config: &Config) -> Option<String> {
    let given = |text: &String| !text.trim().is_empty();
    run.cli
        .pgtest
        .server
        .clone()
        .filter(given)
        .or_else(|| std::env::var(SERVER_URL_VARIABLE).ok().filter(given))
        .or_else(|| config.server.clone().filter(given))
}

/// Connects to the server at `url`; returns it as the run's cluster, with no `#[sqlx::test]` template1
/// and no cache plan (the two things only a cluster of our own has).
pub(crate) async fn connect(
    run: &Run<'_>,
    project: &Project,
    config: &Config,
    url: &str,
) -> Result<(Cluster, Option<usize>, Option<Cache>), Error> {
    let started = Instant::now();
    note_ignored_keys(run, config);
    let (endpoint, target) = external::parse(url).map_err(ClusterError::from)?;
    let connect = async {
        External::connect(endpoint, target)
            .await
            .map_err(ClusterError::from)
    };
    let (server, dropped, problems) = run.unless_stopped(connect).await?;
    if !dropped.is_empty() {
        run.info(format!(
            "removed {} database(s) of earlier runs that are gone: {}",
            dropped.len(),
            dropped.join(", ")
        ));
    }
    for problem in problems {
        run.warn(format!(
            "{problem}; a database of an earlier run that is gone stays on the server"
        ));
    }
    run.info(format!(
        "{} at {}: this run's databases are pgtest_{}_*, dropped at the end",
        server.version, server.target, server.run_id
    ));
    run.info(
        "the cache of migrated clusters does not apply to a server that is not ours: migrating afresh"
            .to_owned(),
    );
    if has_sqlx_tests(project) {
        run.info(
            "#[sqlx::test]s connect to the server directly and make their own databases as sqlx does; \
             template1 is left alone on a server that is not ours"
                .to_owned(),
        );
    }
    run.phase_finished(Phase::ClusterBoot, started.elapsed());
    Ok((Cluster::existing(server), None, None))
}

/// One line naming the keys that only a cluster of our own reads, when any is set.
fn note_ignored_keys(run: &Run<'_>, config: &Config) {
    let mut ignored = Vec::new();
    if config.postgres_origin.is_some() {
        ignored.push("postgres");
    }
    if !config.settings.is_empty() {
        ignored.push("settings");
    }
    if !config.tmpfs || run.cli.pgtest.no_tmpfs {
        ignored.push("tmpfs");
    }
    if !ignored.is_empty() {
        run.warn(format!(
            "{} ignored: the server is not cargo-pgtest's own, so its version, settings and storage are its own",
            ignored.join(", ")
        ));
    }
}

/// Whether a selected package has `#[sqlx::test]`s (which get template1 and the gateway on a cluster of
/// our own).
fn has_sqlx_tests(project: &Project) -> bool {
    project
        .workspace
        .members
        .iter()
        .filter(|member| project.workspace.selected.contains(&member.name))
        .filter_map(|member| member.manifest_path.parent())
        .any(|dir| !crate::sqlx::scan::scan(dir).tests.is_empty())
}
