//! The throwaway PostgreSQL cluster of one run: found binaries, a private directory in RAM, a server started
//! for the run and stopped, with its files removed, however the run ends.

pub mod binaries;
pub mod endpoint;
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
    pub info: ClusterInfo,
}

impl Cluster {
    /// Creates the run directory, initialises and starts the server.
    pub async fn boot(spec: &ClusterSpec<'_>) -> Result<Cluster, ClusterError> {
        storage::remove_stale_runs(&spec.placement.parent);
        let run_dir = RunDir::create(spec.placement)?;
        let server_spec = ServerSpec {
            binaries: spec.binaries,
            run_dir: run_dir.path(),
            server_user: spec.server_user,
            settings: spec.settings,
            // Each test may open a pool of connections of its own; sqlx's default pool holds up to 10.
            max_connections: (spec.jobs as u32 * 12 + 20).max(100),
        };
        server::init(&server_spec).await?;
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
            info,
        })
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
    pub fn shutdown(self) -> (Duration, std::io::Result<()>) {
        let started = std::time::Instant::now();
        let Cluster {
            mut server,
            run_dir,
            ..
        } = self;
        server.stop();
        drop(server);
        let removed = run_dir.remove();
        (started.elapsed(), removed)
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

fn random_hex(bytes: usize) -> String {
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
