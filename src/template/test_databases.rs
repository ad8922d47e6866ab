//! The one owner of a run's test databases. Built once per run from the prepared templates, it knows the
//! endpoint, each package's template, the named snapshots, the extra databases (`databases.NAME`), reuse of
//! untouched databases and the cap on kept ones. Every path that gives a test a database asks it for a
//! [`Lease`] (the database, its extra copies and the environment naming them) and gives the database back
//! with what should become of it ([`Return`]): a test alone, a read-only group, a shared or `#[sqlx::test]`
//! batch's database, a retry, a snapshot builder, doc tests and the nextest broker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::keep::{Keeper, KeptDatabase};
use super::reuse::{Reuse, ReuseError, Verdict};
use super::snapshots::NamedSnapshots;
use super::{Extras, MaintenancePool};
use crate::cluster::Endpoint;
use crate::events::TestId;

/// How a lease's databases are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Obtain {
    /// Always a new clone, never recorded for reuse (a database shared by several tests, a retry's, a
    /// snapshot's).
    Fresh,
    /// An untouched database from reuse when one waits, else a clone recorded as reuse's pacing says.
    Reusable,
    /// As `Reusable`, but every clone is recorded: its check decides more than its own reuse (a read-only
    /// group's results count only if it is found untouched).
    Checkable,
}

/// What becomes of a leased database when its test is done. A database kept for a failed test
/// ([`TestDatabases::keep`]) stays whatever is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Return {
    /// Dropped, with its extra copies.
    Drop,
    /// Checked: each database found untouched goes back to reuse for a later test, the others are dropped.
    Check,
    /// The main database became a named snapshot (a template now): only its extra copies go.
    Sealed,
}

/// A database handed to a test (or to tests that share it), with the extra databases' copies that go with
/// it.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub(crate) name: String,
    /// The variables naming it and its extra copies: what the test's process gets.
    pub(crate) env: Vec<(String, String)>,
    /// How long its clones took; None when every database of it was reused.
    pub(crate) cloning: Option<Duration>,
}

/// What the owner is built from: the run's templates and settings, resolved once.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) pool: MaintenancePool,
    pub(crate) endpoint: Endpoint,
    /// The variable that names a test's database (`database_env`, DATABASE_URL by default).
    pub(crate) database_env: String,
    /// Package → its template database.
    pub(crate) templates: BTreeMap<String, String>,
    /// The template of a package `templates` does not name (the first one).
    pub(crate) default_template: String,
    pub(crate) snapshots: NamedSnapshots,
    pub(crate) extras: Extras,
    /// How many failed tests' databases are kept rather than dropped (0: none).
    pub(crate) keep_failed: usize,
    /// The server's data directory when untouched databases are reused: the `reuse` key is on and the
    /// cluster is our own (whose files the check reads).
    pub(crate) reuse_in: Option<PathBuf>,
}

/// The run's test databases. Cheap to clone; every clone is the same owner.
#[derive(Debug, Clone)]
pub(crate) struct TestDatabases {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    owned: Parts,
    keeper: Keeper,
    /// Set once by [`TestDatabases::start_reuse`]; none: every database is a fresh clone, dropped after.
    reuse: OnceLock<Reuse>,
}

impl TestDatabases {
    pub(crate) fn new(owned: Parts) -> TestDatabases {
        let keeper = Keeper::new(owned.keep_failed);
        TestDatabases {
            inner: Arc::new(Inner {
                owned,
                keeper,
                reuse: OnceLock::new(),
            }),
        }
    }

    fn owned(&self) -> &Parts {
        &self.inner.owned
    }

    /// The maintenance pool the databases are made and dropped over.
    pub(crate) fn pool(&self) -> &MaintenancePool {
        &self.owned().pool
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.owned().endpoint
    }

    pub(crate) fn snapshots(&self) -> &NamedSnapshots {
        &self.owned().snapshots
    }

    pub(crate) fn extras(&self) -> &Extras {
        &self.owned().extras
    }

    /// Package → template, as the nextest broker names them for its test processes.
    pub(crate) fn templates(&self) -> &BTreeMap<String, String> {
        &self.owned().templates
    }

