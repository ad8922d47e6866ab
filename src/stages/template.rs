//! Stage 5, template: the template databases, taken from the cached cluster or prepared (migrations,
//! extensions, fixtures) and then stored; and the connection pool that clones and drops test databases.

use std::time::Instant;

use super::context::{Run, Setup};
use super::error::Error;
use crate::cluster::Cluster;
use crate::events::{Event, Phase};
use crate::cache::{Lookup, Templates};
use crate::template::snapshots::{self, NamedSnapshots};
use crate::template::{self, MaintenancePool, Extras, Template};

/// The templates, ready to be cloned.
pub(crate) struct Ready {
    pub(crate) templates: Vec<Template>,
    pub(crate) databases: MaintenancePool,
    /// The named snapshots; the fixture ones are built (or came with the cached cluster).
    pub(crate) snapshots: NamedSnapshots,
    /// The extra databases every test gets a copy of (`databases.NAME`); none by default.
    pub(crate) extras: Extras,
}

impl Ready {
    /// The main templates, then the extra databases' (what relation caches are warmed for).
    pub(crate) fn all_templates(&self) -> Vec<Template> {
        let extras = self.extras.templates();
        self.templates.iter().chain(extras).cloned().collect()
    }
}

pub(crate) async fn prepare(
    run: &Run<'_>,
    setup: &Setup,
    cluster: &mut Cluster,
    cache: Option<Lookup>,
) -> Result<Ready, Error> {
    let started = Instant::now();
    let templates = match Lookup::templates(cache) {
        Templates::Cached(templates) => {
            run.send(Event::TemplateCache {
                hit: true,
                stored: false,
            });
            templates
        }
        Templates::Prepare(plan) => {
            let templates = run
                .unless_stopped(template::prepare(
                    cluster.endpoint(),
                    &setup.config.databases,
                    setup.sqlx_test,
                    cluster.info.version.major,
                ))
                .await?;
            let planned =
                NamedSnapshots::new(&setup.config.snapshots, &templates, cluster.endpoint());
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
            let stored = match &plan {
                Some(plan) => super::cache::store(run, plan, cluster, &templates).await?,
                None => false,
            };
            run.send(Event::TemplateCache { hit: false, stored });
            templates
        }
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
    let databases = run
        .unless_stopped(MaintenancePool::connect(
            cluster.endpoint(),
            cluster.info.version.major,
            setup.config.jobs as u32 + 2,
        ))
        .await?;
    run.phase_finished(Phase::Template, started.elapsed());
    Ok(Ready {
        templates,
        databases,
        snapshots,
        extras,
    })
}
