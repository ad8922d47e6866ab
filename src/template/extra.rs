//! The extra databases (`[package.metadata.pgtest.databases.NAME]`): one template each, prepared like the
//! main ones (extensions, migrations, fixtures) and cached with them; then, for every database a test (or
//! the build, or a shared run) gets, a copy of each extra template named after it, its URL in the
//! database's own variable, and its drop. Every copy is made by [`MaintenancePool::create_from`], the one path
//! all clones take.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use super::reuse::{Reuse, Verdict};
use super::{prepare_one, MaintenancePool, Template, TemplateError};
use crate::cluster::Endpoint;
use crate::config::extra::ExtraDatabase;

/// One extra database of the run: its name, its variable and its template.
#[derive(Debug)]
struct Extra {
    name: String,
    env: String,
    template: Template,
}

/// The run's extra databases, ready to be copied; cheap to clone. Empty when none is declared, and then
/// every method is a no-op.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extras(Arc<[Extra]>);

/// Prepares the template of each extra database, in order: `pgtest_extra_<NAME>`.
pub(crate) async fn prepare(
    endpoint: &Endpoint,
    extras: &[ExtraDatabase],
    server_major: u32,
) -> Result<Vec<Template>, TemplateError> {
    if extras.is_empty() {
        return Ok(Vec::new());
    }
    let mut admin = PgConnection::connect_with(&endpoint.connect_options("postgres"))
        .await
        .map_err(TemplateError::Connect)?;
    let mut templates = Vec::with_capacity(extras.len());
    for extra in extras {
        let name = endpoint
            .database_name(&template_name(&extra.name))
            .into_owned();
        templates.push(prepare_one(endpoint, &mut admin, &extra.spec, name, server_major).await?);
    }
    let _ = admin.close().await;
    Ok(templates)
}

/// The template of extra database `name`.
fn template_name(name: &str) -> String {
    format!("pgtest_extra_{name}")
}

/// Splits a run's templates as stored (the main ones, then the extra ones) into the two.
pub(crate) fn split(mut templates: Vec<Template>, main: usize) -> (Vec<Template>, Vec<Template>) {
    let extras = templates.split_off(main.min(templates.len()));
    (templates, extras)
}

impl Extras {
    /// The extra databases `declared`, with their `templates` (from [`prepare`], in the same order).
    pub(crate) fn new(declared: &[ExtraDatabase], templates: Vec<Template>) -> Extras {
        let extras: Vec<Extra> = declared
            .iter()
            .zip(templates)
            .map(|(database, template)| Extra {
                name: database.name.clone(),
                env: database.env.clone(),
                template,
            })
            .collect();
        Extras(extras.into())
    }

    /// The extra databases `declared`, only to name their copies (in a kept cluster, say): their
    /// templates are named as [`prepare`] names them, and nothing more is known of them.
    pub(crate) fn named(declared: &[ExtraDatabase]) -> Extras {
        let templates = declared
            .iter()
            .map(|database| Template {
                name: template_name(&database.name),
                migrations: 0,
                fixtures: 0,
                unlogged_tables: false,
            })
            .collect();
        Extras::new(declared, templates)
    }

    pub(crate) fn templates(&self) -> impl Iterator<Item = &Template> {
        self.0.iter().map(|extra| &extra.template)
    }

    /// The name of extra database `name`'s copy that goes with database `base`.
    pub(crate) fn copy_name(base: &str, name: &str) -> String {
        format!("{base}__{name}")
    }

    /// Makes `base` from `template`, then a copy of every extra database to go with it.
    pub(crate) async fn create_with(
        &self,
        databases: &MaintenancePool,
        template: &str,
        base: &str,
    ) -> Result<(), sqlx::Error> {
        databases.create_from(template, base).await?;
        self.create_for(databases, base).await
    }

