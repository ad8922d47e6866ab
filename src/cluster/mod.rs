//! The throwaway PostgreSQL cluster of one run: found binaries, a private directory in RAM, a server started
//! for the run and stopped, with its files removed, however the run ends.

pub mod binaries;
pub mod cache;
pub mod endpoint;
pub mod memory;
pub mod privileges;
pub mod server;
pub mod storage;

use std::path::PathBuf;
use std::time::Duration;

use binaries::{Binaries, Version};
pub use endpoint::Endpoint;
use privileges::ServerUser;
use server::{Server, ServerSpec};
use storage::{Placement, RunDir, StorageKind};

use crate::config::Setting;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Binaries(#[from] binaries::BinariesError),
    #[error(transparent)]
    Privileges(#[from] privileges::PrivilegesError),
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error("could not set up the cluster's superuser: {0}")]
    Setup(#[source] sqlx::Error),
    #[error("could not take a snapshot of the migrated cluster for the cache: {0}")]
    Snapshot(#[source] sqlx::Error),
}

/// What the report says about the cluster.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub version: Version,
    pub bin_dir: PathBuf,
    pub storage: StorageKind,
    pub run_dir: PathBuf,
    pub log_path: PathBuf,
    pub server_user: String,
}

/// How to boot.
pub struct ClusterSpec<'a> {
    pub binaries: &'a Binaries,
    pub placement: &'a Placement,
    pub server_user: &'a ServerUser,
    pub settings: &'a [Setting],
    /// How many tests run at once, to size the server.
    pub jobs: usize,
}

/// A running cluster. Fields drop in order: the server stops before its directory is removed.
#[derive(Debug)]
pub struct Cluster {
    server: Server,
    run_dir: RunDir,
    /// What starting the server again takes (after a snapshot taken from the stopped cluster).
    launch: Launch,
    /// The thread storing a snapshot in the cache, if one was taken.
    storing: Option<std::thread::JoinHandle<Result<(), String>>>,
    pub info: ClusterInfo,
}

#[derive(Debug)]
struct Launch {
    binaries: Binaries,
    server_user: ServerUser,
    settings: Vec<Setting>,
    max_connections: u32,
    shared_buffers_kib: u32,
}

impl Launch {
    fn spec<'a>(&'a self, run_dir: &'a std::path::Path) -> ServerSpec<'a> {
        ServerSpec {
            binaries: &self.binaries,
            run_dir,
            server_user: &self.server_user,
            settings: &self.settings,
            max_connections: self.max_connections,
            shared_buffers_kib: self.shared_buffers_kib,
        }
    }
}

/// How a snapshot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOf {
    /// The running cluster, after a checkpoint: a later start recovers from it.
    RunningCluster,
    /// The cluster stopped cleanly, then started again: needed when templates hold unlogged tables, which
    /// any recovery empties.
    StoppedCluster,
}

impl Cluster {
    /// Creates the run directory, initialises and starts the server. With `from`, the data directory is
    /// that cached cluster's instead of a fresh `initdb`.
    pub async fn boot(
        spec: &ClusterSpec<'_>,
        from: Option<&cache::Pack>,
    ) -> Result<Cluster, ClusterError> {
        storage::remove_stale_runs(&spec.placement.parent);
        let run_dir = RunDir::create(spec.placement)?;
        let launch = Launch {
            binaries: spec.binaries.clone(),
            server_user: spec.server_user.clone(),
            settings: spec.settings.to_vec(),
            // Each test may open a pool of connections of its own; sqlx's default pool holds up to 10.
            max_connections: (spec.jobs as u32 * 12 + 20).max(100),
            // Test databases are small and short-lived: a modest cache that grows with the tests in flight
            // keeps the cluster's memory low (a `shared_buffers` setting still overrides it).
            shared_buffers_kib: (16 + 4 * spec.jobs as u32).min(128) * 1024,
        };
        let server_spec = launch.spec(run_dir.path());
        match from {
            Some(cached) => server::adopt(&server_spec, cached)?,
            None => server::init(&server_spec).await?,
        }
        let mut server = server::start(&server_spec).await?;
        server.endpoint.password = set_password(&server.endpoint).await?;
        let info = ClusterInfo {
            version: spec.binaries.version.clone(),
            bin_dir: spec.binaries.bin_dir.clone(),
            storage: spec.placement.kind.clone(),
            run_dir: run_dir.path().to_owned(),
            log_path: server.log_path.clone(),
            server_user: spec.server_user.name.clone(),
        };
        Ok(Cluster {
            server,
            run_dir,
            launch,
            storing: None,
            info,
        })
    }

