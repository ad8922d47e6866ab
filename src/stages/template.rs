//! Stage 5, template: the template databases, taken from the cached cluster or prepared (migrations,
//! extensions, fixtures) and then stored; and the connection pool that clones and drops test databases.

use std::time::Instant;

use super::context::{Run, Setup};
use super::error::Error;
use crate::cache::{Cache, Templates};
use crate::cluster::Cluster;
use crate::events::{Event, Phase};
use crate::template::snapshots::{self, NamedSnapshots};
use crate::template::test_databases::Parts;
use crate::template::{self, Extras, MaintenancePool, Template, TestDatabases};

/// The templates, ready to be cloned, and the run's one owner of test databases made from them.
pub(crate) struct Ready {
    /// The main templates, one per distinct database spec (the extra databases' are the owner's).
    pub(crate) templates: Vec<Template>,
    pub(crate) databases: TestDatabases,
}

impl Ready {
    /// The main templates, then the extra databases' (what relation caches are warmed for).
    pub(crate) fn all_templates(&self) -> Vec<Template> {
        let extras = self.databases.extras().templates();
        self.templates.iter().chain(extras).cloned().collect()
    }

    /// The first template: the build's database, and a package no template is chosen for, start from it.
    pub(crate) fn first_template(&self) -> String {
        self.templates
            .first()
            .map(|t| t.name.clone())
            .unwrap_or_default()
    }
}

pub(crate) async fn prepare(
    run: &Run<'_>,
    setup: &Setup,
    cluster: &mut Cluster,
    cache: Option<Cache>,
) -> Result<Ready, Error> {
    let started = Instant::now();
    let templates = match Cache::templates(cache) {
        Templates::Cached(templates) => {
            run.send(Event::TemplateCache {
                hit: true,
                stored: false,
            });
            templates
        }
        Templates::Prepare(cache) => prepare_templates(run, setup, cluster, cache).await?,
    };
    let (templates, extras) = template::extra::split(templates, setup.config.databases.len());
    let extras = Extras::new(&setup.config.extra_databases, extras);
    let snapshots = NamedSnapshots::new(&setup.config.snapshots, &templates, cluster.endpoint());
    for template in templates.iter().chain(extras.templates()) {
        run.info(format!(
            "template {}: {} migrations, {} fixture files",
            template.name, template.migrations, template.fixtures
        ));
    }
    let pool = run
        .unless_stopped(MaintenancePool::connect(
            cluster.endpoint(),
            cluster.info.version.major,
            setup.config.jobs as u32 + 2,
        ))
        .await?;
    let config = &setup.config;
    let package_templates = config.package_database.iter();
    let package_templates = package_templates.filter_map(|(package, index)| {
        Some((package.clone(), templates.get(*index)?.name.clone()))
    });
    let reuse_in = (config.reuse && !cluster.is_existing()).then(|| cluster.data_dir().to_owned());
    let databases = TestDatabases::new(Parts {
        pool,
        endpoint: cluster.endpoint().clone(),
        database_env: config.database_env.clone(),
        templates: package_templates.collect(),
        default_template: templates
            .first()
            .map(|t| t.name.clone())
            .unwrap_or_default(),
        snapshots,
        extras,
        keep_failed: run.cli.pgtest.keep_failed,
        reuse_in,
    });
    run.phase_finished(Phase::Template, started.elapsed());
    Ok(Ready {
        templates,
        databases,
    })
}

/// A cache miss (or no cache): the templates, the fixture snapshots and the extra databases prepared, then
/// stored in the cache when it is on. The extra templates come last, as the cache stores them.
async fn prepare_templates(
    run: &Run<'_>,
    setup: &Setup,
    cluster: &mut Cluster,
    cache: Option<Cache>,
) -> Result<Vec<Template>, Error> {
    let templates = run
        .unless_stopped(template::prepare(
            cluster.endpoint(),
            &setup.config.databases,
            setup.sqlx_test,
            cluster.info.version.major,
        ))
        .await?;
    let planned = NamedSnapshots::new(&setup.config.snapshots, &templates, cluster.endpoint());
    // Before the cluster is stored, so the cache holds them too (their files are in its key).
    let major = cluster.info.version.major;
    let endpoint = cluster.endpoint();
    run.unless_stopped(snapshots::build_fixture_snapshots(
        endpoint, &planned, major,
    ))
    .await?;
    let extras = run
        .unless_stopped(template::extra::prepare(
            cluster.endpoint(),
            &setup.config.extra_databases,
            cluster.info.version.major,
        ))
        .await?;
    // Stored as one list, the extra templates last (the cache key holds both).
    let templates = [templates, extras].concat();
    let stored = match &cache {
        Some(cache) => super::cache::store(run, cache, cluster, &templates).await?,
        None => false,
    };
    run.send(Event::TemplateCache { hit: false, stored });
    Ok(templates)
}
