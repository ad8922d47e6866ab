//! The databases the gateway hands to `#[sqlx::test]`: copies of `template1` made ahead of the tests that
//! will ask for them, and the used ones dropped off the critical path.
//!
//! sqlx makes each test's database with `create database "<name>"`, a copy of `template1` (which cargo-pgtest
//! migrated when the package's migrations allow it). PostgreSQL 15 copies it with `WAL_LOG`, writing every
//! page to the WAL: 25–60 ms here, the larger part of a small test. The gateway answers that statement with
//! `ALTER DATABASE "<ready copy>" RENAME TO "<name>"` (well under a millisecond) when a copy is ready, and
//! with a `FILE_COPY` copy of `template1` when none is; either way the test gets what it asked for, a fresh
//! copy of template1 under its name.
//!
//! sqlx's `drop database if exists "<name>"` after a test, for a database handed out here, returns at once
//! ([`NOTHING`]); the worker drops the database later, `WITH (FORCE)`, when no copy needs making (or
//! twice as many used databases wait as copies are kept ready) and the sessions the test closed have ended
//! (or after about a second). A test therefore never waits for the
//! drop, and the worker never for PostgreSQL's 100 ms pause when a drop finds a session still ending.
//! Should the same name be asked for again before that drop (two test binaries with the same module path),
//! the create waits for it. Only a worker that is there takes drops: when it could not connect (or has
//! not within a second), sqlx's drop goes to the server as sqlx wrote it, and nothing waits for a worker.
//!
//! With reuse ([`Reuse`], our own cluster and the `reuse` key on), each copy made ahead is recorded when
//! made, and the worker checks a used database before it drops it: one its test left untouched is renamed
//! back to a ready copy's name instead and handed to the next test. Only the drop sqlx sends after its test
//! passed, from the process that created the database, may hand it on: sqlx sends the same statement
//! before it creates a database, which may then drop one a failed test left (kept for inspection).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use super::statements::TestStatement;

use crate::template::maintenance::create_statement;
use crate::template::reuse::{Reuse, Verdict};
use crate::template::{quote_ident, TestDatabases};

/// The database every copy is made from: what sqlx's own `create database` copies.
const SOURCE: &str = "template1";
/// Copies that may fail in a row (a session on template1 makes them fail) before making them stops, and
/// the pause after each.
const COPY_ATTEMPTS: u32 = 3;
const COPY_RETRY_PAUSE: Duration = Duration::from_millis(20);
/// How often a drop is put back for sessions still ending on its database, and how long the worker pauses
/// when that is all it has to do: about a second in all, then it drops `WITH (FORCE)`.
const DROP_ATTEMPTS: u32 = 200;
const DROP_RETRY_PAUSE: Duration = Duration::from_millis(5);
/// What sqlx's drop becomes: a statement that does nothing, quickly, and answers like any other.
pub(crate) const NOTHING: &str = "DO $pgtest$BEGIN END$pgtest$";
/// How many jobs one worker keeps copies ready for, and drops used databases after: a copy or a drop keeps
/// a worker waiting on the server for some milliseconds, so one worker would cap a many-core machine at a
/// hundred or so tests a second.
pub(crate) const JOBS_PER_WORKER: usize = 4;
/// How long a drop waits for the worker to connect (it takes milliseconds) before it goes to the server
/// as sqlx wrote it.
const WORKER_WAIT: Duration = Duration::from_secs(1);

/// What the gateway did, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PoolCounts {
    /// Test databases handed out from the copies made ahead.
    pub(crate) ready: u64,
    /// Test databases copied while their test waited (no copy was ready).
    pub(crate) inline: u64,
    /// Used databases taken off the critical path: dropped later, or handed on.
    pub(crate) deferred_drops: u64,
    /// Test databases handed out that an earlier test had left untouched (counted in `ready` too).
    pub(crate) reused: u64,
}

/// Whether the worker that drops used databases is there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Worker {
    /// Still connecting: it may never come.
    #[default]
    Connecting,
    Working,
    /// It could not connect, or stopped.
    Gone,
}

