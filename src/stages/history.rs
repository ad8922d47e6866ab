//! The test history around stage 7 (see [`crate::history`]): the runner's events pass through here on their
//! way to the reporters so the passing tests' times are seen, and once the tests are done those times are
//! compared with the history under the target directory and added to it. A test far slower than its own
//! past becomes a `TestSlower` event, before the summary is written. `--no-history` skips the file.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use super::context::Run;
use crate::history::Store;
use crate::runner::events::{Event, EventReceiver, Outcome, TestId};

/// The passing tests' times, in the order they finished.
pub(crate) type Passed = Vec<(TestId, Duration)>;

/// Awaits `running` while passing every event it sends into `taps` on to the reporters; returns its output
/// and the passing tests' times.
pub(crate) async fn forward<T>(
    run: &Run<'_>,
    running: impl Future<Output = T>,
    mut taps: EventReceiver,
) -> (T, Passed) {
    let mut passed = Passed::new();
    let mut pass_on = |event: Event| {
        if let Event::TestFinished {
            test,
            outcome: Outcome::Passed,
            duration: Some(duration),
            ..
        } = &event
        {
            passed.push((test.clone(), *duration));
        }
        run.send(event);
    };
    tokio::pin!(running);
    let output = loop {
        tokio::select! {
            biased;
            Some(event) = taps.recv() => pass_on(event),
            output = &mut running => break output,
        }
    };
    // What it sent just before it returned.
    while let Ok(event) = taps.try_recv() {
        pass_on(event);
    }
    (output, passed)
}

/// Compares the passing tests with their history, reports the ones far slower, and adds them to it. A
/// history that cannot be read or written is a warning: it never fails the tests.
pub(crate) fn settle(run: &Run<'_>, target_dir: &Path, passed: &Passed) {
    if run.cli.pgtest.no_history || passed.is_empty() {
        return;
    }
    let store = Store::in_target_dir(target_dir);
    match store.record(passed) {
        Ok(slower) => {
            for (test, flag) in slower {
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
