//! Turns the `[workspace.metadata.pgtest]` and `[package.metadata.pgtest]` tables (read from each
//! Cargo.toml's own text, so every error names its line) and the command-line flags into one checked
//! [`Config`]. No I/O but [`Config::check_paths`] and the look for a conventional `migrations` directory.
//!
//! - `schema`: the table as written (serde types, spans kept);
//! - `manifest`: one manifest's table, keys checked, values anchored to where they were written;
//! - `merge`: the workspace's table under each selected package's, and the templates they need;
//! - `error`: [`ConfigError`] and [`Origin`];
//! - `snapshots`: the `snapshots` tables, named states tests start from;
//! - `extra`: the `databases` tables, extra databases every test gets a copy of.

mod error;
pub(crate) mod extra;
mod manifest;
mod merge;
mod schema;
pub(crate) mod snapshots;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, Origin};
use manifest::{read_table, Source};
use merge::{database_spec, RunKeys};
pub(crate) use snapshots::{SnapshotSource, SnapshotSpec};

/// Everything a run needs to know, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub(crate) postgres: PostgresChoice,
    pub(crate) tmpfs: bool,
    pub(crate) isolation: Isolation,
    /// Name of the environment variable that carries the connection URL.
    pub(crate) database_env: String,
    /// PostgreSQL settings from the user, over cargo-pgtest's fast defaults.
    pub(crate) settings: Vec<Setting>,
    /// How many tests run at once.
    pub(crate) jobs: usize,
    /// A test running longer than this is killed and reported as TIMEOUT.
    pub(crate) timeout: Option<Duration>,
    /// A test running longer than this is reported as slow (once) while it goes on.
    pub(crate) slow_timeout: Duration,
    /// How many more times a failing test runs, each time in a fresh database.
    pub(crate) retries: usize,
    /// Whether a database its test left untouched goes to the next test instead of a fresh clone.
    pub(crate) reuse: bool,
    /// The `group_read_only` key: tests that read only in earlier runs run together.
    pub(crate) group_read_only: bool,
    /// The `html` key: where every run writes its HTML report (`--html` wins over it).
    pub(crate) html: Option<PathBuf>,
    /// The distinct template databases the tested packages need.
    pub(crate) databases: Vec<DatabaseSpec>,
    /// Package name → index into `databases`.
    pub(crate) package_database: BTreeMap<String, usize>,
    /// Where `postgres` was set, when it was.
    pub(crate) postgres_origin: Option<Origin>,
    /// The `server` key: an existing server's URL, used instead of a cluster of our own.
    pub(crate) server: Option<String>,
    /// Named database states some tests start from, each on one of `databases`.
    pub(crate) snapshots: Vec<SnapshotSpec>,
    /// `databases.NAME`: the extra databases every test gets a fresh copy of, in name order.
    pub(crate) extra_databases: Vec<extra::ExtraDatabase>,
}

/// Which PostgreSQL installation to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresChoice {
    /// The newest major version found.
    Newest,
    /// This major version (for example 15).
    Major(u32),
    /// The binaries in this directory.
    BinDir(PathBuf),
    /// This major version, from a relocatable build fetched into the per-user cache (once), not from the
    /// machine's installations: `postgres = { version = "17", fetch = true }` or `--fetch-postgres 17`.
    Fetch(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A fresh database cloned from the template for every test.
    Test,
    /// One migrated database for the whole run.
    Shared,
}

/// One `postgresql.conf` setting chosen by the user, and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub(crate) name: String,
    pub(crate) value: String,
    pub(crate) origin: Origin,
}

/// What goes into one template database. Two specs are equal (and hash alike) when their contents are:
/// where the keys were written does not change the template.
#[derive(Debug, Clone, Default)]
pub(crate) struct DatabaseSpec {
    /// The sqlx-layout migrations directory, if any.
    pub(crate) migrations: Option<PathBuf>,
    /// SQL files applied after the migrations, in order.
    pub(crate) fixtures: Vec<PathBuf>,
    /// Extensions created before the migrations run.
    pub(crate) extensions: Vec<String>,
    /// Where `migrations` and `fixtures` were set, so a missing path blames the right manifest.
    pub(crate) origins: SpecOrigins,
}

/// Where a [`DatabaseSpec`]'s paths were set; `None` for a value nobody wrote (a default).
#[derive(Debug, Clone, Default)]
pub(crate) struct SpecOrigins {
    pub(crate) migrations: Option<Origin>,
    pub(crate) fixtures: Option<Origin>,
}

impl DatabaseSpec {
    fn contents(&self) -> (&Option<PathBuf>, &[PathBuf], &[String]) {
        (&self.migrations, &self.fixtures, &self.extensions)
    }
}

impl PartialEq for DatabaseSpec {
    fn eq(&self, other: &Self) -> bool {
        self.contents() == other.contents()
    }
}

impl Eq for DatabaseSpec {}

impl Hash for DatabaseSpec {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.contents().hash(state);
    }
}

