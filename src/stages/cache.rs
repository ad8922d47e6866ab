//! Stage 4, snapshot: whether this run's migrated cluster is in the cache, and storing it there once the
//! templates are prepared. What is decided lives in [`crate::cache::policy`]; this stage tells the
//! reporters.

use std::path::PathBuf;

use super::context::Run;
use super::error::Error;
use crate::cache::{self, Cache};
use crate::cargo::Project;
use crate::cluster::binaries::Binaries;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::template::Template;

/// Whether `#[sqlx::test]`s get a migrated template1 (which of the database specs), and this run's cache
/// plan: `None` under `--no-cache`.
pub(crate) fn look_up(
    run: &Run<'_>,
    project: &Project,
    config: &Config,
    binaries: &Binaries,
) -> (Option<usize>, Option<Cache>) {
    let package_dirs: Vec<PathBuf> = project
        .workspace
        .members
        .iter()
        .filter(|member| project.workspace.selected.contains(&member.name))
        .filter_map(|member| member.manifest_path.parent().map(PathBuf::from))
        .collect();
    let sqlx_test =
        crate::sqlx::sqlx_test_spec(&config.databases, &config.package_database, &package_dirs);
    if sqlx_test.is_some() {
        run.info(
            "template1 gets the migrations too: #[sqlx::test] databases start migrated".into(),
        );
    }
    let enabled = !run.cli.pgtest.no_cache;
    let plan = Cache::look_up(enabled, &project.target_dir, binaries, config, sqlx_test);
    if let Some(plan) = &plan {
        run.info(plan.describe());
    }
    (sqlx_test, plan)
}

/// Stores the freshly prepared cluster; returns whether it was stored.
pub(crate) async fn store(
    run: &Run<'_>,
    plan: &Cache,
    cluster: &mut Cluster,
    templates: &[Template],
) -> Result<bool, Error> {
    let stored = run
        .unless_stopped(cache::policy::store(plan, cluster, templates))
        .await?;
    if !stored {
        run.warn(
            "the migrated cluster changed while it was being cached (is autovacuum on in \
             [package.metadata.pgtest.settings]?): not cached this time, the next run migrates again"
                .to_owned(),
        );
    }
    Ok(stored)
}
