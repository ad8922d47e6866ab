//! The test history around stage 7 (see [`crate::history`]): the runner's events pass through here on their
//! way to the reporters so the passing tests' times are seen, and once the tests are done those times are
//! compared with the history under the target directory and added to it. A test far slower than its own
//! past becomes a `TestSlower` event, before the summary is written. The tests whose database was found
//! untouched are marked read-only there, and the next run reads those marks back ([`read_only`]). Each
//! passing test's earlier times go out as a `TestHistory` event (the HTML report's sparklines).
//! `--no-history` skips the file.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use super::context::Run;
use crate::events::{Event, EventReceiver, Outcome, Stamped, TestId};
use crate::history::store::Latest;
use crate::history::Store;

/// What the history keeps of a run.
#[derive(Debug, Default)]
pub(crate) struct RunRecord {
    /// The passing tests' times, in the order they finished.
    times: Vec<(TestId, Duration)>,
    /// The tests whose database was found untouched after them.
    read_only: BTreeSet<TestId>,
}

impl RunRecord {
    fn see(&mut self, event: &Event) {
        match event {
            Event::TestFinished {
                test,
                outcome: Outcome::Passed,
                duration: Some(duration),
                ..
            } => self.times.push((test.clone(), *duration)),
            Event::DatabaseUntouched { test } => {
                self.read_only.insert(test.clone());
            }
            _ => {}
        }
    }
}

/// Each test's latest passing run (none with `--no-history`): its time orders the run's work, and the tests
/// that read only in it run in read-only groups (see `runner::read_only`).
pub(crate) fn latest(run: &Run<'_>, target_dir: &Path) -> BTreeMap<TestId, Latest> {
    if run.cli.pgtest.no_history {
        return BTreeMap::new();
    }
    Store::in_target_dir(target_dir).latest()
}

/// Awaits `running` while passing every event it sends into `taps` on to the reporters; returns its output
/// and what the history keeps of it.
pub(crate) async fn forward<T>(
    run: &Run<'_>,
    running: impl Future<Output = T>,
    mut taps: EventReceiver,
) -> (T, RunRecord) {
    let mut seen = RunRecord::default();
    // Stamped on the run's clock as the runner sent them: passed on with that time.
    let mut pass_on = |stamped: Stamped| {
        seen.see(&stamped.event);
        let _ = run.events.send_stamped(stamped);
    };
    tokio::pin!(running);
    let output = loop {
        tokio::select! {
            biased;
            Some(stamped) = taps.recv_stamped() => pass_on(stamped),
            output = &mut running => break output,
        }
    };
    // What it sent just before it returned.
    while let Ok(stamped) = taps.try_recv_stamped() {
        pass_on(stamped);
    }
    (output, seen)
}

/// Compares the passing tests with their history, reports the ones far slower, and adds them to it. A
/// history that cannot be read or written is a warning: it never fails the tests.
pub(crate) fn settle(run: &Run<'_>, target_dir: &Path, seen: &RunRecord) {
    if run.cli.pgtest.no_history || seen.times.is_empty() {
        return;
    }
    let store = Store::in_target_dir(target_dir);
    match store.record(&seen.times, &seen.read_only) {
        Ok(recorded) => {
            for (test, earlier) in recorded.earlier {
                run.send(Event::TestHistory { test, earlier });
            }
            for (test, flag) in recorded.slower {
                run.send(Event::TestSlower {
                    test,
                    duration: flag.now,
                    median: flag.median,
                });
            }
        }
        Err(error) => run.warn(format!(
            "the test history was not updated: {error}; `--no-history` skips it"
        )),
    }
}
