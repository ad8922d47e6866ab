//! The sqlx gateway: a Unix socket of its own in the run directory, in front of the server, through which
//! `#[sqlx::test]` batches reach the cluster. It relays PostgreSQL's wire protocol untouched except for the
//! statements with which sqlx's test support makes and removes each test's database (see [`pool`]), so
//! those tests get their databases from copies made ahead instead of waiting for a copy each; and it keeps
//! the server sessions clients end on sqlx's databases, to hand them to the next client that opens the
//! same one (see [`sessions`]). `relay` serves one client connection; `statements` reads the SQL the
//! gateway acts on.
//!
//! The copies are made, and used databases dropped, by the pool's workers (one per four jobs) through the
//! run's one owner of test databases ([`TestDatabases`]): its maintenance connections, and its reuse when
//! that is on (a database its test left untouched then goes back among the copies made ahead instead of
//! being dropped). The workers are tasks of the run's runtime, where the owner's connections live.
//!
//! Relaying runs on threads of its own with their own runtime, so it never waits behind the runner's work:
//! the gateway's thread accepts connections, and relays them itself for up to [`JOBS_PER_RELAY_THREAD`]
//! jobs; beyond that, relay threads are added (one per that many jobs, at most one per core) and each
//! connection is relayed by whichever is free. Relaying costs a few milliseconds of CPU per test, most of
//! it the kernel's socket work, so one thread would cap a many-core machine at a few hundred tests a
//! second.
//!
//! Only the invoking user (or root) may connect, checked from the socket's peer credentials, on top of the
//! socket directory's 0700.

pub(crate) mod pool;
pub(crate) mod protocol;
mod relay;
pub(crate) mod sessions;
pub(crate) mod statements;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::net::UnixListener;

use crate::cluster::Endpoint;
use crate::template::TestDatabases;
use pool::Pool;
pub(crate) use pool::PoolCounts;
use relay::Relay;
use sessions::Sessions;

const GATEWAY_DIR: &str = "sqlx-gateway";
/// How many jobs one relaying thread serves.
const JOBS_PER_RELAY_THREAD: usize = 4;
/// How often kept sessions are checked for having been unused too long.
const EXPIRY_TICK: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub(crate) enum GatewayError {
    #[error("could not open the #[sqlx::test] gateway's socket in {}: {source}", dir.display())]
    Listen { dir: PathBuf, source: io::Error },
    #[error("could not start the #[sqlx::test] gateway's thread: {0}")]
    Thread(#[source] io::Error),
}

/// What the gateway did, reported when it stops.
#[derive(Debug, Clone, Default)]
pub(crate) struct GatewayReport {
    pub(crate) counts: PoolCounts,
    /// Why copies stopped being made ahead, if they did.
    pub(crate) broken: Option<String>,
    /// The CPU time each of the gateway's threads used: its own first, then its relay threads'.
    pub(crate) thread_cpu: Vec<std::time::Duration>,
}

/// A running gateway; [`Gateway::stop`] (or dropping it) ends it.
#[derive(Debug)]
pub(crate) struct Gateway {
    endpoint: Endpoint,
    pool: Arc<Pool>,
    sessions: Arc<Sessions>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The gateway's thread; it ends with the CPU time it and its relay threads used.
    thread: Option<std::thread::JoinHandle<Vec<std::time::Duration>>>,
    /// The pool's workers, on the run's runtime.
    worker: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Opens the gateway's socket beside the server's and starts relaying to `upstream`. `ahead` copies of
    /// template1 are kept ready, made through `databases` by a worker spawned on the runtime this is called
    /// from; `server_major` picks how a copy made while its test waits is made. Without `databases` (or a
    /// runtime), each test's database is copied while it waits and dropped as sqlx asks.
    pub(crate) fn start(
        upstream: &Endpoint,
        run_dir: &Path,
        server_major: u32,
        ahead: usize,
        databases: Option<TestDatabases>,
    ) -> Result<Gateway, GatewayError> {
        let dir = run_dir.join(GATEWAY_DIR);
        let listen_error = |source| GatewayError::Listen {
            dir: dir.clone(),
            source,
        };
        private_dir(&dir).map_err(listen_error)?;
        let socket = dir.join(format!(".s.PGSQL.{}", upstream.port));
        let _ = std::fs::remove_file(&socket);
        let listener = std::os::unix::net::UnixListener::bind(&socket).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;

        let pool = Arc::new(Pool::new(
            ahead,
            crate::template::maintenance::clone_strategy(server_major),
        ));
        // Each test may hold a few sessions at once, and `ahead` tests run at once; the cap in all stays
        // far below the server's connections (a dozen per job).
        let sessions = Arc::new(Sessions::new(ahead + 1, 4 * (ahead + 1)));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let relay = Relay {
            upstream: upstream
                .socket_dir
                .join(format!(".s.PGSQL.{}", upstream.port)),
            pool: Arc::clone(&pool),
            sessions: Arc::clone(&sessions),
            uid: nix::unistd::Uid::effective().as_raw(),
            client: None,
        };
        let relay_threads = relay_threads(ahead, crate::platform::cpus());
        let thread = std::thread::Builder::new()
            .name("sqlx-gateway".into())
            .spawn(move || {
                let relays = Arc::new(Mutex::new(Vec::new()));
                if let Some(runtime) = runtime(relay_threads, &relays) {
                    runtime.block_on(serve(listener, relay, stopped));
                    // Waits for the relay threads, which add their CPU time as they end.
                    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
                }
                let mut cpu = vec![crate::own_cpu::this_thread()];
                cpu.extend(relays.lock().map(|r| r.clone()).unwrap_or_default());
                cpu
            })
            .map_err(GatewayError::Thread)?;
        let runtime = tokio::runtime::Handle::try_current().ok();
        let worker = match (databases, runtime) {
            (Some(databases), Some(runtime)) => {
                Some(runtime.spawn(work(Arc::clone(&pool), databases)))
            }
            _ => {
                pool.worker_gone();
                None
            }
        };
        Ok(Gateway {
            endpoint: Endpoint {
                socket_dir: dir,
                ..upstream.clone()
            },
            pool,
            sessions,
            stop: Some(stop),
            thread: Some(thread),
            worker,
        })
    }

    /// Where tests connect: the server's endpoint, at the gateway's socket.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Stops accepting, closes the sessions it kept, lets the worker finish the statement it is running
    /// (which keeps the database count exact for whatever runs next), and says what was done.
    pub(crate) async fn stop(mut self) -> GatewayReport {
        let thread_cpu = self.shut_down();
        self.pool.stop();
        if let Some(worker) = self.worker.take() {
            let _ = worker.await;
        }
        GatewayReport {
            counts: self.pool.counts(),
            broken: self.pool.broken(),
            thread_cpu,
        }
    }

    /// Stops the gateway's threads; the CPU time each used.
    fn shut_down(&mut self) -> Vec<std::time::Duration> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let cpu = self
            .thread
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default();
        // After the thread: no session can be handed back any more.
        self.sessions.clear();
        cpu
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shut_down();
        if let Some(worker) = self.worker.take() {
            worker.abort();
        }
    }
}