    /// Reads the cluster's data directory into memory and stores what it read in `cache` under `key` on a
    /// thread of its own, off the critical path (`shutdown` waits for it and reports how it went). Returns
    /// whether a snapshot was taken.
    ///
    /// Of the running cluster ([`SnapshotOf::RunningCluster`]): it is idle meanwhile (no session but ours,
    /// no autovacuum, no timed checkpoint), so after `CHECKPOINT` its files hold everything and nothing
    /// changes them; the copy is what a file-system snapshot would be, and a run that starts from it
    /// recovers from that checkpoint with nothing to redo (a few milliseconds). That costs this run about
    /// 30 ms less than a clean stop and a restart. Should the WAL have moved during the read (a user's
    /// `autovacuum = on` woke up, say), the copy is not stored. Recovery empties unlogged tables, so
    /// templates that hold some are read from the stopped cluster instead, which then starts again.
    pub async fn snapshot(
        &mut self,
        cache: &cache::Cache,
        key: &str,
        manifest: &str,
        of: SnapshotOf,
    ) -> Result<bool, ClusterError> {
        use sqlx::Connection;
        let mut connection =
            sqlx::PgConnection::connect_with(&self.server.endpoint.connect_options("postgres"))
                .await
                .map_err(ClusterError::Snapshot)?;
        let templates: Vec<String> = sqlx::query_scalar(
            "SELECT 'base/' || oid FROM pg_database WHERE datistemplate AND datname <> 'template0'",
        )
        .fetch_all(&mut connection)
        .await
        .map_err(ClusterError::Snapshot)?;
        let data_dir = self.server.data_dir.clone();
        let read = || {
            cache::Pack::read(&data_dir, &|path| belongs_in_snapshot(path, &templates)).map_err(
                |source| server::ServerError::Write {
                    path: data_dir.clone(),
                    source,
                },
            )
        };
        let pack = match of {
            SnapshotOf::RunningCluster => {
                let wal_position = "SELECT pg_current_wal_insert_lsn()::text";
                sqlx::raw_sql("CHECKPOINT")
                    .execute(&mut connection)
                    .await
                    .map_err(ClusterError::Snapshot)?;
                let before: String = sqlx::query_scalar(wal_position)
                    .fetch_one(&mut connection)
                    .await
                    .map_err(ClusterError::Snapshot)?;
                let pack = read()?;
                let after: String = sqlx::query_scalar(wal_position)
                    .fetch_one(&mut connection)
                    .await
                    .map_err(ClusterError::Snapshot)?;
                let _ = connection.close().await;
                if before != after {
                    return Ok(false);
                }
                pack
            }
            SnapshotOf::StoppedCluster => {
                let _ = connection.close().await;
                let password = std::mem::take(&mut self.server.endpoint.password);
                self.server.stop();
                let pack = read()?;
                self.server = server::start(&self.launch.spec(self.run_dir.path())).await?;
                self.server.endpoint.password = password;
                pack
            }
        };

        let (cache, key, manifest) = (cache.clone(), key.to_owned(), manifest.to_owned());
        self.storing = Some(std::thread::spawn(move || {
            cache.put(&key, &manifest, &pack).map_err(|error| {
                format!(
                    "could not store the migrated cluster in {}: {error}; the next run builds it again",
                    cache.root().display()
                )
            })
        }));
        Ok(true)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.server.endpoint
    }