/// The workspace as `cargo metadata` describes it, reduced to what configuration needs.
#[derive(Debug, Clone, Default)]
pub struct Workspace {
    pub root: PathBuf,
    /// Text of the workspace's root Cargo.toml, where `[workspace.metadata.pgtest]` is read.
    pub root_manifest_text: String,
    pub members: Vec<Member>,
    /// Names of the members `cargo test` will test with the given flags.
    pub selected: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Member {
    pub name: String,
    pub manifest_path: PathBuf,
    /// Text of the member's Cargo.toml, where `[package.metadata.pgtest]` is read.
    pub manifest_text: String,
}

/// The flags that override configuration keys.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub no_tmpfs: bool,
    pub jobs: Option<usize>,
    pub isolation: Option<Isolation>,
    pub timeout: Option<Duration>,
    /// `--test-threads N` after `--`, which means the same as `--jobs` for cargo test.
    pub test_threads: Option<usize>,
    /// `--retries N`.
    pub retries: Option<usize>,
}

/// Resolves the configuration of a run. Every member's table is checked, even one not selected, so a
/// mistake does not wait for the day its package is tested.
pub fn resolve(
    workspace: &Workspace,
    overrides: &Overrides,
    cpus: usize,
) -> Result<Config, ConfigError> {
    let shared = read_table(&Source {
        section: "workspace",
        manifest: &workspace.root.join("Cargo.toml"),
        text: &workspace.root_manifest_text,
    })?;
    let mut run = RunKeys::default();
    run.lay(&shared, None)?;
    let mut extras = extra::RunDatabases::default();
    extras.lay(&shared.databases, None)?;
    let mut databases: Vec<DatabaseSpec> = Vec::new();
    let mut package_database = BTreeMap::new();
    let mut package_snapshots = Vec::new();
    for member in &workspace.members {
        let table = read_table(&Source {
            section: "package",
            manifest: &member.manifest_path,
            text: &member.manifest_text,
        })?;
        if !workspace.selected.contains(&member.name) {
            continue;
        }
        run.lay(&table, Some(&member.name))?;
        extras.lay(&table.databases, Some(&member.name))?;
        let spec = database_spec(&table, &shared, &member.manifest_path);
        let index = databases
            .iter()
            .position(|known| *known == spec)
            .unwrap_or_else(|| {
                databases.push(spec);
                databases.len() - 1
            });
        package_database.insert(member.name.clone(), index);
        package_snapshots.push((table.snapshots, index));
    }
    let snapshots = snapshots::resolve(&shared.snapshots, &package_snapshots, databases.len())?;
    let (postgres, postgres_origin) = run.postgres();
    let extra_databases = extras.finish(&run.database_env())?;
    Ok(Config {
        postgres,
        tmpfs: run.tmpfs(overrides),
        isolation: run.isolation(overrides),
        database_env: run.database_env(),
        settings: run.settings(),
        jobs: overrides
            .jobs
            .or(overrides.test_threads)
            .unwrap_or(cpus)
            .max(1),
        timeout: run.timeout(overrides),
        slow_timeout: run.slow_timeout(),
        retries: run.retries(overrides),
        reuse: run.reuse(),
        group_read_only: run.group_read_only(),
        html: run.html(),
        databases,
        package_database,
        postgres_origin,
        server: run.server(),
        snapshots,
        extra_databases,
    })
}

impl Config {
    /// Checks that every configured file and directory exists, before anything is started. Each path
    /// carries the origin of the key that named it; the workspace is not needed to find it.
    pub(crate) fn check_paths(&self, _workspace: &Workspace) -> Result<(), ConfigError> {
        let extras = self.extra_databases.iter().map(|extra| &extra.spec);
        for spec in self.databases.iter().chain(extras) {
            if let (Some(dir), Some(origin)) = (&spec.migrations, &spec.origins.migrations) {
                if !dir.is_dir() {
                    return Err(missing_path("migrations", origin, dir));
                }
            }
            if let Some(origin) = &spec.origins.fixtures {
                if let Some(file) = spec.fixtures.iter().find(|file| !file.is_file()) {
                    return Err(missing_path("fixtures", origin, file));
                }
            }
        }
        for snapshot in &self.snapshots {
            if let SnapshotSource::Fixtures(files) = &snapshot.source {
                if let Some(file) = files.iter().find(|file| !file.is_file()) {
                    let key = format!("snapshots.{}.fixtures", snapshot.name);
                    return Err(missing_path(&key, &snapshot.origin, file));
                }
            }
        }
        if let (PostgresChoice::BinDir(dir), Some(origin)) = (&self.postgres, &self.postgres_origin)
        {
            if !dir.is_dir() {
                return Err(missing_path("postgres", origin, dir));
            }
        }
        Ok(())
    }
}

fn missing_path(key: &str, origin: &Origin, path: &Path) -> ConfigError {
    ConfigError::MissingPath {
        key: key.to_owned(),
        origin: Box::new(origin.clone()),
        path: path.to_owned(),
    }
}