/// How many threads relay for `jobs` jobs on `cores` cores: one per [`JOBS_PER_RELAY_THREAD`], at most one
/// per core, and none beside the gateway's own for a few jobs.
fn relay_threads(jobs: usize, cores: usize) -> usize {
    if jobs <= JOBS_PER_RELAY_THREAD {
        return 0;
    }
    jobs.div_ceil(JOBS_PER_RELAY_THREAD).min(cores)
}

/// The gateway's runtime: its own thread alone, or with `relay_threads` that each add the CPU time they
/// used to `relays` as they end.
fn runtime(
    relay_threads: usize,
    relays: &Arc<Mutex<Vec<std::time::Duration>>>,
) -> Option<tokio::runtime::Runtime> {
    let mut builder = if relay_threads == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let relays = Arc::clone(relays);
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder
            .worker_threads(relay_threads)
            .thread_name("sqlx-gateway-relay")
            .on_thread_stop(move || {
                if let Ok(mut relays) = relays.lock() {
                    relays.push(crate::own_cpu::this_thread());
                }
            });
        builder
    };
    builder.enable_all().build().ok()
}

/// Creates `dir` readable by its owner only.
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        result => result,
    }
}

/// The pool's workers: make copies ahead and drop used databases through `databases` until the gateway
/// stops, each a task of its own, so that they run in parallel on a multi-threaded runtime.
async fn work(pool: Arc<Pool>, databases: TestDatabases) {
    // Before the workers take drops: each is then checked.
    if let Some(reuse) = databases.reuse() {
        pool.reuse_with(reuse.clone());
    }
    pool.worker_ready();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..pool.workers() {
        let (pool, databases) = (Arc::clone(&pool), databases.clone());
        workers.spawn(async move { pool.work(&databases).await });
    }
    while workers.join_next().await.is_some() {}
    pool.worker_gone();
}

/// Accepts connections until told to stop.
async fn serve(
    listener: std::os::unix::net::UnixListener,
    relay: Relay,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = UnixListener::from_std(listener) else {
        return;
    };
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    tokio::spawn(relay.clone().connection(client));
                }
                // Out of file descriptors, say: give the relays a moment to close some.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    };
    let sessions = Arc::clone(&relay.sessions);
    let expire = async {
        let mut ticks = tokio::time::interval(EXPIRY_TICK);
        loop {
            ticks.tick().await;
            sessions.expire(std::time::Instant::now());
        }
    };
    tokio::select! {
        _ = &mut stopped => {}
        () = accept => {}
        () = expire => {}
    }
}