    /// The database a test of `package` starts from: snapshot `snapshot`'s if it has one, else its
    /// package's template.
    pub(crate) fn template_for(&self, package: &str, snapshot: Option<usize>) -> String {
        let owned = self.owned();
        if let Some(snapshot) = snapshot.and_then(|index| owned.snapshots.snapshots.get(index)) {
            return snapshot.database.clone();
        }
        owned
            .templates
            .get(package)
            .unwrap_or(&owned.default_template)
            .clone()
    }

    /// The server's data directory when reuse is asked for (see [`Parts::reuse_in`]).
    pub(crate) fn reuse_in(&self) -> Option<&Path> {
        self.owned().reuse_in.as_deref()
    }

    /// Turns reuse on when it is asked for; once per run. An error leaves it off.
    pub(crate) async fn start_reuse(&self) -> Result<(), ReuseError> {
        let Some(data_dir) = self.reuse_in() else {
            return Ok(());
        };
        if self.inner.reuse.get().is_some() {
            return Ok(());
        }
        let reuse = Reuse::start(self.pool().pool().clone(), data_dir.to_owned()).await?;
        let _ = self.inner.reuse.set(reuse);
        Ok(())
    }

    /// Reuse, once started: the `#[sqlx::test]` gateway records, checks and hands on its databases through
    /// it, as every other path does.
    pub(crate) fn reuse(&self) -> Option<&Reuse> {
        self.inner.reuse.get()
    }

    pub(crate) fn reuses(&self) -> bool {
        self.reuse().is_some()
    }

    /// The variables naming database `name` and its extra copies.
    pub(crate) fn env(&self, name: &str) -> Vec<(String, String)> {
        self.env_via(self.endpoint(), name)
    }

    /// [`TestDatabases::env`], the main database reached at `endpoint` (the `#[sqlx::test]` gateway).
    pub(crate) fn env_via(&self, endpoint: &Endpoint, name: &str) -> Vec<(String, String)> {
        let owned = self.owned();
        let env = endpoint.env(name, &owned.database_env);
        owned.extras.with_env(env, &owned.endpoint, name)
    }

    /// Makes database `name` from `template` (and a copy of every extra database to go with it), as
    /// `obtain` says.
    pub(crate) async fn lease(
        &self,
        template: &str,
        name: &str,
        obtain: Obtain,
    ) -> Result<Lease, sqlx::Error> {
        let recording = match (self.reuse(), obtain) {
            (Some(reuse), Obtain::Reusable) => Some((reuse, Recording::Paced)),
            (Some(reuse), Obtain::Checkable) => Some((reuse, Recording::Always)),
            (None, _) | (_, Obtain::Fresh) => None,
        };
        let pool = self.pool();
        let mut cloning = obtain_one(pool, recording, template, name).await?;
        if let (None, Some((reuse, _))) = (cloning, recording) {
            reuse.count_reused();
        }
        for (extra_template, copy) in self.extras().copies(name) {
            if let Some(took) = obtain_one(pool, recording, extra_template, &copy).await? {
                cloning = Some(cloning.unwrap_or_default() + took);
            }
        }
        Ok(Lease {
            name: name.to_owned(),
            env: self.env(name),
            cloning,
        })
    }

    /// Makes `name`, a copy of `template` for a test yet to ask for it (the `#[sqlx::test]` gateway's copies
    /// made ahead, which it renames to the name the test asks for), recorded for reuse as its pacing says.
    /// Never taken from reuse: the gateway hands untouched databases on under names of its own.
    pub(crate) async fn copy_ahead(&self, template: &str, name: &str) -> Result<(), sqlx::Error> {
        self.pool().create_from(template, name).await?;
        if let Some(reuse) = self.reuse() {
            // One that could not be recorded is only never handed on.
            let _ = reuse.prepared(template, name).await;
        }
        Ok(())
    }

    /// Keeps database `name` for failed `test` if the cap allows (a database kept already, a shared one,
    /// costs nothing more); whether it is kept. A kept database is never handed out again nor dropped.
    pub(crate) fn keep(&self, test: TestId, name: &str) -> bool {
        if !self.inner.keeper.keep(test, name) {
            return false;
        }
        if let Some(reuse) = self.reuse() {
            reuse.forget(name);
            for (_, copy) in self.extras().copies(name) {
                reuse.forget(&copy);
            }
        }
        true
    }

