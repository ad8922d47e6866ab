//! One client connection through the gateway: its startup packets, a server session (kept or new), the
//! relay both ways with sqlx's statements answered by the pool, and the session reset and kept for the
//! next client when it ended cleanly between two messages on both sides.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::pool::{self, Pool};
use super::protocol::{
    self, simple_query, ClientStream, Framing, Greeting, Piece, Startup, MAX_READ_MESSAGE,
    MAX_STARTUP_PACKET,
};
use super::sessions::{self, IdleSession, Sessions};
use super::statements::TestStatement;

/// How long a client may take to send its startup packets, and the server its greeting: both come at
/// once from a working peer; a silent one must not hold a task and a socket for ever.
/// (Short in unit tests, which wait for them.)
const STARTUP_TIMEOUT: Duration = Duration::from_millis(if cfg!(test) { 200 } else { 10_000 });
const GREETING_TIMEOUT: Duration = Duration::from_millis(if cfg!(test) { 200 } else { 30_000 });

/// What every connection needs.
#[derive(Debug, Clone)]
pub(crate) struct Relay {
    /// The server's socket.
    pub(crate) upstream: PathBuf,
    pub(crate) pool: Arc<Pool>,
    pub(crate) sessions: Arc<Sessions>,
    /// Connections from other users are refused.
    pub(crate) uid: u32,
    /// The process on the other end of this connection, where known (set as it starts): the pool hands on
    /// only a database the process that created it drops.
    pub(crate) client: Option<u32>,
}

/// How a relayed session ended.
enum Ending {
    /// The client is done with it, between two messages both ways: the server session may serve
    /// another client.
    Terminated(UnixStream),
    /// Either side went away, or stopped mid-message.
    Closed,
}

/// A server session for a client, and what is known of it.
struct Session {
    stream: UnixStream,
    greeting: Vec<u8>,
    epoch: u64,
    /// The server greeted it ready: it may serve another client after this one.
    keepable: bool,
}

impl Relay {
    /// Serves one client connection: its startup, a server session (kept or new), the relay, and the
    /// session kept for the next client if it ended cleanly.
    pub(crate) async fn connection(mut self, mut client: UnixStream) {
        if !crate::platform::peer::is_allowed(&client, self.uid) {
            return;
        }
        self.client = crate::platform::peer::pid(&client);
        let Ok(Some((startup, database))) =
            tokio::time::timeout(STARTUP_TIMEOUT, self.startup(&mut client)).await
        else {
            return;
        };
        let session = match self.sessions.take(&startup).await {
            Some(idle) => Session {
                stream: idle.stream,
                greeting: idle.greeting,
                epoch: idle.epoch,
                keepable: true,
            },
            None => {
                let epoch = self.sessions.epoch(&database);
                let opened = tokio::time::timeout(GREETING_TIMEOUT, self.open(&startup, epoch));
                match opened.await {
                    Ok(Some(session)) => session,
                    _ => return,
                }
            }
        };
        if client.write_all(&session.greeting).await.is_err() {
            return;
        }
        let relayed = self.relay(client, session.stream, session.keepable, &database);
        let Ending::Terminated(mut server) = relayed.await else {
            return;
        };
        if !self.sessions.may_keep(&database) {
            let _ = server.write_all(&protocol::terminate()).await;
            return;
        }
        self.sessions.resetting(&startup, &database);
        let kept = sessions::reset(&mut server).await.then(|| IdleSession {
            stream: server,
            greeting: session.greeting,
            database: database.clone(),
            epoch: session.epoch,
            since: std::time::Instant::now(),
        });
        self.sessions.returned(&startup, &database, kept);
    }

    /// Reads the client's startup packets up to its startup message proper (answering encryption
    /// requests, passing a cancel request on); that message and the database it names.
    async fn startup(&self, client: &mut UnixStream) -> Option<(Vec<u8>, String)> {
        loop {
            let packet = read_startup_packet(client).await?;
            match Startup::parse(&packet)? {
                // The cluster has no TLS: "N" (refused), and the client goes on in the clear.
                Startup::Encryption => client
                    .write_all(&[protocol::ENCRYPTION_REFUSED])
                    .await
                    .ok()?,
                Startup::Cancel => {
                    self.pass_cancel(&packet).await;
                    return None;
                }
                Startup::Session { database } => return Some((packet, database)),
            }
        }
    }

