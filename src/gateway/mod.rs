//! The sqlx gateway: a Unix socket of its own in the run directory, in front of the server, through which
//! `#[sqlx::test]` batches reach the cluster. It relays PostgreSQL's wire protocol untouched except for the
//! statements with which sqlx's test support makes and removes each test's database (see [`pool`]), so
//! those tests get their databases from copies made ahead instead of waiting for a copy each.
//!
//! It runs on a thread of its own with its own single-threaded runtime, so relaying never waits behind the
//! runner's work. Only the invoking user (or root) may connect, checked from the socket's peer credentials,
//! on top of the socket directory's 0700.

pub mod pool;
pub mod protocol;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::cluster::Endpoint;
use crate::template::Databases;
pub use pool::PoolCounts;
use pool::Pool;
use protocol::{simple_query, ClientStream, Piece};

const GATEWAY_DIR: &str = "sqlx-gateway";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("could not open the #[sqlx::test] gateway's socket in {}: {source}", dir.display())]
    Listen { dir: PathBuf, source: io::Error },
    #[error("could not start the #[sqlx::test] gateway's thread: {0}")]
    Thread(#[source] io::Error),
}

/// What the gateway did, reported when it stops.
#[derive(Debug, Clone, Default)]
pub struct GatewayReport {
    pub counts: PoolCounts,
    /// Why copies stopped being made ahead, if they did.
    pub broken: Option<String>,
}

/// A running gateway; [`Gateway::stop`] (or dropping it) ends it.
#[derive(Debug)]
pub struct Gateway {
    endpoint: Endpoint,
    pool: Arc<Pool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    /// Opens the gateway's socket beside the server's and starts relaying to `upstream`. `ahead` copies of
    /// template1 are kept ready; `server_major` picks how they are copied.
    pub fn start(
        upstream: &Endpoint,
        run_dir: &Path,
        server_major: u32,
        ahead: usize,
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
            crate::template::databases::clone_strategy(server_major),
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let relay = Relay {
            upstream: upstream.socket_dir.join(format!(".s.PGSQL.{}", upstream.port)),
            pool: Arc::clone(&pool),
            uid: nix::unistd::Uid::effective().as_raw(),
        };
        let maintenance = upstream.clone();
        let thread = std::thread::Builder::new()
            .name("sqlx-gateway".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(serve(listener, relay, maintenance, server_major, stopped));
            })
            .map_err(GatewayError::Thread)?;
        Ok(Gateway {
            endpoint: Endpoint {
                socket_dir: dir,
                ..upstream.clone()
            },
            pool,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where tests connect: the server's endpoint, at the gateway's socket.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Stops accepting, lets the worker finish the statement it is running, and says what was done.
    pub fn stop(mut self) -> GatewayReport {
        self.shut_down();
        GatewayReport {
            counts: self.pool.counts(),
            broken: self.pool.broken(),
        }
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Creates `dir` readable by its owner only.
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        result => result,
    }
}

/// What every connection needs.
#[derive(Debug, Clone)]
struct Relay {
    /// The server's socket.
    upstream: PathBuf,
    pool: Arc<Pool>,
    /// Connections from other users are refused.
    uid: u32,
}

/// Accepts connections and runs the pool's worker until told to stop.
async fn serve(
    listener: std::os::unix::net::UnixListener,
    relay: Relay,
    maintenance: Endpoint,
    server_major: u32,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = UnixListener::from_std(listener) else {
        return;
    };
    let pool = Arc::clone(&relay.pool);
    let worker = tokio::spawn({
        let pool = Arc::clone(&pool);
        async move {
            match Databases::connect(&maintenance, server_major, 1).await {
                Ok(databases) => {
                    pool.work(&databases).await;
                    databases.close().await;
                }
                // Without a maintenance connection, every test database is made inline.
                Err(error) => pool.break_with(error.to_string()),
            }
        }
    });
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    tokio::spawn(relay.clone().connection(client));
                }
                Err(_) => tokio::task::yield_now().await,
            }
        }
    };
    tokio::select! {
        _ = &mut stopped => {}
        () = accept => {}
    }
    pool.stop();
    // The worker ends after its current statement; waiting for it keeps the database count exact for
    // whatever runs next.
    let _ = worker.await;
}

impl Relay {
    /// Relays one client connection until either side closes it.
    async fn connection(self, client: UnixStream) {
        let allowed = client
            .peer_cred()
            .is_ok_and(|cred| cred.uid() == self.uid || cred.uid() == 0);
        if !allowed {
            return;
        }
        let Ok(server) = UnixStream::connect(&self.upstream).await else {
            return;
        };
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let to_client = async {
            let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            let _ = client_write.shutdown().await;
        };
        let to_server = async {
            let mut stream = ClientStream::default();
            let mut input = vec![0u8; 16 * 1024];
            let mut pieces = Vec::new();
            'relay: loop {
                let read = match client_read.read(&mut input).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => read,
                };
                stream.feed(&input[..read], &mut pieces);
                for piece in pieces.drain(..) {
                    let bytes = match piece {
                        Piece::Bytes(bytes) => bytes,
                        Piece::Statement(statement) => {
                            simple_query(&self.pool.rewrite(statement).await)
                        }
                    };
                    if server_write.write_all(&bytes).await.is_err() {
                        break 'relay;
                    }
                }
            }
            let _ = server_write.shutdown().await;
        };
        tokio::join!(to_client, to_server);
    }
}