    /// Whether the server is still alive (it may die under a test).
    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    pub fn server_pid(&self) -> Option<u32> {
        self.server.pid()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.server.log_tail(lines)
    }

    /// Stops the server and removes every file of the run; returns how long that took.
    pub fn shutdown(self) -> (Duration, Vec<String>) {
        let started = std::time::Instant::now();
        let Cluster {
            mut server,
            run_dir,
            storing,
            ..
        } = self;
        server.stop_for_good();
        drop(server);
        let mut problems = Vec::new();
        // The snapshot being stored lives in the run directory: it must be done before that goes.
        if let Some(Ok(Err(problem))) = storing.map(std::thread::JoinHandle::join) {
            problems.push(problem);
        }
        if let Err(error) = run_dir.remove() {
            problems.push(format!(
                "could not remove the cluster's directory completely: {error}"
            ));
        }
        (started.elapsed(), problems)
    }
}

/// Gives the superuser a random per-run password and returns it. Connections come over the private socket
/// with peer authentication, so the password is only a second lock, handed to the tests as PGPASSWORD.
async fn set_password(endpoint: &Endpoint) -> Result<String, ClusterError> {
    use sqlx::Connection;
    let password = random_hex(16);
    let mut connection = sqlx::PgConnection::connect_with(&endpoint.connect_options("postgres"))
        .await
        .map_err(ClusterError::Setup)?;
    // PostgreSQL's utility statements take no bind parameters; the password is hex, so quoting is safe.
    sqlx::raw_sql(&format!(
        "ALTER ROLE {} PASSWORD '{password}'",
        server::SUPERUSER
    ))
    .execute(&mut connection)
    .await
    .map_err(ClusterError::Setup)?;
    let _ = connection.close().await;
    Ok(password)
}

pub(crate) fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buffer = vec![0u8; bytes];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buffer))
        .is_err()
    {
        // No /dev/urandom: fall back to the clock and pid, still unknown to other users in practice.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mixed = seed ^ ((std::process::id() as u128) << 64);
        buffer = mixed.to_le_bytes()[..bytes.min(16)].to_vec();
    }
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// What of a running cluster's data directory goes into a snapshot (`path` relative to it). Not the files of
/// the running server (`postmaster.pid` would stop a later start that finds its process id in use); not the
/// relation-cache init files, which every start removes; and not the free-space and visibility maps
/// (`<relfilenode>_fsm`, `_vm`) of the databases test databases are copied from (`templates`, as
/// `base/<oid>`): about a quarter of their files and a seventh of their bytes, which every copy and every
/// drop of a test database would otherwise write and delete (measured here: 16 % off a `FILE_COPY` clone,
/// 18 % off a drop). Both maps are hints PostgreSQL rebuilds as it needs them; a missing one reads as empty
/// (no free space known, no page known all-visible), which is also what a freshly migrated table has.
fn belongs_in_snapshot(path: &std::path::Path, templates: &[String]) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if matches!(
        name.as_ref(),
        "postmaster.pid" | "postmaster.opts" | "pg_internal.init"
    ) {
        return false;
    }
    let in_template = path
        .parent()
        .is_some_and(|dir| templates.iter().any(|t| dir == std::path::Path::new(t)));
    !(in_template && (name.ends_with("_fsm") || name.ends_with("_vm")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_snapshot_leaves_out_the_running_server_and_the_templates_maps() {
        let templates = ["base/1".to_owned(), "base/16384".to_owned()];
        let kept = |path: &str| belongs_in_snapshot(Path::new(path), &templates);
        assert!(!kept("postmaster.pid"));
        assert!(!kept("postmaster.opts"));
        assert!(!kept("global/pg_internal.init"));
        assert!(!kept("base/16384/pg_internal.init"));
        assert!(!kept("base/1/1259_fsm"));
        assert!(!kept("base/16384/2608_vm"));
        assert!(kept("base/16384/2608"), "the relation itself");
        assert!(kept("base/5/1259_fsm"), "`postgres` is no template");
        assert!(kept("global/pg_control"));
        assert!(kept("base/1"));
    }
}