    /// Opens a server session: the startup message, and the server's greeting read up to its first
    /// ReadyForQuery. A server that wants something of the client (a password) or refuses it hands the
    /// rest to the client: such a session is relayed, never kept.
    async fn open(&self, startup: &[u8], epoch: u64) -> Option<Session> {
        let mut stream = UnixStream::connect(&self.upstream).await.ok()?;
        stream.write_all(startup).await.ok()?;
        let mut greeting = Vec::new();
        loop {
            let (kind, body) = read_message(&mut stream, MAX_READ_MESSAGE).await?;
            greeting.extend(protocol::message(kind, &body));
            let keepable = match protocol::greeting_message(kind, &body) {
                Greeting::Opening => continue,
                Greeting::Ready => true,
                Greeting::ClientsBusiness => false,
            };
            return Some(Session {
                stream,
                greeting,
                epoch,
                keepable,
            });
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
    async fn relay(
        &self,
        client: UnixStream,
        server: UnixStream,
        keepable: bool,
        database: &str,
    ) -> Ending {
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let (terminated, stop_copying) = tokio::sync::oneshot::channel::<()>();
        let to_client = to_client(server_read, client_write, stop_copying);
        let to_server = self.to_server(client_read, server_write, keepable, database, terminated);
        let ((server_read, server_between), (server_write, ended_cleanly)) =
            tokio::join!(to_client, to_server);
        match server_read.reunite(server_write) {
            Ok(server) if ended_cleanly && server_between => Ending::Terminated(server),
            _ => Ending::Closed,
        }
    }

    /// Passes what the client sends on to the server, sqlx's statements rewritten, until the client
    /// ends; whether it ended cleanly between two messages of a session that may be kept.
    async fn to_server(
        &self,
        mut client_read: OwnedReadHalf,
        mut server_write: OwnedWriteHalf,
        keepable: bool,
        database: &str,
        terminated: tokio::sync::oneshot::Sender<()>,
    ) -> (OwnedWriteHalf, bool) {
        let mut stream = ClientStream::default();
        let mut input = vec![0u8; 16 * 1024];
        let mut pieces = Vec::new();
        let ended_cleanly = 'relay: loop {
            let read = match client_read.read(&mut input).await {
                // A client that closes without Terminate between two messages (sqlx's last connection
                // of a test, closed as its runtime ends) leaves a session that a reset can make clean;
                // one that stops mid-message does not.
                Ok(0) => break keepable && stream.at_boundary(),
                Err(_) => break false,
                Ok(read) => read,
            };
            stream.feed(&input[..read], &mut pieces);
            for piece in pieces.drain(..) {
                let bytes = match piece {
                    Piece::Bytes(bytes) => bytes,
                    Piece::Statement(statement) => {
                        simple_query(&self.answer(statement, database).await)
                    }
                    Piece::Closing(databases) => {
                        self.sessions.close(&databases).await;
                        continue;
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
        (server_write, ended_cleanly)
    }

    /// What the server gets instead of one of sqlx's statements, sent on a session on `database`. A
    /// drop that goes to the server waits for the sessions kept on its database to end; one the pool
    /// defers does not (its worker waits for them).
    async fn answer(&self, statement: TestStatement, database: &str) -> String {
        let dropped = match &statement {
            TestStatement::Create(_) => {
                self.sessions.source(database);
                None
            }
            TestStatement::DropIfExists(name) => Some(name.clone()),
        };
        let sql = self.pool.rewrite(statement, self.client).await;
        match dropped {
            Some(name) if sql != pool::NOTHING => self.sessions.close(&[name]).await,
            Some(name) => drop(self.sessions.forget(&name)),
            None => {}
        }
        sql
    }
}

/// Passes what the server sends on to the client until either closes or the client is done; whether it
/// stopped between two of the server's messages.
async fn to_client(
    mut server_read: OwnedReadHalf,
    mut client_write: OwnedWriteHalf,
    mut stop_copying: tokio::sync::oneshot::Receiver<()>,
) -> (OwnedReadHalf, bool) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut framing = Framing::default();
    loop {
        tokio::select! {
            read = server_read.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    framing.feed(&buffer[..read]);
                    if client_write.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
            },
            _ = &mut stop_copying => break,
        }
    }
    let _ = client_write.shutdown().await;
    (server_read, framing.at_boundary())
}

/// Reads one typed message of at most `max` bytes: its type byte and its body. A longer one, or a
/// length no message can have, ends the read.
pub(crate) async fn read_message(stream: &mut UnixStream, max: usize) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).await.ok()?;
    let length = protocol::message_length(&header);
    if length > max {
        return None;
    }
    let mut body = vec![0u8; length.checked_sub(5)?];
    stream.read_exact(&mut body).await.ok()?;
    Some((header[0], body))
}

/// Reads one untyped packet (length first) of at most PostgreSQL's size.
pub(crate) async fn read_startup_packet(client: &mut UnixStream) -> Option<Vec<u8>> {
    let mut length = [0u8; 4];
    client.read_exact(&mut length).await.ok()?;
    let length = u32::from_be_bytes(length) as usize;
    if !(8..=MAX_STARTUP_PACKET).contains(&length) {
        return None;
    }
    let mut packet = vec![0u8; length];
    packet[..4].copy_from_slice(&(length as u32).to_be_bytes());
    client.read_exact(&mut packet[4..]).await.ok()?;
    Some(packet)
}
