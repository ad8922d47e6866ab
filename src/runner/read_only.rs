//! Read-only groups: the tests whose latest passing run left their database untouched (the test history
//! remembers it, see [`crate::history`]) run together, as `cargo test` runs them, a group of them in one
//! process against one database. Isolation costs those tests one process and one database per group
//! instead of per test.
//!
//! A group's results count only once its database is found untouched afterwards, by the check that
//! decides reuse ([`crate::template::reuse`]): then no test of the group wrote anything, so each saw the
//! database exactly as a fresh copy. Until then they are held back. A group whose database was written to
//! (a test that read only before writes now) counts for nothing: each of its tests runs again alone, in a
//! fresh database, as every other test does. So does every test that did not pass in its group: a failure
//! is reported only as it happens alone, never one that sharing a process or a database could have caused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::dispatch::{Dispatcher, TestResult};
use crate::events::{self, Event, Outcome, TestId};
use super::list::TestCase;
use super::schedule::Isolated;
use super::shared::Together;
use crate::cancel::Cancel;
use crate::cargo::TestBinary;
use crate::template::reuse::Reuse;

/// The most tests one group holds.
const MOST_TESTS: usize = 256;
/// A group is closed once its tests' past times, spread over the jobs, add up to this: its results are
/// held back until it ends, so a group stays short enough for them to come steadily.
const MOST_TIME: Duration = Duration::from_secs(2);
/// Fewer learned tests than this in a binary are not worth a group: they run alone.
const FEWEST_TESTS: usize = 2;

/// Tests of one binary that run together in one process and one database.
#[derive(Debug)]
pub(crate) struct Group {
    binary: Arc<TestBinary>,
    cases: Vec<TestCase>,
}

impl Group {
    /// The tests of the group, in the order its process starts them.
    pub(crate) fn tests(&self) -> impl Iterator<Item = TestId> + '_ {
        self.cases.iter().map(TestCase::id)
    }
}

/// Takes the tests `read_only` names (with their past times) out of `cases`, in groups; the tests that
/// start from a snapshot stay out. Returns the groups and the tests left to run alone.
pub(crate) fn split(
    cases: Vec<TestCase>,
    read_only: &BTreeMap<TestId, Duration>,
    from_snapshot: impl Fn(&TestId) -> bool,
    jobs: usize,
) -> (Vec<Group>, Vec<TestCase>) {
    let (learned, mut alone): (Vec<_>, Vec<_>) = cases.into_iter().partition(|case| {
        let id = case.id();
        read_only.contains_key(&id) && !from_snapshot(&id)
    });
    let budget = MOST_TIME * u32::try_from(jobs.max(1)).unwrap_or(u32::MAX);
    let mut groups = Vec::new();
    for (binary, mut cases) in super::by_binary(learned) {
        if cases.len() < FEWEST_TESTS {
            alone.extend(cases);
            continue;
        }
        // libtest's own order, so a group's tests start in the order its process starts them.
        cases.sort_by(|a, b| a.name.cmp(&b.name));
        let mut group: Vec<TestCase> = Vec::new();
        let mut time = Duration::ZERO;
        for case in cases {
            let past = read_only.get(&case.id()).copied().unwrap_or_default();
            if !group.is_empty() && (group.len() >= MOST_TESTS || time + past > budget) {
                let binary = Arc::clone(&binary);
                groups.push(Group {
                    binary,
                    cases: std::mem::take(&mut group),
                });
                time = Duration::ZERO;
            }
            time += past;
            group.push(case);
        }
        match group.len() {
            0 => {}
            1 => alone.extend(group),
            _ => groups.push(Group {
                binary,
                cases: group,
            }),
        }
    }
    (groups, alone)
}

/// The groups' share of an isolated run: its databases and settings, and reuse's check.
pub(crate) struct Grouped<'a> {
    pub(crate) context: &'a Isolated,
    pub(crate) reuse: &'a Reuse,
}

