//! Server sessions kept open between clients. `#[sqlx::test]` opens five or so connections per test (two to
//! the database it creates tests from, one for its migrator, the test's own pool); each new one is a
//! process the server forks, initialises and tears down, which cost more server time here than the test's
//! queries. A session a client ended cleanly is reset with `DISCARD ALL` (prepared statements, settings,
//! temporary tables, advisory locks, listeners: all gone, as pgbouncer resets them) and handed to the next
//! client that starts one with the very same startup message, with the greeting the server sent when it was
//! opened replayed to that client.
//!
//! Sessions are kept only on databases a test has no reason to drop, rename or copy: the ones sqlx's test
//! support makes for each test (`_sqlx_test…`, dropped through the pool) and the ones it makes them from.
//! Before any statement that drops, renames or copies a database passes, the sessions kept on it end (a
//! session on it would make the statement wait and fail). A failing test's database is kept by sqlx and
//! its sessions are never asked for again: so the kept sessions are capped in all (the oldest ends first)
//! and end after a while unused.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::Notify;

use super::protocol::{backend, simple_query, terminate, MAX_READ_MESSAGE};
use super::statements::SQLX_TEST_PREFIX;

/// How long a reset may take before the session is closed instead.
const RESET_DEADLINE: Duration = Duration::from_secs(2);
/// How long a new client waits for a session being reset before it opens one of its own.
const RESET_WAIT: Duration = Duration::from_millis(20);
/// How long a session may stay kept unused: sessions are handed on within a test, or from one test
/// binary to the next of the same package, within moments.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a statement that needs a database free waits for the sessions kept on it to end.
const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

/// An open server session nobody uses.
#[derive(Debug)]
pub(crate) struct IdleSession {
    pub(crate) stream: UnixStream,
    /// What the server said when the session opened, up to its first ReadyForQuery.
    pub(crate) greeting: Vec<u8>,
    pub(crate) database: String,
    /// [`Sessions::forget`]s of `database` before the session opened: one opened before the last is
    /// never kept.
    pub(crate) epoch: u64,
    /// When it was last handed back.
    pub(crate) since: Instant,
}

impl IdleSession {
    /// Ends the session: a Terminate (an idle socket always has room for its five bytes), then closed.
    fn end(self) -> UnixStream {
        let _ = self.stream.try_write(&terminate());
        self.stream
    }
}

/// The sessions of one startup message.
#[derive(Debug, Default)]
struct Kept {
    idle: Vec<IdleSession>,
    /// Sessions being reset now, soon idle.
    resetting: usize,
}

#[derive(Debug, Default)]
struct State {
    by_startup: HashMap<Vec<u8>, Kept>,
    /// How often each database was forgotten.
    epochs: HashMap<String, u64>,
    /// Databases sqlx's test support made test databases from: sessions on them may be kept.
    sources: HashSet<String>,
    /// Sessions being reset now, by database.
    resetting_on: HashMap<String, usize>,
}

impl State {
    fn idle_count(&self) -> usize {
        self.by_startup.values().map(|kept| kept.idle.len()).sum()
    }

    /// The idle session handed back longest ago.
    fn oldest(&mut self) -> Option<IdleSession> {
        let (startup, at) = self
            .by_startup
            .iter()
            .flat_map(|(startup, kept)| {
                kept.idle
                    .iter()
                    .enumerate()
                    .map(move |(at, session)| (session.since, startup, at))
            })
            .min_by_key(|(since, _, _)| *since)
            .map(|(_, startup, at)| (startup.clone(), at))?;
        Some(self.by_startup.get_mut(&startup)?.idle.remove(at))
    }

    fn drop_empty(&mut self) {
        self.by_startup
            .retain(|_, kept| !kept.idle.is_empty() || kept.resetting > 0);
    }
}

/// Idle sessions by the startup message that opened them.
#[derive(Debug)]
pub(crate) struct Sessions {
    state: Mutex<State>,
    /// Wakes clients waiting for a session being reset.
    returned: Notify,
    /// How many idle sessions to keep for one startup message.
    per_startup: usize,
    /// How many idle sessions to keep in all.
    most: usize,
}