#[derive(Debug, Default)]
struct State {
    worker: Worker,
    /// Copies of template1 waiting for a test, oldest first.
    ready: VecDeque<String>,
    /// Copies being made now.
    making: usize,
    /// Used databases waiting to be dropped, under the names their tests gave them.
    used: VecDeque<String>,
    /// The used databases the workers are dropping now.
    dropping: HashSet<String>,
    /// Names handed to tests and not yet dropped, with the process that asked for each (where known).
    handed_out: HashMap<String, Option<u32>>,
    /// Ready copies that are used databases found untouched.
    recycled: HashSet<String>,
    /// The run's reuse, when it is on.
    reuse: Option<Reuse>,
    next_id: u64,
    counts: PoolCounts,
    /// Copies that failed in a row.
    failures: u32,
    /// Why making copies stopped (copies kept failing); tests then get `FILE_COPY` copies made inline.
    broken: Option<String>,
    /// Used databases a create waits for (the same name asked for again): dropped before anything else,
    /// without waiting for sessions to end.
    awaited: HashSet<String>,
    /// How often the drop of a used database was put back because sessions were still ending on it.
    drop_attempts: HashMap<String, u32>,
    stopping: bool,
}

impl State {
    fn fresh_name(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("pgtest_{kind}_{}", self.next_id)
    }
}

/// The pool: its state is shared between the connections (which rewrite) and its workers (which make and
/// drop databases, one per [`JOBS_PER_WORKER`] jobs).
#[derive(Debug)]
pub(crate) struct Pool {
    state: Mutex<State>,
    /// Wakes the worker.
    wake: Notify,
    /// Wakes creates waiting for a drop.
    dropped: Notify,
    /// Wakes drops waiting for the worker to connect.
    worker_known: Notify,
    /// How many copies to keep ready: as many as tests run at once.
    ahead: usize,
    /// ` STRATEGY FILE_COPY` on PostgreSQL 15+.
    clone_suffix: &'static str,
}

impl Pool {
    pub(crate) fn new(ahead: usize, clone_suffix: &'static str) -> Pool {
        Pool {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            dropped: Notify::new(),
            worker_known: Notify::new(),
            ahead: ahead.max(1),
            clone_suffix,
        }
    }