impl Grouped<'_> {
    /// Runs the groups one after another (each runs `jobs` tests at a time), reporting the tests whose
    /// results count; returns the tests to run alone. Stops early, reporting nothing more, when the run is
    /// stopped (`must_stop`).
    pub(crate) async fn run(
        &self,
        groups: Vec<Group>,
        cancel: &Cancel,
        dispatch: &Dispatcher,
        mut must_stop: impl FnMut() -> bool,
    ) -> Vec<TestCase> {
        let tests = groups.iter().map(|group| group.cases.len()).sum();
        let count = groups.len();
        let mut alone = Vec::new();
        for (number, group) in groups.into_iter().enumerate() {
            if must_stop() {
                // What the groups left is NOT RUN, by the dispatcher, with the reason the run stopped.
                return alone;
            }
            let counted = self.run_group(&group, number, cancel, dispatch).await;
            alone.extend(
                group
                    .cases
                    .into_iter()
                    .filter(|case| !counted.contains(&case.id())),
            );
        }
        if count > 0 {
            dispatch.read_only_groups(tests, count, alone.len());
        }
        alone
    }

    /// Runs one group; returns the tests whose results were reported.
    async fn run_group(
        &self,
        group: &Group,
        number: usize,
        cancel: &Cancel,
        dispatch: &Dispatcher,
    ) -> BTreeSet<TestId> {
        let database = format!("pgtest_group_{number}");
        let context = self.context;
        // Every test of a group starts from its package's template (see `split`).
        let template = group
            .cases
            .first()
            .map(|case| super::schedule::template_of(case, context));
        let template = template.unwrap_or_default();
        let (databases, extras) = (&context.databases, &context.extras);
        let obtained = extras
            .obtain_checkable(databases, self.reuse, &template, &database)
            .await;
        if obtained.is_err() {
            // Whatever was made of it goes; the tests run alone, where a database that cannot be made is
            // reported for each.
            extras.drop_with(databases, &database).await;
            return BTreeSet::new();
        }
        let endpoint = &context.endpoint;
        let env = endpoint.env(&database, &context.database_env);
        let env = extras.with_env(env, endpoint, &database);
        let passed = self.run_together(group, &env, cancel).await;
        let untouched = extras
            .release_with(databases, Some(self.reuse), &database)
            .await;
        let Some(passed) = passed.filter(|_| untouched && cancel.signal().is_none()) else {
            return BTreeSet::new();
        };
        let mut counted = BTreeSet::new();
        for (test, result) in passed {
            dispatch.started(test.clone(), None);
            dispatch.finished(test.clone(), result);
            dispatch.untouched(test.clone());
            counted.insert(test);
        }
        counted
    }

    /// The group's process, its results held back in a dispatcher of its own; the tests that passed, with
    /// their results (they count once the database is found untouched), or None if it could not start.
    async fn run_together(
        &self,
        group: &Group,
        env: &[(String, String)],
        cancel: &Cancel,
    ) -> Option<Vec<(TestId, TestResult)>> {
        let (sender, mut receiver) = events::channel();
        let held = Dispatcher::new(sender);
        let together = Together {
            binary: &group.binary,
            cases: &group.cases,
            threads: self.context.jobs,
            limits: self.context.limits,
        };
        together.run(env, cancel.clone(), &held).await.ok()?;
        let mut passed = Vec::new();
        // Every result was sent before the process was reaped.
        while let Ok(event) = receiver.try_recv() {
            if let Event::TestFinished {
                test,
                outcome: outcome @ Outcome::Passed,
                duration,
                output,
            } = event
            {
                let result = TestResult {
                    outcome,
                    duration,
                    output,
                };
                passed.push((test, result));
            }
        }
        Some(passed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn binary(name: &str) -> Arc<TestBinary> {
        Arc::new(TestBinary {
            id: format!("app::{name}"),
            package: "app".into(),
            path: PathBuf::from(format!("/bin/{name}")),
            cwd: PathBuf::from("/app"),
            env: Vec::new(),
        })
    }

    fn case(binary: &Arc<TestBinary>, name: &str) -> TestCase {
        TestCase {
            binary: Arc::clone(binary),
            name: name.into(),
            ignored: false,
        }
    }

    fn names(cases: &[TestCase]) -> Vec<&str> {
        cases.iter().map(|case| case.name.as_str()).collect()
    }

    #[test]
    fn learned_tests_are_grouped_per_binary_and_the_rest_runs_alone() {
        let (it, other) = (binary("it"), binary("other"));
        let cases = vec![
            case(&it, "c_reads"),
            case(&it, "writes"),
            case(&it, "a_reads"),
            case(&other, "lonely_reader"),
            case(&it, "b_from_snapshot"),
            case(&it, "b_reads"),
        ];
        let learned = |cases: &[&TestCase]| -> BTreeMap<TestId, Duration> {
            cases
                .iter()
                .map(|case| (case.id(), Duration::from_millis(5)))
                .collect()
        };
        let read_only = learned(&[&cases[0], &cases[2], &cases[3], &cases[4], &cases[5]]);
        let starting = BTreeMap::from([(cases[4].id(), "pgtest_snapshot_x".to_owned())]);
        let from_snapshot = |test: &TestId| starting.contains_key(test);
        let (groups, alone) = split(cases, &read_only, from_snapshot, 2);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].binary.id, "app::it");
        assert_eq!(names(&groups[0].cases), ["a_reads", "b_reads", "c_reads"]);
        let mut alone = names(&alone);
        alone.sort_unstable();
        // A binary with one learned test, a test never found read-only, one that starts from a snapshot.
        assert_eq!(alone, ["b_from_snapshot", "lonely_reader", "writes"]);
    }

    #[test]
    fn a_group_ends_at_its_time_or_its_size() {
        let it = binary("it");
        let cases: Vec<TestCase> = (0..600).map(|n| case(&it, &format!("t{n:03}"))).collect();
        let quick: BTreeMap<TestId, Duration> = cases
            .iter()
            .map(|case| (case.id(), Duration::from_millis(1)))
            .collect();
        let (groups, alone) = split(cases.clone(), &quick, |_| false, 2);
        let sizes: Vec<usize> = groups.iter().map(|group| group.cases.len()).collect();
        assert_eq!(sizes, [MOST_TESTS, MOST_TESTS, 600 - 2 * MOST_TESTS]);
        assert!(alone.is_empty());

        // 300 ms each on 2 jobs: 13 tests fill the 4 s of test time two jobs spend in 2 s.
        let slow: BTreeMap<TestId, Duration> = cases
            .iter()
            .take(27)
            .map(|case| (case.id(), Duration::from_millis(300)))
            .collect();
        let (groups, alone) = split(cases, &slow, |_| false, 2);
        let sizes: Vec<usize> = groups.iter().map(|group| group.cases.len()).collect();
        assert_eq!(sizes, [13, 13], "the 27th is alone in its group, so alone");
        assert_eq!(alone.len(), 600 - 26);
    }
}