impl Sessions {
    pub(crate) fn new(per_startup: usize, most: usize) -> Sessions {
        Sessions {
            state: Mutex::new(State::default()),
            returned: Notify::new(),
            per_startup: per_startup.max(1),
            most: most.max(1),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The epoch a session opened now on `database` belongs to.
    pub(crate) fn epoch(&self, database: &str) -> u64 {
        self.state().epochs.get(database).copied().unwrap_or(0)
    }

    /// `database` is one sqlx's test support makes test databases from.
    pub(crate) fn source(&self, database: &str) {
        let mut state = self.state();
        if !state.sources.contains(database) {
            state.sources.insert(database.to_owned());
        }
    }

    /// Whether a session on `database` may be kept: one of sqlx's test databases, or a database they
    /// are made from.
    pub(crate) fn may_keep(&self, database: &str) -> bool {
        database.starts_with(SQLX_TEST_PREFIX) || self.state().sources.contains(database)
    }

    /// An idle session opened by `startup`, still alive. When none is idle but one is being reset (its
    /// client has just left: the next client often connects at once), waits a moment for it: a reset is
    /// a round trip, a new session a process.
    pub(crate) async fn take(&self, startup: &[u8]) -> Option<IdleSession> {
        let deadline = tokio::time::Instant::now() + RESET_WAIT;
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            {
                let mut state = self.state();
                let kept = state.by_startup.get_mut(startup)?;
                while let Some(session) = kept.idle.pop() {
                    if is_quiet(&session.stream) {
                        return Some(session);
                    }
                }
                if kept.resetting == 0 {
                    return None;
                }
            }
            tokio::time::timeout_at(deadline, returned).await.ok()?;
        }
    }

    /// Marks a session of `startup` on `database` as being reset; [`Sessions::returned`] says how that
    /// ended.
    pub(crate) fn resetting(&self, startup: &[u8], database: &str) {
        let mut state = self.state();
        state
            .by_startup
            .entry(startup.to_vec())
            .or_default()
            .resetting += 1;
        *state.resetting_on.entry(database.to_owned()).or_default() += 1;
    }

    /// A session of `startup` on `database` that was being reset: kept when `session` is given, the
    /// database was not forgotten since it opened, and there is room for it (the session kept longest
    /// ends to make room when all the sessions kept are too many).
    pub(crate) fn returned(&self, startup: &[u8], database: &str, session: Option<IdleSession>) {
        let mut state = self.state();
        if let Some(resetting) = state.resetting_on.get_mut(database) {
            *resetting = resetting.saturating_sub(1);
            if *resetting == 0 {
                state.resetting_on.remove(database);
            }
        }
        let epoch = state.epochs.get(database).copied().unwrap_or(0);
        if let Some(kept) = state.by_startup.get_mut(startup) {
            kept.resetting = kept.resetting.saturating_sub(1);
            if let Some(mut session) = session.filter(|s| s.epoch == epoch) {
                if kept.idle.len() < self.per_startup {
                    session.since = Instant::now();
                    kept.idle.push(session);
                }
            }
        }
        while state.idle_count() > self.most {
            match state.oldest() {
                Some(session) => drop(session.end()),
                None => break,
            }
        }
        state.drop_empty();
        drop(state);
        self.returned.notify_waiters();
    }

    /// Takes the idle sessions on `database` (it is about to be dropped, renamed or copied); any being
    /// reset now will not be kept.
    pub(crate) fn forget(&self, database: &str) -> Vec<IdleSession> {
        let mut state = self.state();
        *state.epochs.entry(database.to_owned()).or_default() += 1;
        let mut forgotten = Vec::new();
        for kept in state.by_startup.values_mut() {
            let (gone, stay) = std::mem::take(&mut kept.idle)
                .into_iter()
                .partition(|session| session.database == database);
            kept.idle = stay;
            forgotten.extend::<Vec<_>>(gone);
        }
        state.drop_empty();
        forgotten
    }

    /// Ends the sessions kept on `databases` before a statement that needs them free passes on: each is
    /// terminated and the server's end of it waited for, as are the sessions on them being reset now.
    pub(crate) async fn close(&self, databases: &[String]) {
        let deadline = tokio::time::Instant::now() + CLOSE_DEADLINE;
        let ending: Vec<UnixStream> = databases
            .iter()
            .flat_map(|database| self.forget(database))
            .map(IdleSession::end)
            .collect();
        for mut stream in ending {
            let mut scratch = [0u8; 256];
            let until_closed =
                async { while stream.read(&mut scratch).await.is_ok_and(|n| n > 0) {} };
            if tokio::time::timeout_at(deadline, until_closed)
                .await
                .is_err()
            {
                return;
            }
        }
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            let busy = {
                let state = self.state();
                databases.iter().any(|d| state.resetting_on.contains_key(d))
            };
            if !busy || tokio::time::timeout_at(deadline, returned).await.is_err() {
                return;
            }
        }
    }

