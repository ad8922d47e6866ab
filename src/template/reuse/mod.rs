//! Reuse of untouched databases: a test's database that the test changed in no way is as good as a fresh
//! clone, so it goes back to a pool and the next test of the same template gets it instead of a new copy.
//!
//! The rule, checked from the maintenance database without ever connecting to the test's database:
//! 1. templates are prepared so that reading dirties nothing (`ANALYZE`, `VACUUM FREEZE`, `CHECKPOINT`, see
//!    [`super::prepare`]); after each clone every file of the new database (in every tablespace, see
//!    [`files`]) is set to one old time ([`Reuse::prepared`]) and the files and a digest of the
//!    shared-catalog rows about it are recorded;
//! 2. after the test ([`Reuse::check`]): no session left (polled with a deadline); then closed: no
//!    connection allowed to it until it is handed out again, once every login under way has ended and
//!    with no session on it ([`catalog::close`]), so no straggler of the test can write to it after the
//!    check; no prepared transaction, replication slot or subscription for it, no dirty buffer of it;
//!    **then** the same files with the same sizes, every time still the preset one (a buffer found clean
//!    was written out before this look, so its write shows); then the same digest (which also covers
//!    statistics resets and server restarts). The SQL of these looks is schema-qualified throughout (see
//!    [`catalog`]).
//! 3. a database handed out ([`Reuse::take`], [`Reuse::hand_on`]) is renamed and allows connections again
//!    in one transaction.
//!
//! Anything else, any error or doubt, is [`Verdict::Modified`]: the database is dropped as before.

mod catalog;
mod files;
mod pacing;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sqlx::postgres::PgPool;

use super::quote_ident;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReuseError {
    #[error("could not create the extension pg_buffercache in the maintenance database: {0}; install the package that provides it (Debian: postgresql-<major>, which includes it) or set `reuse = false` in [package.metadata.pgtest]")]
    Buffercache(String),
    #[error("could not ask the server for its version: {0}")]
    Version(sqlx::Error),
}

/// Whether a database can be handed to another test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Untouched,
    /// Why it must be dropped.
    Modified(String),
}

/// What was recorded of a database right after it was cloned.
#[derive(Debug, Clone)]
struct Baseline {
    template: String,
    oid: i64,
    files: Vec<files::Entry>,
    digest: String,
    /// Rows the statistics said were written to it (see [`catalog::rows_written`]).
    rows_written: i64,
}

/// Checks databases after their tests and pools the untouched ones. Cheap to clone; all clones share one
/// pool.
#[derive(Debug, Clone)]
pub(crate) struct Reuse {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    /// The server's data directory: each database's files are in `base/<oid>` and, for relations in other
    /// tablespaces, in `pg_tblspc/<tablespace>/<version_dir>/<oid>`.
    data_dir: PathBuf,
    version_dir: String,
    /// `pg_buffercache`'s view, schema-qualified ([`catalog::buffercache`]).
    buffercache: String,
    digest_query: String,
    /// Database name → what it was when cloned (or last handed out).
    baselines: Mutex<HashMap<String, Baseline>>,
    /// Template → its untouched databases, waiting for a test.
    idle: Mutex<BTreeMap<String, Vec<String>>>,
    reused: AtomicUsize,
    /// Which fresh clones are worth recording (fewer while every check finds a write).
    pacing: pacing::Pacing,
}

impl Reuse {
    /// Sets reuse up on our own cluster (`data_dir` readable by us: we are the server's account or root),
    /// over `pool`, connected to its maintenance database.
    pub(crate) async fn start(pool: PgPool, data_dir: PathBuf) -> Result<Reuse, ReuseError> {
        let buffercache = catalog::buffercache(&pool)
            .await
            .map_err(|error| ReuseError::Buffercache(super::server_message(&error)))?;
        let (major, version_dir) = catalog::version(&pool).await.map_err(ReuseError::Version)?;
        Ok(Reuse {
            inner: Arc::new(Inner {
                pool,
                data_dir,
                version_dir,
                buffercache,
                digest_query: catalog::digest_query(major),
                baselines: Mutex::default(),
                idle: Mutex::default(),
                reused: AtomicUsize::new(0),
                pacing: pacing::Pacing::default(),
            }),
        })
    }

