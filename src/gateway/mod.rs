//! The sqlx gateway: a Unix socket of its own in the run directory, in front of the server, through which
//! `#[sqlx::test]` batches reach the cluster. It relays PostgreSQL's wire protocol untouched except for the
//! statements with which sqlx's test support makes and removes each test's database (see [`pool`]), so
//! those tests get their databases from copies made ahead instead of waiting for a copy each; and it keeps
//! the server sessions clients end, to hand them to the next client that opens the same one (see
//! [`sessions`]).
//!
//! It runs on a thread of its own with its own single-threaded runtime, so relaying never waits behind the
//! runner's work. Only the invoking user (or root) may connect, checked from the socket's peer credentials,
//! on top of the socket directory's 0700.

pub mod pool;
pub mod protocol;
pub mod sessions;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::cluster::Endpoint;
use crate::template::Databases;
pub use pool::PoolCounts;
use pool::Pool;
use protocol::{simple_query, ClientStream, Greeting, Piece, Startup, TestStatement};
use sessions::{IdleSession, Sessions};

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
    sessions: Arc<Sessions>,
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
        // Each test may hold a few sessions at once, and `ahead` tests run at once.
        let sessions = Arc::new(Sessions::new(ahead + 1));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let relay = Relay {
            upstream: upstream.socket_dir.join(format!(".s.PGSQL.{}", upstream.port)),
            pool: Arc::clone(&pool),
            sessions: Arc::clone(&sessions),
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
            sessions,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where tests connect: the server's endpoint, at the gateway's socket.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Closes the sessions kept open on `database`, before it is dropped.
    pub fn forget(&self, database: &str) {
        self.sessions.forget(database);
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
        self.sessions.clear();
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
    sessions: Arc<Sessions>,
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

/// How a relayed session ended.
enum Ending {
    /// The client is done with it: the server session may serve another client.
    Terminated(UnixStream),
    /// Either side went away.
    Closed,
}

impl Relay {
    /// Serves one client connection: its startup, a server session (kept or new), the relay, and the
    /// session kept for the next client if it ended cleanly.
    async fn connection(self, mut client: UnixStream) {
        let allowed = client
            .peer_cred()
            .is_ok_and(|cred| cred.uid() == self.uid || cred.uid() == 0);
        if !allowed {
            return;
        }
        let (startup, database) = loop {
            let Some(packet) = read_startup_packet(&mut client).await else {
                return;
            };
            match Startup::parse(&packet) {
                // The cluster has no TLS: "N", and the client goes on in the clear.
                Some(Startup::Encryption) => {
                    if client.write_all(b"N").await.is_err() {
                        return;
                    }
                }
                Some(Startup::Cancel) => return self.pass_cancel(&packet).await,
                Some(Startup::Session { database }) => break (packet, database),
                None => return,
            }
        };
        let (server, greeting, epoch, keepable) = match self.sessions.take(&startup).await {
            Some(idle) => (idle.stream, idle.greeting, idle.epoch, true),
            None => {
                let epoch = self.sessions.epoch(&database);
                match self.open(&startup).await {
                    Some((server, greeting, keepable)) => (server, greeting, epoch, keepable),
                    None => return,
                }
            }
        };
        if client.write_all(&greeting).await.is_err() {
            return;
        }
        if let Ending::Terminated(mut server) = self.relay(client, server, keepable).await {
            self.sessions.resetting(&startup);
            let kept = sessions::reset(&mut server).await.then(|| IdleSession {
                stream: server,
                greeting,
                database,
                epoch,
            });
            self.sessions.returned(&startup, kept);
        }
    }

    /// Opens a server session: the startup message, and the server's greeting read up to its first
    /// ReadyForQuery. A server that wants something of the client (a password) or refuses it hands the
    /// rest to the client: such a session is relayed, never kept.
    async fn open(&self, startup: &[u8]) -> Option<(UnixStream, Vec<u8>, bool)> {
        let mut server = UnixStream::connect(&self.upstream).await.ok()?;
        server.write_all(startup).await.ok()?;
        let mut greeting = Vec::new();
        loop {
            let mut header = [0u8; 5];
            server.read_exact(&mut header).await.ok()?;
            let length = protocol::message_length(&header);
            let start = greeting.len();
            greeting.extend_from_slice(&header);
            greeting.resize(start + length.max(5), 0);
            server.read_exact(&mut greeting[start + 5..]).await.ok()?;
            match protocol::greeting_message(header[0], &greeting[start + 5..]) {
                Greeting::Opening => {}
                Greeting::Ready => return Some((server, greeting, true)),
                Greeting::ClientsBusiness => return Some((server, greeting, false)),
            }
        }
    }

    /// A cancel request goes to the server on a connection of its own, as PostgreSQL expects.
    async fn pass_cancel(&self, packet: &[u8]) {
        if let Ok(mut server) = UnixStream::connect(&self.upstream).await {
            if server.write_all(packet).await.is_ok() {
                let _ = server.read(&mut [0u8; 1]).await;
            }
        }
    }

    /// Relays a session both ways until either side closes it, or the client is done with a session that
    /// may be kept (which is then handed back, a Terminate not passed on).
    async fn relay(&self, client: UnixStream, server: UnixStream, keepable: bool) -> Ending {
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let (terminated, mut stop_copying) = tokio::sync::oneshot::channel::<()>();
        let to_client = async {
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                tokio::select! {
                    read = server_read.read(&mut buffer) => match read {
                        Ok(0) | Err(_) => break,
                        Ok(read) => {
                            if client_write.write_all(&buffer[..read]).await.is_err() {
                                break;
                            }
                        }
                    },
                    _ = &mut stop_copying => break,
                }
            }
            let _ = client_write.shutdown().await;
        };
        let to_server = async {
            let mut stream = ClientStream::default();
            let mut input = vec![0u8; 16 * 1024];
            let mut pieces = Vec::new();
            let ended_cleanly = 'relay: loop {
                let read = match client_read.read(&mut input).await {
                    // A client that closes without Terminate between two messages (sqlx's last
                    // connection of a test, closed as its runtime ends) leaves a session that a reset
                    // can make clean; one that stops mid-message does not.
                    Ok(0) => break keepable && stream.at_boundary(),
                    Err(_) => break false,
                    Ok(read) => read,
                };
                stream.feed(&input[..read], &mut pieces);
                for piece in pieces.drain(..) {
                    let bytes = match piece {
                        Piece::Bytes(bytes) => bytes,
                        Piece::Statement(statement) => {
                            if let TestStatement::DropIfExists(name) = &statement {
                                self.sessions.forget(name);
                            }
                            simple_query(&self.pool.rewrite(statement).await)
                        }
                        Piece::Terminate if keepable => break 'relay true,
                        Piece::Terminate => protocol::terminate(),
                    };
                    if server_write.write_all(&bytes).await.is_err() {
                        break 'relay false;
                    }
                }
            };
            if !ended_cleanly {
                let _ = server_write.shutdown().await;
            }
            let _ = terminated.send(());
            ended_cleanly
        };
        let ((), ended_cleanly) = tokio::join!(to_client, to_server);
        match server_read.reunite(server_write) {
            Ok(server) if ended_cleanly => Ending::Terminated(server),
            _ => Ending::Closed,
        }
    }
}

/// Reads one untyped packet (length first) of at most PostgreSQL's size.
async fn read_startup_packet(client: &mut UnixStream) -> Option<Vec<u8>> {
    let mut length = [0u8; 4];
    client.read_exact(&mut length).await.ok()?;
    let length = u32::from_be_bytes(length) as usize;
    if !(8..=protocol::MAX_STARTUP_PACKET).contains(&length) {
        return None;
    }
    let mut packet = vec![0u8; length];
    packet[..4].copy_from_slice(&(length as u32).to_be_bytes());
    client.read_exact(&mut packet[4..]).await.ok()?;
    Some(packet)
}