    /// How many workers serve `ahead` jobs.
    pub(crate) fn workers(&self) -> usize {
        self.ahead.div_ceil(JOBS_PER_WORKER)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state itself stays consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The statement to send instead of one of sqlx's test statements, sent by process `client` (where
    /// known).
    pub(crate) async fn rewrite(&self, statement: TestStatement, client: Option<u32>) -> String {
        match statement {
            TestStatement::Create(name) => {
                self.until_dropped(&name).await;
                let mut state = self.state();
                let sql = match state.ready.pop_front() {
                    Some(ready) => {
                        state.counts.ready += 1;
                        if state.recycled.remove(&ready) {
                            state.counts.reused += 1;
                        }
                        if let Some(reuse) = &state.reuse {
                            reuse.moved(&ready, &name);
                        }
                        format!(
                            "ALTER DATABASE {} RENAME TO {}",
                            quote_ident(&ready),
                            quote_ident(&name)
                        )
                    }
                    None => {
                        state.counts.inline += 1;
                        create_statement(SOURCE, &name, self.clone_suffix)
                    }
                };
                state.handed_out.insert(name, client);
                drop(state);
                self.wake.notify_one();
                sql
            }
            TestStatement::DropIfExists(name) => {
                self.until_worker_known().await;
                let mut state = self.state();
                // Not one of ours (a database an earlier failed test left, say), or no worker to drop
                // it later: dropped as sqlx asked.
                let creator = state.handed_out.remove(&name);
                // Not the cleanup after the test passed: never handed on (see the module's documentation).
                let by_creator = creator.flatten().is_some_and(|c| Some(c) == client);
                if let (Some(reuse), false) = (&state.reuse, by_creator) {
                    reuse.forget(&name);
                }
                if creator.is_none() || state.worker != Worker::Working {
                    return format!("drop database if exists {};", quote_ident(&name));
                }
                state.counts.deferred_drops += 1;
                state.used.push_back(name);
                drop(state);
                self.wake.notify_one();
                NOTHING.to_owned()
            }
        }
    }

    /// Returns once the worker connected or could not, or after [`WORKER_WAIT`].
    async fn until_worker_known(&self) {
        let deadline = tokio::time::Instant::now() + WORKER_WAIT;
        loop {
            let known = self.worker_known.notified();
            tokio::pin!(known);
            known.as_mut().enable();
            if self.state().worker != Worker::Connecting {
                return;
            }
            if tokio::time::timeout_at(deadline, known).await.is_err() {
                return;
            }
        }
    }

    /// Returns once `name` is neither waiting to be dropped nor being dropped; one that waits is dropped
    /// next.
    async fn until_dropped(&self, name: &str) {
        loop {
            let dropped = self.dropped.notified();
            tokio::pin!(dropped);
            dropped.as_mut().enable();
            {
                let mut state = self.state();
                let queued = state.used.iter().position(|used| used == name);
                let pending = queued.is_some() || state.dropping.contains(name);
                if !pending || state.worker != Worker::Working {
                    state.awaited.remove(name);
                    return;
                }
                if let Some(at) = queued {
                    let first = state.used.remove(at).unwrap_or_default();
                    state.used.push_front(first);
                }
                state.awaited.insert(name.to_owned());
            }
            self.wake.notify_one();
            dropped.await;
        }
    }

    /// How many copies wait for a test.
    #[cfg(test)]
    pub(crate) fn ready_count(&self) -> usize {
        self.state().ready.len()
    }

    pub(crate) fn counts(&self) -> PoolCounts {
        self.state().counts
    }

    pub(crate) fn broken(&self) -> Option<String> {
        self.state().broken.clone()
    }

    /// Reuse is on: copies are recorded when made, used databases checked before they are dropped.
    pub(crate) fn reuse_with(&self, reuse: Reuse) {
        self.state().reuse = Some(reuse);
    }

    fn reuse(&self) -> Option<Reuse> {
        self.state().reuse.clone()
    }

    /// The worker connected: from now on it takes the drops.
    pub(crate) fn worker_ready(&self) {
        self.state().worker = Worker::Working;
        self.worker_known.notify_waiters();
    }

    /// The worker could not connect, or stopped: nothing may wait for it.
    pub(crate) fn worker_gone(&self) {
        self.state().worker = Worker::Gone;
        self.worker_known.notify_waiters();
        self.dropped.notify_waiters();
    }

    /// Stops making copies ahead: tests get theirs made inline.
    #[cfg(test)]
    pub(crate) fn break_with(&self, reason: String) {
        self.state().broken = Some(reason);
    }

    /// Asks the workers to stop after the statements they are running.
    pub(crate) fn stop(&self) {
        self.state().stopping = true;
        // Every worker waiting registered before it last looked at the state (see `work`).
        self.wake.notify_waiters();
    }

    /// The next thing the worker should do: keeping copies ready comes before dropping used databases,
    /// unless a create waits for the drop or twice as many used databases wait as copies are kept ready.
    /// That bound keeps the cluster's size in check (each is a whole database) and the drops inside the
    /// tests phase when making copies keeps the worker busy (with four tests in flight on two CPUs, nine
    /// in ten were left to teardown without it).
    fn next_job(&self) -> Job {
        let mut state = self.state();
        if state.stopping {
            return Job::Stop;
        }
        let wants_copy = state.broken.is_none() && state.ready.len() + state.making < self.ahead;
        let drop_first = state.used.len() >= 2 * self.ahead
            || state
                .used
                .front()
                .is_some_and(|used| state.awaited.contains(used));
        if wants_copy && !drop_first {
            state.making += 1;
            return Job::Make(state.fresh_name("ready"));
        }
        match state.used.pop_front() {
            Some(used) => {
                state.dropping.insert(used.clone());
                Job::Drop(used)
            }
            None if wants_copy => {
                state.making += 1;
                Job::Make(state.fresh_name("ready"))
            }
            None => Job::Wait,
        }
    }

    /// Puts the drop of `name` back when sessions its test closed are still ending (PostgreSQL would pause
    /// the drop 100 ms for each check that finds one), unless a create waits for it or it waited long
    /// enough; pauses briefly when there is nothing else to do.
    async fn sessions_may_still_end(&self, databases: &TestDatabases, name: &str) -> bool {
        let open = databases.pool().sessions_on(name).await.unwrap_or(0) > 0;
        let Some(idle) = self.put_back(name, open) else {
            return false;
        };
        self.dropped.notify_waiters();
        if idle {
            tokio::time::sleep(DROP_RETRY_PAUSE).await;
        }
        true
    }

    /// `Some(whether the worker has nothing else to do)` when the drop of `name` is put back.
    fn put_back(&self, name: &str, sessions_open: bool) -> Option<bool> {
        let mut state = self.state();
        let attempts = state.drop_attempts.entry(name.to_owned()).or_default();
        *attempts += 1;
        if !sessions_open || *attempts > DROP_ATTEMPTS || state.awaited.contains(name) {
            state.drop_attempts.remove(name);
            return None;
        }
        state.used.push_back(name.to_owned());
        state.dropping.remove(name);
        Some(state.used.len() == 1 && state.ready.len() + state.making >= self.ahead)
    }

    /// Records how making `name` went; returns whether to pause before the next try (a copy failed, but
    /// not often enough in a row to give up: template1 may have had a session on it for a moment).
    fn made(&self, name: String, result: Result<(), String>) -> bool {
        let mut state = self.state();
        state.making -= 1;
        match result {
            Ok(()) => {
                state.failures = 0;
                state.ready.push_back(name);
                false
            }
            Err(reason) => {
                state.failures += 1;
                if state.failures >= COPY_ATTEMPTS {
                    state.broken = Some(reason);
                }
                state.broken.is_none()
            }
        }
    }

    /// Makes and drops databases through the run's owner of test databases until [`Pool::stop`]. Several
    /// workers may run this at once: each job goes to one of them.
    pub(crate) async fn work(&self, databases: &TestDatabases) {
        loop {
            // Registered before the state is looked at, so no wake-up in between is lost (one meant for a
            // single worker, should this one not wait after all, passes on to another).
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.next_job() {
                Job::Stop => return,
                Job::Make(name) => {
                    let result = databases
                        .copy_ahead(SOURCE, &name)
                        .await
                        .map_err(|e| crate::template::server_message(&e));
                    if self.made(name, result) {
                        tokio::time::sleep(COPY_RETRY_PAUSE).await;
                    }
                }
                Job::Drop(name) => {
                    if self.sessions_may_still_end(databases, &name).await {
                        continue;
                    }
                    if !self.hand_on(&name).await {
                        let _ = databases.pool().drop_database(&name).await;
                    }
                    self.state().dropping.remove(&name);
                    self.dropped.notify_waiters();
                }
                Job::Wait => woken.await,
            }
        }
    }

    /// Puts used database `name` back among the ready copies, renamed as they are named, if its test left
    /// it untouched; false if it must be dropped.
    async fn hand_on(&self, name: &str) -> bool {
        let Some(reuse) = self.reuse() else {
            return false;
        };
        if reuse.check(name).await != Verdict::Untouched {
            return false;
        }
        let ready = self.state().fresh_name("ready");
        if !reuse.hand_on(name, &ready).await {
            return false;
        }
        let mut state = self.state();
        state.recycled.insert(ready.clone());
        // First in line: its pages are in the server's cache, and a fresh copy behind it may wait.
        state.ready.push_front(ready);
        true
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Job {
    Make(String),
    Drop(String),
    Wait,
    Stop,
}

#[cfg(test)]
mod tests;