    /// Records `name`, just cloned from `template` and not yet used: its files get the preset time. On an
    /// error, or when [`pacing`] skips it (a suite that keeps writing), it is simply not eligible (its check
    /// then says modified).
    pub(crate) async fn prepared(&self, template: &str, name: &str) -> Result<(), String> {
        if !self.inner.pacing.worth_recording() {
            return Ok(());
        }
        self.record(template, name).await
    }

    /// Records `name`, just cloned from `template`, whatever the pacing: for a database whose check
    /// decides more than its own reuse (a read-only group of tests run together).
    pub(crate) async fn record(&self, template: &str, name: &str) -> Result<(), String> {
        let oid = catalog::oid(&self.inner.pool, name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("database {name} does not exist"))?;
        let files = self.preset_files(oid).map_err(|e| e.to_string())?;
        let digest = catalog::digest(&self.inner.pool, &self.inner.digest_query, oid)
            .await
            .map_err(|e| e.to_string())?;
        let rows_written = catalog::rows_written(&self.inner.pool, oid)
            .await
            .map_err(|e| e.to_string())?;
        let baseline = Baseline {
            template: template.to_owned(),
            oid,
            files,
            digest,
            rows_written,
        };
        self.baselines().insert(name.to_owned(), baseline);
        Ok(())
    }

    /// Records every clone from now on, however many checks found writes: for tests of the check itself,
    /// which run long series of writing cases.
    #[cfg(test)]
    pub(crate) fn record_every_clone(&self) {
        self.inner.pacing.record_every_clone();
    }

    /// Whether `name`, whose test has ended, is exactly as it was recorded. The baseline is used up either
    /// way: a database is checked once per use.
    pub(crate) async fn check(&self, name: &str) -> Verdict {
        let Some(baseline) = self.baselines().remove(name) else {
            return Verdict::Modified("it was not recorded when cloned".to_owned());
        };
        let verdict = self.compare(name, &baseline).await;
        self.inner.pacing.checked(matches!(verdict, Ok(None)));
        if !matches!(verdict, Ok(None)) {
            // Left as it was found, for whoever drops it (or looks into it); it is never handed out.
            let _ = catalog::allow_connections(&self.inner.pool, name, true).await;
        }
        match verdict {
            Ok(None) => {
                self.baselines().insert(name.to_owned(), baseline);
                Verdict::Untouched
            }
            Ok(Some(reason)) => Verdict::Modified(reason),
            Err(error) => Verdict::Modified(format!("the check failed: {error}")),
        }
    }