    /// Makes a copy of every extra database to go with database `base`.
    pub(crate) async fn create_for(
        &self,
        databases: &MaintenancePool,
        base: &str,
    ) -> Result<(), sqlx::Error> {
        for extra in self.0.iter() {
            let copy = Self::copy_name(base, &extra.name);
            databases.create_from(&extra.template.name, &copy).await?;
        }
        Ok(())
    }

    /// Makes `base` from `template` and a copy of every extra database to go with it, each one either an
    /// untouched database `reuse` hands over (renamed) or a fresh clone, recorded for reuse. Each database
    /// is judged on its own, so a test that wrote only to its audit database still gets a reused main one.
    /// The time spent cloning, or None when every database was reused.
    pub(crate) async fn obtain_with(
        &self,
        databases: &MaintenancePool,
        reuse: Option<&Reuse>,
        template: &str,
        base: &str,
    ) -> Result<Option<Duration>, sqlx::Error> {
        let recording = reuse.map(|reuse| (reuse, Recording::Paced));
        self.obtain_recorded(databases, recording, template, base)
            .await
    }

    /// [`Extras::obtain_with`], every fresh clone recorded whatever the pacing: for databases whose check
    /// must be able to say untouched (a group of tests run together).
    pub(crate) async fn obtain_checkable(
        &self,
        databases: &MaintenancePool,
        reuse: &Reuse,
        template: &str,
        base: &str,
    ) -> Result<Option<Duration>, sqlx::Error> {
        let recording = Some((reuse, Recording::Always));
        self.obtain_recorded(databases, recording, template, base)
            .await
    }

    async fn obtain_recorded(
        &self,
        databases: &MaintenancePool,
        recording: Option<(&Reuse, Recording)>,
        template: &str,
        base: &str,
    ) -> Result<Option<Duration>, sqlx::Error> {
        let reuse = recording.map(|(reuse, _)| reuse);
        let main = obtain(databases, recording, template, base).await?;
        if let (None, Some(reuse)) = (main, reuse) {
            reuse.count_reused();
        }
        let mut cloning = main;
        for extra in self.0.iter() {
            let copy = Self::copy_name(base, &extra.name);
            if let Some(took) = obtain(databases, recording, &extra.template.name, &copy).await? {
                cloning = Some(cloning.unwrap_or_default() + took);
            }
        }
        Ok(cloning)
    }

    /// After `base`'s test: `base` and each copy that goes with it goes back to `reuse` if the test left it
    /// untouched, and is dropped otherwise (a failure leaves only a database in a cluster that is removed
    /// at the end). Whether every one of them was found untouched.
    pub(crate) async fn release_with(
        &self,
        databases: &MaintenancePool,
        reuse: Option<&Reuse>,
        base: &str,
    ) -> bool {
        let mut untouched = release(databases, reuse, base).await;
        for extra in self.0.iter() {
            untouched &= release(databases, reuse, &Self::copy_name(base, &extra.name)).await;
        }
        untouched
    }

    /// Tells `reuse` that `base` and its copies are kept or dropped elsewhere: never handed out again.
    pub(crate) fn forget_with(&self, reuse: &Reuse, base: &str) {
        reuse.forget(base);
        for extra in self.0.iter() {
            reuse.forget(&Self::copy_name(base, &extra.name));
        }
    }

    /// Drops `base` and the copies that go with it. A failure leaves only a database in a cluster that is
    /// removed at the end.
    pub(crate) async fn drop_with(&self, databases: &MaintenancePool, base: &str) {
        let _ = databases.drop_database(base).await;
        self.drop_for(databases, base).await;
    }

    /// Drops the copies that go with database `base` (those that were made).
    pub(crate) async fn drop_for(&self, databases: &MaintenancePool, base: &str) {
        for extra in self.0.iter() {
            let _ = databases
                .drop_database(&Self::copy_name(base, &extra.name))
                .await;
        }
    }

