//! The throwaway PostgreSQL cluster of one run: found binaries, a private directory in RAM, a server started
//! for the run and stopped, with its files removed, however the run ends.

pub mod binaries;
mod data_dir;
pub(crate) mod endpoint;
pub(crate) mod external;
pub(crate) mod fetch;
pub(crate) mod memory;
pub mod privileges;
pub(crate) mod process_tree;
pub(crate) mod server;
pub mod storage;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;

use binaries::{Binaries, Version};
pub(crate) use endpoint::Endpoint;
use privileges::ServerUser;
use server::{Server, ServerSpec};
use storage::{Placement, RunDir, StorageKind};

use crate::config::Setting;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Binaries(#[from] binaries::BinariesError),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error(transparent)]
    Privileges(#[from] privileges::PrivilegesError),
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error(transparent)]
    External(#[from] external::ExternalError),
    #[error("could not set up the cluster's superuser: {0}")]
    Setup(#[source] sqlx::Error),
    #[error("could not make a password for the cluster's superuser: the system's random source failed ({0})")]
    Random(#[source] getrandom::Error),
}

/// What the report says about the cluster.
#[derive(Debug, Clone)]
pub(crate) struct ClusterInfo {
    pub(crate) version: Version,
    pub(crate) storage: StorageKind,
    pub(crate) run_dir: PathBuf,
    pub(crate) log_path: PathBuf,
    pub(crate) server_user: String,
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

/// A running cluster: our own, or an existing server (`--server`) the run only makes databases on.
#[derive(Debug)]
pub struct Cluster {
    kind: Kind,
    pub(crate) info: ClusterInfo,
}

#[derive(Debug)]
enum Kind {
    /// Both boxed: each is large (a server's state; a connection and sqlx's options), and one per run.
    Own(Box<Own>),
    External(Box<external::External>),
}

/// Our own server. Fields drop in order: the server stops before its directory is removed.
#[derive(Debug)]
struct Own {
    server: Server,
    run_dir: RunDir,
    /// What starting the server again takes (after a snapshot taken from the stopped cluster).
    launch: Launch,
    /// The task storing a snapshot in the cache, if one was taken.
    storing: Option<JoinHandle<Result<(), String>>>,
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

impl Cluster {
    /// Creates the run directory, initialises and starts the server. With `from`, the data directory is
    /// that cached cluster's instead of a fresh `initdb`.
    pub async fn boot(
        spec: &ClusterSpec<'_>,
        from: Option<&crate::cache::Pack>,
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
            Some(cached) => data_dir::adopt(&server_spec, cached)?,
            None => data_dir::init(&server_spec).await?,
        }
        let mut server = server::start(&server_spec).await?;
        server.endpoint.password = set_password(&server.endpoint).await?;
        let info = ClusterInfo {
            version: spec.binaries.version.clone(),
            storage: spec.placement.kind.clone(),
            run_dir: run_dir.path().to_owned(),
            log_path: server.log_path.clone(),
            server_user: spec.server_user.name.clone(),
        };
        Ok(Cluster {
            kind: Kind::Own(Box::new(Own {
                server,
                run_dir,
                launch,
                storing: None,
            })),
            info,
        })
    }

    /// An existing server, connected and this run's lock held (see [`external`]).
    pub(crate) fn existing(server: external::External) -> Cluster {
        let info = ClusterInfo {
            version: server.version.clone(),
            storage: StorageKind::Disk,
            run_dir: PathBuf::new(),
            log_path: PathBuf::new(),
            server_user: server.endpoint.user.clone(),
        };
        Cluster {
            kind: Kind::External(Box::new(server)),
            info,
        }
    }

    /// Whether the server is an existing one, not ours.
    pub(crate) fn is_existing(&self) -> bool {
        matches!(self.kind, Kind::External(_))
    }

    /// The server's data directory, which a snapshot reads (never taken of a server not ours: empty).
    pub(crate) fn data_dir(&self) -> &Path {
        match &self.kind {
            Kind::Own(own) => &own.server.data_dir,
            Kind::External(_) => Path::new(""),
        }
    }

    /// Stops the server cleanly, runs `while_stopped` on its data directory, and starts it again with the
    /// same password: for reading files that only a clean stop leaves whole.
    pub(crate) async fn while_stopped<T>(
        &mut self,
        while_stopped: impl FnOnce(&Path) -> T,
    ) -> Result<T, ClusterError> {
        let own = match &mut self.kind {
            Kind::Own(own) => own,
            Kind::External(server) => {
                return Err(external::ExternalError::NotOurs(server.target.clone()).into())
            }
        };
        let password = std::mem::take(&mut own.server.endpoint.password);
        own.server.stop().await;
        let done = while_stopped(&own.server.data_dir);
        own.server = server::start(&own.launch.spec(own.run_dir.path())).await?;
        own.server.endpoint.password = password;
        Ok(done)
    }

    /// Hands over work that must end before the run directory goes (storing a snapshot): `shutdown` waits
    /// for it and reports the problem it returns, if any.
    pub(crate) fn finish_before_removal(&mut self, job: JoinHandle<Result<(), String>>) {
        if let Kind::Own(own) = &mut self.kind {
            own.storing = Some(job);
        }
    }

    /// The binaries our own server runs from; none for an existing server.
    pub(crate) fn binaries(&self) -> Option<&Binaries> {
        match &self.kind {
            Kind::Own(own) => Some(&own.launch.binaries),
            Kind::External(_) => None,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        match &self.kind {
            Kind::Own(own) => &own.server.endpoint,
            Kind::External(server) => &server.endpoint,
        }
    }

    /// Whether the server is still alive (ours may die under a test; an existing one is not watched).
    pub(crate) fn is_running(&mut self) -> bool {
        match &mut self.kind {
            Kind::Own(own) => own.server.is_running(),
            Kind::External(_) => true,
        }
    }

    pub(crate) fn server_pid(&self) -> Option<u32> {
        match &self.kind {
            Kind::Own(own) => own.server.pid(),
            Kind::External(_) => None,
        }
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        match &self.kind {
            Kind::Own(own) => own.server.log_tail(lines),
            Kind::External(_) => String::new(),
        }
    }

    /// Stops our server and removes every file of the run, or drops every database the run made on an
    /// existing server; returns how long that took and what went wrong.
    pub async fn shutdown(self) -> (Duration, Vec<String>) {
        let started = std::time::Instant::now();
        let own = match self.kind {
            Kind::Own(own) => own,
            Kind::External(server) => return (started.elapsed(), server.shutdown().await),
        };
        let Own {
            mut server,
            run_dir,
            storing,
            ..
        } = *own;
        server.stop_for_good().await;
        drop(server);
        let mut problems = Vec::new();
        // Waited for here, not left running: the process must not end halfway through writing the entry.
        if let Some(storing) = storing {
            match storing.await {
                Ok(Ok(())) => {}
                Ok(Err(problem)) => problems.push(problem),
                Err(error) => {
                    problems.push(format!("storing the migrated cluster failed: {error}"))
                }
            }
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
    let password = random_hex(16)?;
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

/// `bytes` random bytes from the operating system, as hex.
fn random_hex(bytes: usize) -> Result<String, ClusterError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::getrandom(&mut buffer).map_err(ClusterError::Random)?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_random_hex_of_the_length_asked() {
        let first = random_hex(16).unwrap();
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(first, random_hex(16).unwrap());
    }
}
