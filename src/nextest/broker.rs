//! cargo-pgtest's side of the target runner's socket: it answers each test process's request with a
//! fresh database from the [`Pool`] and the variables naming it, and drops that database when the
//! connection ends, which is when the test process ends, however it ends. Only the invoking user (or
//! root) may connect, checked from the socket's peer credentials, inside a directory only its owner may
//! enter.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::pool::Pool;
use super::protocol::{Reply, Request};

/// The directory in the run directory that holds the socket.
const SOCKET_DIR: &str = "nextest";
/// The longest request line read.
const REQUEST_LIMIT: u64 = 4096;
/// How long the connections of test processes that already ended get to be noticed and their databases
/// dropped, once nextest has exited.
const SETTLE: Duration = Duration::from_secs(5);

/// What the broker hands out, and how.
#[derive(Debug)]
pub(crate) struct Handout {
    /// The clones made ahead, from the run's test databases.
    pub(crate) pool: Arc<Pool>,
    /// Variables nextest got for the build that a test must see as they were before cargo-pgtest set them.
    pub(crate) restore: Vec<Reply>,
}

impl Handout {
    /// The answer naming `database`: its variables (and its extra copies'), the restored ones, then `ready`.
    fn answer(&self, database: &str) -> Result<String, String> {
        let env = self.pool.databases().env(database);
        answer(&env, &self.restore, database)
    }
}

/// The lines naming `database`: `env`'s variables, then the `restore`d ones `env` does not set, then
/// `ready`.
fn answer(env: &[(String, String)], restore: &[Reply], database: &str) -> Result<String, String> {
    let restore = restore.iter().filter(|reply| match reply {
        Reply::Env(key, _) | Reply::Unset(key) => env.iter().all(|(set, _)| set != key),
        _ => false,
    });
    let mut text = String::new();
    let replies = env
        .iter()
        .map(|(key, value)| Reply::Env(key.clone(), value.clone()));
    for reply in replies.chain(restore.cloned()) {
        text.push_str(&reply.line()?);
    }
    text.push_str(&Reply::Ready(database.to_owned()).line()?);
    Ok(text)
}

/// How the broker's connections ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed {
    /// Databases still held by a test process when the broker stopped (a process that outlived nextest,
    /// or a drop not noticed in time); dropped at the stop.
    pub(crate) held_at_stop: usize,
    /// Databases handed out from the clones made ahead, and made while their test waited.
    pub(crate) counts: (u64, u64),
}

/// A listening broker; [`Broker::stop`] ends it.
pub(crate) struct Broker {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    pool: Arc<Pool>,
}

impl Broker {
    /// Opens the socket under `run_dir` and starts answering.
    pub(crate) fn start(run_dir: &Path, handout: Handout) -> io::Result<Broker> {
        let dir = run_dir.join(SOCKET_DIR);
        private_dir(&dir)?;
        let socket = dir.join("broker.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)?;
        let pool = Arc::clone(&handout.pool);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, Arc::new(handout), stopped));
        Ok(Broker {
            socket,
            stop: Some(stop),
            task,
            pool,
        })
    }

    /// Where the runner connects.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops accepting, gives the test processes' connections [`SETTLE`] to end, drops every database
    /// still there and says how many were still held.
    pub(crate) async fn stop(mut self) -> Closed {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        let held_at_stop = self.pool.drain().await;
        Closed {
            held_at_stop,
            counts: self.pool.counts(),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        result => result,
    }
}

/// Accepts connections until told to stop, then waits (up to [`SETTLE`]) for the open ones to end.
async fn serve(listener: UnixListener, handout: Arc<Handout>, mut stopped: oneshot::Receiver<()>) {
    let uid = nix::unistd::Uid::effective().as_raw();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let allowed = stream
                    .peer_cred()
                    .is_ok_and(|cred| cred.uid() == uid || cred.uid() == 0);
                if allowed {
                    connections.spawn(serve_one(stream, Arc::clone(&handout)));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let settled = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SETTLE, settled).await.is_err() {
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// One test process: its request, its database, and the drop when the connection ends.
async fn serve_one(stream: UnixStream, handout: Arc<Handout>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    match (&mut reader).take(REQUEST_LIMIT).read_line(&mut line).await {
        Ok(0) | Err(_) => return,
        Ok(_) => {}
    }
    let database = match Request::parse(&line) {
        Ok(request) => {
            handout
                .pool
                .take(
                    &handout
                        .pool
                        .databases()
                        .template_for(&request.package, None),
                )
                .await
        }
        Err(message) => Err(message),
    };
    let database = match database {
        Ok(database) => database,
        Err(message) => {
            if let Ok(line) = Reply::Error(message).line() {
                let _ = write.write_all(line.as_bytes()).await;
            }
            return;
        }
    };
    let answered = match handout.answer(&database) {
        Ok(answer) => write.write_all(answer.as_bytes()).await.is_ok(),
        Err(message) => {
            let line = Reply::Error(message).line().unwrap_or_default();
            let _ = write.write_all(line.as_bytes()).await;
            false
        }
    };
    if answered {
        // The test sends nothing more: the read ends when its process (and whatever inherited the
        // connection) is gone.
        let mut sink = [0u8; 64];
        while let Ok(1..) = reader.read(&mut sink).await {}
    }
    handout.pool.release(&database).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Endpoint;

    #[test]
    fn a_test_gets_its_database_and_not_the_builds() {
        let endpoint = Endpoint {
            socket_dir: PathBuf::from("/dev/shm/cargo-pgtest-x/socket"),
            port: 5432,
            user: "postgres".into(),
            password: "pw".into(),
            remote: None,
        };
        // `database_env = "MY_URL"`: the build got DATABASE_URL and MY_URL, neither set before.
        let env = endpoint.env("pgtest_nx_7", "MY_URL");
        let restore = [
            Reply::Unset("DATABASE_URL".into()),
            Reply::Unset("MY_URL".into()),
        ];
        let text = answer(&env, &restore, "pgtest_nx_7").unwrap();
        let replies: Vec<Reply> = text.lines().map(|l| Reply::parse(l).unwrap()).collect();
        assert!(replies.contains(&Reply::Env("MY_URL".into(), endpoint.url("pgtest_nx_7"))));
        assert!(replies.contains(&Reply::Env("PGDATABASE".into(), "pgtest_nx_7".into())));
        assert!(replies.contains(&Reply::Unset("DATABASE_URL".into())));
        assert!(!replies.contains(&Reply::Unset("MY_URL".into())));
        assert_eq!(replies.last(), Some(&Reply::Ready("pgtest_nx_7".into())));
    }
}