    fn is_kept(&self, name: &str) -> bool {
        self.inner.keeper.holds(name)
    }

    /// The databases kept for failed tests, in the order they were.
    pub(crate) fn kept(&self) -> Vec<KeptDatabase> {
        self.inner.keeper.kept()
    }

    /// Gives database `name` (and its extra copies) back as `how` says; whether every one of them was found
    /// untouched and went back to reuse. A failure to drop leaves only a database in a cluster that is
    /// removed at the end.
    pub(crate) async fn give_back(&self, name: &str, how: Return) -> bool {
        if self.is_kept(name) {
            return false;
        }
        let reuse = self.reuse().filter(|_| how == Return::Check);
        let mut untouched = match how {
            Return::Sealed => true,
            Return::Drop | Return::Check => self.release_one(reuse, name).await,
        };
        for (_, copy) in self.extras().copies(name) {
            untouched &= self.release_one(reuse, &copy).await;
        }
        untouched && how == Return::Check
    }

    /// `name` back to `reuse` when untouched, else dropped; whether it was untouched.
    async fn release_one(&self, reuse: Option<&Reuse>, name: &str) -> bool {
        if let Some(reuse) = reuse {
            if reuse.check(name).await == Verdict::Untouched {
                reuse.give_back(name);
                return true;
            }
        }
        let _ = self.pool().drop_database(name).await;
        false
    }

    /// A database someone else made (sqlx for a `#[sqlx::test]`) for `test`: kept if the test failed for
    /// good and the cap allows, else dropped.
    pub(crate) async fn keep_or_drop(&self, test: TestId, name: &str, failed: bool) {
        if !(failed && self.keep(test, name)) {
            let _ = self.pool().drop_database(name).await;
        }
    }

    /// How many databases were handed to a test untouched instead of cloned.
    pub(crate) fn reused(&self) -> usize {
        self.reuse().map_or(0, Reuse::reused)
    }

    /// Once every test has ended: the untouched databases still waiting go with the cluster at teardown
    /// at no cost, unless the cluster is saved for its kept databases (then they are dropped now). How
    /// many are left waiting.
    pub(crate) async fn settle(&self) -> usize {
        let Some(reuse) = self.reuse() else {
            return 0;
        };
        if self.kept().is_empty() {
            return reuse.idle_count();
        }
        reuse.drop_idle().await;
        0
    }

    /// How many databases the cluster holds (for the leak check).
    pub(crate) async fn count(&self) -> Result<i64, sqlx::Error> {
        self.pool().count().await
    }

    pub(crate) async fn close(&self) {
        self.pool().close().await;
    }

    /// An owner over `pool` with no templates of its own and `reuse` already started (tests of the paths
    /// that copy other databases, such as the `#[sqlx::test]` gateway's).
    #[cfg(test)]
    pub(crate) fn over(
        pool: MaintenancePool,
        endpoint: Endpoint,
        reuse: Option<Reuse>,
    ) -> TestDatabases {
        let owner = TestDatabases::new(Parts {
            pool,
            endpoint,
            database_env: "DATABASE_URL".into(),
            templates: BTreeMap::new(),
            default_template: String::new(),
            snapshots: NamedSnapshots::default(),
            extras: Extras::default(),
            keep_failed: 0,
            reuse_in: None,
        });
        if let Some(reuse) = reuse {
            let _ = owner.inner.reuse.set(reuse);
        }
        owner
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

/// `name` from `template`: taken from reuse when it holds an untouched one, else cloned (then recorded; a
/// clone that could not be recorded is only never reused). How long the clone took, None when reused.
async fn obtain_one(
    pool: &MaintenancePool,
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
    pool.create_from(template, name).await?;
    let took = started.elapsed();
    let _ = match recording {
        Some((reuse, Recording::Paced)) => reuse.prepared(template, name).await,
        Some((reuse, Recording::Always)) => reuse.record(template, name).await,
        None => Ok(()),
    };
    Ok(Some(took))
}
