//! Server sessions kept open between clients. `#[sqlx::test]` opens five or so connections per test (two to
//! the database it creates tests from, one for its migrator, the test's own pool); each new one is a
//! process the server forks, initialises and tears down, which cost more server time here than the test's
//! queries. A session a client ended cleanly is reset with `DISCARD ALL` (prepared statements, settings,
//! temporary tables, advisory locks, listeners: all gone, as pgbouncer resets them) and handed to the next
//! client that starts one with the very same startup message, with the greeting the server sent when it was
//! opened replayed to that client.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::Notify;

use super::protocol::simple_query;

/// How long a reset may take before the session is closed instead.
const RESET_DEADLINE: Duration = Duration::from_secs(2);
/// How long a new client waits for a session being reset before it opens one of its own.
const RESET_WAIT: Duration = Duration::from_millis(20);

/// An open server session nobody uses.
#[derive(Debug)]
pub struct IdleSession {
    pub stream: UnixStream,
    /// What the server said when the session opened, up to its first ReadyForQuery.
    pub greeting: Vec<u8>,
    pub database: String,
    /// [`Sessions::forget`]s of `database` before the session opened: one opened before the last is
    /// never kept.
    pub epoch: u64,
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
}

/// Idle sessions by the startup message that opened them.
#[derive(Debug)]
pub struct Sessions {
    state: Mutex<State>,
    /// Wakes clients waiting for a session being reset.
    returned: Notify,
    /// How many idle sessions to keep for one startup message.
    per_startup: usize,
}

impl Sessions {
    pub fn new(per_startup: usize) -> Sessions {
        Sessions {
            state: Mutex::new(State::default()),
            returned: Notify::new(),
            per_startup: per_startup.max(1),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The epoch a session opened now on `database` belongs to.
    pub fn epoch(&self, database: &str) -> u64 {
        self.state().epochs.get(database).copied().unwrap_or(0)
    }

    /// An idle session opened by `startup`, still alive. When none is idle but one is being reset (its
    /// client has just left: the next client often connects at once), waits a moment for it: a reset is
    /// a round trip, a new session a process.
    pub async fn take(&self, startup: &[u8]) -> Option<IdleSession> {
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

    /// Marks a session of `startup` as being reset; [`Sessions::returned`] says how that ended.
    pub fn resetting(&self, startup: &[u8]) {
        self.state()
            .by_startup
            .entry(startup.to_vec())
            .or_default()
            .resetting += 1;
    }

    /// A session of `startup` that was being reset: kept when `session` is given, the database was not
    /// forgotten since it opened, and there is room.
    pub fn returned(&self, startup: &[u8], session: Option<IdleSession>) {
        let mut state = self.state();
        let epoch = session
            .as_ref()
            .map(|s| state.epochs.get(&s.database).copied().unwrap_or(0));
        if let Some(kept) = state.by_startup.get_mut(startup) {
            kept.resetting = kept.resetting.saturating_sub(1);
            if let Some(session) = session.filter(|s| Some(s.epoch) == epoch) {
                if kept.idle.len() < self.per_startup {
                    kept.idle.push(session);
                }
            }
        }
        drop(state);
        self.returned.notify_waiters();
    }

    /// Closes the idle sessions on `database` (it is about to be dropped), and any being reset.
    pub fn forget(&self, database: &str) {
        let mut state = self.state();
        *state.epochs.entry(database.to_owned()).or_default() += 1;
        for kept in state.by_startup.values_mut() {
            kept.idle.retain(|session| session.database != database);
        }
        state
            .by_startup
            .retain(|_, kept| !kept.idle.is_empty() || kept.resetting > 0);
    }

    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        self.state().by_startup.values().map(|k| k.idle.len()).sum()
    }

    /// Closes every idle session.
    pub fn clear(&self) {
        for kept in self.state().by_startup.values_mut() {
            kept.idle.clear();
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
pub async fn reset(stream: &mut UnixStream) -> bool {
    let exchange = async {
        stream.write_all(&simple_query("DISCARD ALL")).await.ok()?;
        let mut discarded = false;
        loop {
            let (kind, body) = super::read_message(stream).await?;
            match kind {
                b'C' => discarded = body.starts_with(b"DISCARD ALL\0"),
                b'E' => return Some(false),
                b'Z' if discarded => return Some(body == b"I"),
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