    /// The checks, in the order that makes them sound (see the module's documentation).
    async fn compare(&self, name: &str, baseline: &Baseline) -> Result<Option<String>, String> {
        let pool = &self.inner.pool;
        let oid = baseline.oid;
        if catalog::oid(pool, name).await.map_err(|e| e.to_string())? != Some(oid) {
            return Ok(Some("it was dropped or replaced".to_owned()));
        }
        if !catalog::sessions_gone(pool, oid)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(Some("sessions stayed on it".to_owned()));
        }
        // Not part of the proof (statistics may lag), only a quick way out for the many tests that write
        // rows, before the costlier looks at the buffers and the files.
        if catalog::rows_written(pool, oid)
            .await
            .map_err(|e| e.to_string())?
            > baseline.rows_written
        {
            return Ok(Some("rows were written to it".to_owned()));
        }
        // From here on no session is on it and none can start, logins under way included: what the checks
        // below see is what the next test gets.
        if let Err(error) = catalog::close(pool, name, oid).await {
            return Ok(Some(format!(
                "it could not be closed to sessions (one came to it after its test?): {}",
                super::server_message(&error)
            )));
        }
        if let Some(reason) = catalog::held_elsewhere(pool, &self.inner.buffercache, oid, name)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(Some(reason));
        }
        let dirs = files::database_dirs(&self.inner.data_dir, &self.inner.version_dir, oid)
            .map_err(|e| e.to_string())?;
        let now = files::list_all(&dirs).map_err(|e| e.to_string())?;
        if let Some(reason) = files::difference(&baseline.files, &now) {
            return Ok(Some(reason));
        }
        let digest = catalog::digest(pool, &self.inner.digest_query, oid)
            .await
            .map_err(|e| e.to_string())?;
        if digest != baseline.digest {
            return Ok(Some(
                "its shared-catalog rows, statistics resets or the server's start changed"
                    .to_owned(),
            ));
        }
        Ok(None)
    }

    /// Sets the files of database `oid`, in every tablespace, to the preset time, and lists them.
    fn preset_files(&self, oid: i64) -> Result<Vec<files::Entry>, files::FilesError> {
        let dirs = files::database_dirs(&self.inner.data_dir, &self.inner.version_dir, oid)?;
        files::preset_and_list_all(&dirs)
    }

    /// Puts `name` (found [`Verdict::Untouched`]) in the pool of its template.
    pub(crate) fn give_back(&self, name: &str) {
        let template = match self.baselines().get(name) {
            Some(baseline) => baseline.template.clone(),
            None => return,
        };
        self.idle()
            .entry(template)
            .or_default()
            .push(name.to_owned());
    }

    /// An untouched database of `template`, renamed `name` (a test could tell from `current_database()`),
    /// or None: the caller clones one. The rename fails if anyone is on it, and then it is dropped.
    pub(crate) async fn take(&self, template: &str, name: &str) -> Option<()> {
        let old = self.idle().get_mut(template)?.pop()?;
        let baseline = self.baselines().remove(&old)?;
        if self.rename(&old, name, baseline).await.is_err() {
            // Someone is on it after all, or the server is gone: it is not handed out.
            self.drop_database(&old).await;
            return None;
        }
        Some(())
    }

    /// Counts one test that got a reused database (its main one: extra databases are not counted).
    pub(crate) fn count_reused(&self) {
        self.inner.reused.fetch_add(1, Ordering::Relaxed);
    }

    /// Renames `old` to `new` and lets sessions connect to it again, in one transaction: a change of its
    /// `pg_database` row's name and `datallowconn` only, which the digest leaves out (the check finds a
    /// database by name and oid together instead).
    async fn rename(&self, old: &str, new: &str, baseline: Baseline) -> Result<(), sqlx::Error> {
        let sql = format!(
            // One query of two statements: PostgreSQL runs them as one transaction.
            "ALTER DATABASE {} RENAME TO {new}; ALTER DATABASE {new} WITH ALLOW_CONNECTIONS true",
            quote_ident(old),
            new = quote_ident(new)
        );
        sqlx::raw_sql(&sql).execute(&self.inner.pool).await?;
        self.baselines().insert(new.to_owned(), baseline);
        Ok(())
    }

    /// `old` (recorded, unused) was renamed `new` by someone else: its baseline follows, so that
    /// [`Reuse::check`] finds it under its new name (with the same oid, or it counts as replaced).
    pub(crate) fn moved(&self, old: &str, new: &str) {
        let mut baselines = self.baselines();
        if let Some(baseline) = baselines.remove(old) {
            baselines.insert(new.to_owned(), baseline);
        }
    }

    /// Renames `old`, found [`Verdict::Untouched`], to `new`, its baseline following; false if the rename
    /// failed (someone is on it), and then it is forgotten: the caller drops it.
    pub(crate) async fn hand_on(&self, old: &str, new: &str) -> bool {
        let Some(baseline) = self.baselines().remove(old) else {
            return false;
        };
        self.rename(old, new, baseline).await.is_ok()
    }

    /// Forgets `name` (its test's database is dropped or kept).
    pub(crate) fn forget(&self, name: &str) {
        self.baselines().remove(name);
    }

    /// How many tests got a database another test had used.
    pub(crate) fn reused(&self) -> usize {
        self.inner.reused.load(Ordering::Relaxed)
    }

    /// How many databases wait in the pool.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle().values().map(Vec::len).sum()
    }

    /// Drops every database still waiting in the pool.
    pub(crate) async fn drop_idle(&self) {
        let idle: Vec<String> = std::mem::take(&mut *self.idle())
            .into_values()
            .flatten()
            .collect();
        for name in idle {
            self.forget(&name);
            self.drop_database(&name).await;
        }
    }

    async fn drop_database(&self, name: &str) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
        // A failure leaves only a database in a cluster that is about to be removed.
        let _ = sqlx::raw_sql(&sql).execute(&self.inner.pool).await;
    }

    fn baselines(&self) -> MutexGuard<'_, HashMap<String, Baseline>> {
        self.inner
            .baselines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn idle(&self) -> MutexGuard<'_, BTreeMap<String, Vec<String>>> {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