    /// Ends the sessions kept unused for longer than [`IDLE_TIMEOUT`] by `now`.
    pub(crate) fn expire(&self, now: Instant) {
        let mut state = self.state();
        for kept in state.by_startup.values_mut() {
            let (expired, fresh): (Vec<_>, _) = std::mem::take(&mut kept.idle)
                .into_iter()
                .partition(|session| now.duration_since(session.since) > IDLE_TIMEOUT);
            kept.idle = fresh;
            for session in expired {
                drop(session.end());
            }
        }
        state.drop_empty();
    }

    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.state().idle_count()
    }

    /// Closes every idle session.
    pub(crate) fn clear(&self) {
        for kept in self.state().by_startup.values_mut() {
            for session in kept.idle.drain(..) {
                drop(session.end());
            }
        }
    }
}

/// An idle session has nothing to say: anything readable (an end, a FATAL message) means it is gone.
fn is_quiet(stream: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Resets a session its client ended: `DISCARD ALL`, then the server's answer read up to the
/// ReadyForQuery that says it is idle. Anything else (an error, a transaction left open, an answer still
/// owed to the client, no answer in time) means the session is not handed on.
pub(crate) async fn reset(stream: &mut UnixStream) -> bool {
    let exchange = async {
        stream.write_all(&simple_query("DISCARD ALL")).await.ok()?;
        let mut discarded = false;
        loop {
            let (kind, body) = super::relay::read_message(stream, MAX_READ_MESSAGE).await?;
            match kind {
                backend::COMMAND_COMPLETE => discarded = body.starts_with(b"DISCARD ALL\0"),
                backend::ERROR_RESPONSE => return Some(false),
                backend::READY_FOR_QUERY if discarded => return Some(body == [backend::IDLE]),
                // What an earlier query of the client's still produced: read past it.
                _ => {}
            }
        }
    };
    tokio::time::timeout(RESET_DEADLINE, exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle session on `database` whose server end is `server`.
    fn session(database: &str) -> (IdleSession, UnixStream) {
        let (stream, server) = UnixStream::pair().unwrap();
        let session = IdleSession {
            stream,
            greeting: Vec::new(),
            database: database.to_owned(),
            epoch: 0,
            since: Instant::now(),
        };
        (session, server)
    }

    fn keep(sessions: &Sessions, database: &str) -> UnixStream {
        let (session, server) = session(database);
        let startup = database.as_bytes();
        sessions.resetting(startup, database);
        sessions.returned(startup, database, Some(session));
        server
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A failing test's database is kept by sqlx and its sessions are never asked for again: without a
    /// cap they piled up until the server had no connection left.
    #[test]
    fn the_sessions_kept_are_capped_and_the_oldest_end_first() {
        let runtime = runtime();
        let _guard = runtime.enter();
        let sessions = Sessions::new(2, 3);
        let mut servers: Vec<UnixStream> = (0..5)
            .map(|n| keep(&sessions, &format!("_sqlx_test_{n}")))
            .collect();
        assert_eq!(sessions.idle_count(), 3);
        let ended = |server: &mut UnixStream| {
            let mut end = Vec::new();
            runtime.block_on(server.read_to_end(&mut end)).unwrap();
            end == terminate()
        };
        assert!(
            ended(&mut servers[0]) && ended(&mut servers[1]),
            "the two oldest end"
        );
        assert!(sessions
            .state()
            .by_startup
            .contains_key(b"_sqlx_test_4".as_slice()));
    }

    #[test]
    fn sessions_unused_for_too_long_end() {
        let runtime = runtime();
        let _guard = runtime.enter();
        let sessions = Sessions::new(2, 10);
        let _server = keep(&sessions, "_sqlx_test_a");
        sessions.expire(Instant::now());
        assert_eq!(sessions.idle_count(), 1, "just handed back");
        sessions.expire(Instant::now() + IDLE_TIMEOUT + Duration::from_secs(1));
        assert_eq!(sessions.idle_count(), 0);
    }

    #[test]
    fn only_sqlx_databases_and_those_they_are_made_from_keep_sessions() {
        let sessions = Sessions::new(2, 10);
        assert!(sessions.may_keep("_sqlx_test_a"));
        assert!(!sessions.may_keep("app"));
        assert!(!sessions.may_keep("template1"));
        sessions.source("app");
        assert!(sessions.may_keep("app"));
    }
}
