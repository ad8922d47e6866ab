//! Trials: the tests the history knows nothing about (a first run, new tests) are tried in read-only
//! groups before they run alone. A group is self-checking (see [`super::read_only`]): its results count
//! only if its database is found untouched, and a test that did not pass there runs again alone; so trying
//! costs a writing suite only the groups that come out written, and the tests of a group that counts learn
//! that they read only, for the next run.
//!
//! Per binary, in libtest's order: a group of [`FIRST_SIZE`] tests, then groups twice as large while they
//! come out untouched. The tests a group did not count run alone at once, before anything else of the
//! binary, so that a failure is reported (and `--fail-fast` stops) as soon as it is one. A group that
//! comes out written stops the trying: the next tests run alone, then a probe (a group of
//! [`FIRST_SIZE`]) tries again; every probe that comes out written doubles the stretch run alone before
//! the next. A binary of writing tests thus pays for a few small groups in all.

use std::sync::Arc;

use super::read_only::{run_group, GroupOutcome};
use super::schedule::{Alone, Group, Trial};
use super::selection::TestCase;
use super::slots::JobSlots;
use super::{isolated, Runner, Server};
use crate::cargo::TestBinary;

/// The first group's size, and a probe's.
const FIRST_SIZE: usize = 2;
/// How many tests run alone after the first group that comes out written, before a probe.
const FIRST_STRETCH: usize = 16;
/// The most tests one group holds (as for the groups of learned tests).
const MOST_TESTS: usize = 256;

/// What the trials did: how many tests were tried in how many groups, and how many of them counted there.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) tests: usize,
    pub(crate) groups: usize,
    pub(crate) counted: usize,
    /// Tests started alone (their own process and database), for the reuse count.
    pub(crate) alone: usize,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.tests += other.tests;
        self.groups += other.groups;
        self.counted += other.counted;
        self.alone += other.alone;
    }
}

/// What to do next with a binary's untried tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Try this many in a group.
    Group(usize),
    /// Run this many alone, then probe.
    Alone(usize),
}

/// The policy alone, without processes: what comes after a group of `size` tests that came out `written`
/// (or not), given the stretch a written probe is followed by now; returns the next step and the stretch
/// after it.
fn after_group(size: usize, written: bool, stretch: usize) -> (Next, usize) {
    match written {
        false => (Next::Group((size * 2).min(MOST_TESTS)), stretch),
        true => (Next::Alone(stretch), stretch * 2),
    }
}

/// How many of `left` untried tests a group of `size` takes: never leaving a single test behind, which
/// could not form a group of its own.
fn group_size(size: usize, left: usize) -> usize {
    let take = size.min(left);
    match left - take {
        1 if take < MOST_TESTS => take + 1,
        _ => take,
    }
}

/// Tries one binary's tests; `number` tells its groups' databases apart from other binaries'.
pub(crate) async fn run(
    trial: &Trial,
    number: usize,
    runner: &Runner<'_>,
    server: &Server<'_>,
    slots: &JobSlots,
) -> Tally {
    let jobs = runner.settings.jobs;
    let mut tally = Tally::default();
    let mut rest: &[TestCase] = &trial.cases;
    let mut next = Next::Group(FIRST_SIZE);
    let mut stretch = FIRST_STRETCH;
    let mut runs_alone = 0;
    let mut alone = |cases: Vec<TestCase>| {
        let prefix = format!("t{number}_{runs_alone}_");
        runs_alone += 1;
        run_alone(cases, prefix, runner, server, slots)
    };
    while !rest.is_empty() && !runner.must_stop(server) {
        match next {
            Next::Group(size) if rest.len() >= 2 => {
                let (tried, untried) = rest.split_at(group_size(size, rest.len()));
                rest = untried;
                let group = group_of(&trial.binary, tried);
                let held = slots.take(tried.len().min(jobs)).await;
                if runner.must_stop(server) {
                    break;
                }
                let name = format!("pgtest_trial_{number}_{}", tally.groups);
                let GroupOutcome { counted, written } =
                    run_group(&group, &name, runner, &held).await;
                drop(held);
                tally.tests += tried.len();
                tally.groups += 1;
                tally.counted += counted.len();
                let again: Vec<TestCase> = tried
                    .iter()
                    .filter(|case| !counted.contains(&case.id()))
                    .cloned()
                    .collect();
                if !again.is_empty() {
                    tally.alone += alone(again).await;
                }
                (next, stretch) = after_group(size, written, stretch);
            }
            Next::Group(_) => {
                tally.alone += alone(rest.to_vec()).await;
                rest = &[];
            }
            Next::Alone(count) => {
                let (now, later) = rest.split_at(count.min(rest.len()));
                rest = later;
                tally.alone += alone(now.to_vec()).await;
                next = Next::Group(FIRST_SIZE);
            }
        }
    }
    tally
}

fn group_of(binary: &Arc<TestBinary>, cases: &[TestCase]) -> Group {
    Group {
        binary: Arc::clone(binary),
        cases: cases.to_vec(),
    }
}

/// Runs `cases` alone, each in a fresh copy of its package's template; how many started.
async fn run_alone(
    cases: Vec<TestCase>,
    prefix: String,
    runner: &Runner<'_>,
    server: &Server<'_>,
    slots: &JobSlots,
) -> usize {
    let tests = cases
        .into_iter()
        .map(|case| Alone {
            case,
            snapshot: None,
        })
        .collect();
    let unbuilt = Default::default();
    isolated::run(tests, &unbuilt, &prefix, runner, server, slots).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_grow_while_untouched_and_a_written_one_starts_a_stretch_alone_that_doubles() {
        assert_eq!(after_group(2, false, 16), (Next::Group(4), 16));
        assert_eq!(after_group(128, false, 16), (Next::Group(256), 16));
        assert_eq!(
            after_group(256, false, 16),
            (Next::Group(256), 16),
            "capped"
        );
        assert_eq!(after_group(4, true, 16), (Next::Alone(16), 32));
        assert_eq!(after_group(2, true, 32), (Next::Alone(32), 64));
    }

    #[test]
    fn a_group_never_leaves_one_test_behind() {
        assert_eq!(group_size(2, 10), 2);
        assert_eq!(group_size(8, 9), 9, "the last one joins");
        assert_eq!(group_size(8, 5), 5);
        assert_eq!(group_size(2, 3), 3);
        assert_eq!(group_size(256, 257), 256, "the cap holds");
    }
}
