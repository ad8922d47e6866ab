//! The databases handed to nextest's test processes: clones of each package's template, made ahead so a
//! test rarely waits for `CREATE DATABASE`, and dropped when their test ends.
//!
//! The runner's own make-ahead clones for a list of tests it knows in
//! order; under nextest, cargo-pgtest does not know which test comes next (nextest filters, partitions,
//! retries and orders), only that about `ahead` run at once. So each template keeps up to `ahead` clones
//! ready, refilled as tests take them. Every clone is leased from the run's
//! [`TestDatabases`], as everywhere.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::template::{self, Obtain, Return, TestDatabases};

#[derive(Debug, Default)]
struct State {
    /// Template → clones ready for a test, oldest first.
    ready: BTreeMap<String, VecDeque<String>>,
    /// Template → clones being made.
    making: BTreeMap<String, usize>,
    /// Handed to a test and not dropped yet.
    handed_out: BTreeSet<String>,
    next_id: u64,
    /// Clones made while their test waited (none was ready).
    inline: u64,
    /// Handed out ready.
    from_ready: u64,
    stopping: bool,
}

/// Clones made ahead, per template.
#[derive(Debug)]
pub(crate) struct Pool {
    databases: TestDatabases,
    ahead: usize,
    state: Mutex<State>,
    /// Wakes [`Pool::drain`] when a clone being made is done.
    made: Notify,
}

impl Pool {
    /// A pool keeping up to `ahead` clones of each template ready.
    pub(crate) fn new(databases: TestDatabases, ahead: usize) -> Arc<Pool> {
        Arc::new(Pool {
            databases,
            ahead: ahead.max(1),
            state: Mutex::new(State::default()),
            made: Notify::new(),
        })
    }

    /// The run's test databases the clones are leased from.
    pub(crate) fn databases(&self) -> &TestDatabases {
        &self.databases
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state stays consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts making clones of `template` until `ahead` are ready or on their way.
    pub(crate) fn fill(self: &Arc<Self>, template: &str) {
        loop {
            let name = {
                let mut state = self.state();
                let ready = state.ready.get(template).map_or(0, VecDeque::len);
                let making = state.making.get(template).copied().unwrap_or(0);
                if state.stopping || ready + making >= self.ahead {
                    return;
                }
                *state.making.entry(template.to_owned()).or_default() += 1;
                fresh_name(&mut state)
            };
            let (pool, template) = (Arc::clone(self), template.to_owned());
            tokio::spawn(async move { pool.make(template, name).await });
        }
    }

    async fn make(&self, template: String, name: String) {
        let made = self.databases.lease(&template, &name, Obtain::Fresh).await;
        let mut state = self.state();
        if let Some(making) = state.making.get_mut(&template) {
            *making -= 1;
        }
        // A failed clone is not retried here: the test that needs one makes it and reports the error.
        if made.is_ok() {
            state.ready.entry(template).or_default().push_back(name);
        }
        drop(state);
        self.made.notify_waiters();
    }

    /// A fresh clone of `template` for one test: a ready one, or one made now; the pool refills behind it.
    pub(crate) async fn take(self: &Arc<Self>, template: &str) -> Result<String, String> {
        let ready = {
            let mut state = self.state();
            let ready = state.ready.get_mut(template).and_then(VecDeque::pop_front);
            match &ready {
                Some(name) => {
                    state.from_ready += 1;
                    state.handed_out.insert(name.clone());
                }
                None => state.inline += 1,
            }
            ready
        };
        self.fill(template);
        if let Some(name) = ready {
            return Ok(name);
        }
        let name = fresh_name(&mut self.state());
        self.databases
            .lease(template, &name, Obtain::Fresh)
            .await
            .map_err(|error| template::server_message(&error))?;
        self.state().handed_out.insert(name.clone());
        Ok(name)
    }

    /// Drops a clone whose test ended.
    pub(crate) async fn release(&self, name: &str) {
        // A failure leaves a database in a cluster that is removed at the end of the run.
        self.databases.give_back(name, Return::Drop).await;
        self.state().handed_out.remove(name);
    }

    /// Stops making clones, waits for the ones under way, and drops every clone still there (ready, or
    /// held by a test process that outlived nextest); returns how many were still held.
    pub(crate) async fn drain(&self) -> usize {
        loop {
            let made = self.made.notified();
            tokio::pin!(made);
            made.as_mut().enable();
            {
                let mut state = self.state();
                state.stopping = true;
                if state.making.values().all(|n| *n == 0) {
                    break;
                }
            }
            made.await;
        }
        let (ready, held): (Vec<String>, Vec<String>) = {
            let mut state = self.state();
            let ready = std::mem::take(&mut state.ready).into_values().flatten();
            (ready.collect(), state.handed_out.iter().cloned().collect())
        };
        for name in ready.iter().chain(&held) {
            self.release(name).await;
        }
        held.len()
    }

    /// How many databases were handed out ready, and how many made while their test waited.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let state = self.state();
        (state.from_ready, state.inline)
    }
}

fn fresh_name(state: &mut State) -> String {
    state.next_id += 1;
    format!("pgtest_nx_{}", state.next_id)
}