    /// Each extra database's variable, set to the URL of its copy that goes with database `base`.
    pub(crate) fn env(&self, endpoint: &Endpoint, base: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|extra| {
                let url = endpoint.url(&Self::copy_name(base, &extra.name));
                (extra.env.clone(), url)
            })
            .collect()
    }

    /// `env`'s variables added to `env` (the main database's).
    pub(crate) fn with_env(
        &self,
        mut env: Vec<(String, String)>,
        endpoint: &Endpoint,
        base: &str,
    ) -> Vec<(String, String)> {
        env.extend(self.env(endpoint, base));
        env
    }
}

/// Which fresh clones are recorded for reuse.
#[derive(Debug, Clone, Copy)]
enum Recording {
    /// As [`Reuse::prepared`]'s pacing says.
    Paced,
    /// Every one ([`Reuse::record`]).
    Always,
}

/// `name` from `template`: taken from `reuse` when it holds an untouched one, else cloned (then recorded; a
/// clone it could not record is only never reused). How long the clone took, None when reused.
async fn obtain(
    databases: &MaintenancePool,
    recording: Option<(&Reuse, Recording)>,
    template: &str,
    name: &str,
) -> Result<Option<Duration>, sqlx::Error> {
    if let Some((reuse, _)) = recording {
        if reuse.take(template, name).await.is_some() {
            return Ok(None);
        }
    }
    let started = Instant::now();
    databases.create_from(template, name).await?;
    let took = started.elapsed();
    // A clone that could not be recorded is only never reused.
    let _ = match recording {
        Some((reuse, Recording::Paced)) => reuse.prepared(template, name).await,
        Some((reuse, Recording::Always)) => reuse.record(template, name).await,
        None => Ok(()),
    };
    Ok(Some(took))
}

/// `name` back to `reuse` when untouched, else dropped; whether it was untouched.
async fn release(databases: &MaintenancePool, reuse: Option<&Reuse>, name: &str) -> bool {
    if let Some(reuse) = reuse {
        if reuse.check(name).await == Verdict::Untouched {
            reuse.give_back(name);
            return true;
        }
    }
    let _ = databases.drop_database(name).await;
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseSpec;

    fn template(name: &str) -> Template {
        Template {
            name: name.into(),
            migrations: 0,
            fixtures: 0,
            unlogged_tables: false,
        }
    }

    fn declared(name: &str, env: &str) -> ExtraDatabase {
        ExtraDatabase {
            name: name.into(),
            env: env.into(),
            spec: DatabaseSpec::default(),
            env_origin: crate::config::Origin {
                table: String::new(),
                manifest: "/p/Cargo.toml".into(),
                line: None,
            },
        }
    }

    #[test]
    fn stored_templates_split_into_main_and_extra() {
        let all = vec![template("main"), template("a"), template("b")];
        let (main, extras) = split(all.clone(), 1);
        assert_eq!((main.len(), extras.len()), (1, 2));
        assert_eq!(extras[1].name, "b");
        assert_eq!(split(all, 5).1.len(), 0);
    }

    #[test]
    fn each_variable_names_the_copy_that_goes_with_the_database() {
        let extras = Extras::new(
            &[declared("audit", "AUDIT_URL"), declared("stats", "S_URL")],
            vec![
                template("pgtest_extra_audit"),
                template("pgtest_extra_stats"),
            ],
        );
        let endpoint = Endpoint {
            socket_dir: "/tmp/socket".into(),
            port: 5432,
            user: "postgres".into(),
            password: String::new(),
            remote: None,
        };
        let env = extras.with_env(
            vec![("DATABASE_URL".into(), "x".into())],
            &endpoint,
            "pgtest_7",
        );
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["DATABASE_URL", "AUDIT_URL", "S_URL"]);
        assert_eq!(env[1].1, endpoint.url("pgtest_7__audit"));
        assert_eq!(env[2].1, endpoint.url("pgtest_7__stats"));
        assert_ne!(env[1].1, env[2].1);
        assert!(Extras::default().env(&endpoint, "pgtest_7").is_empty());
    }
}
