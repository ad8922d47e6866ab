//! The schedule: what a run executes, how each test gets its database, and in what order, as a plain value
//! computed once from the chosen tests (the listing after filters and partition), the isolation, the named
//! snapshots, the history's read-only tests and which tests are `#[sqlx::test]`s. `cargo pgtest list`
//! prints [`Schedule::entries`]; a run hands the same value to [`drive`], which walks it in that order
//! through the runner's [`Steps`]. A property test drives it through a dry run and checks that both agree.
//!
//! The order: the builders of `from_test` snapshots (one after another), the batches that run a binary's
//! tests together (`#[sqlx::test]`s, or every test under `isolation = "shared"`), the read-only groups of
//! tests the history found read-only, the trials (tests the history does not know, tried in groups first),
//! then the tests that run alone. After the builders, everything runs side by side on the run's `jobs` job
//! slots, each piece of work taking its slots as it comes. Within each kind the longest work comes first,
//! as the history knows it, so that the run's end is set by its longest test rather than by a long one
//! started last; without history the order is the listing's.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::selection::{Selection, TestCase};
use crate::cargo::TestBinary;
use crate::config::Isolation;
use crate::events::TestId;
use crate::template::snapshots::{NamedSnapshots, SnapshotsError};

/// The most tests one read-only group holds.
const GROUP_MOST_TESTS: usize = 256;
/// A group is closed once its tests' past times, spread over the jobs, add up to this: its results are
/// held back until it ends, so a group stays short enough for them to come steadily.
const GROUP_MOST_TIME: Duration = Duration::from_secs(2);
/// Fewer learned tests than this in a binary are not worth a group: they run alone.
const GROUP_FEWEST_TESTS: usize = 2;

/// What the schedule is computed from, besides the chosen tests.
pub(crate) struct Inputs<'a> {
    pub(crate) isolation: Isolation,
    pub(crate) snapshots: &'a NamedSnapshots,
    /// The tests whose latest passing run only read, with that run's time; empty when groups are off
    /// (`reuse` or `group_read_only` off, an existing server, `--nocapture`, `--no-history`).
    pub(crate) read_only: &'a BTreeMap<TestId, Duration>,
    /// Each test's time in its latest passing run (empty without history): the longest work goes first.
    pub(crate) past: &'a BTreeMap<TestId, Duration>,
    /// Whether the tests `past` does not know are tried in groups first (when read-only groups are on).
    pub(crate) try_groups: bool,
    /// Whether a test is a `#[sqlx::test]`, which makes its own database.
    pub(crate) self_isolating: &'a dyn Fn(&TestCase) -> bool,
    pub(crate) jobs: usize,
}

/// A test that builds a `from_test` snapshot: it runs first, alone, against a copy of the template.
#[derive(Debug, Clone)]
pub(crate) struct Builder {
    /// Index of the snapshot in the run's [`NamedSnapshots`].
    pub(crate) snapshot: usize,
    pub(crate) case: TestCase,
}

/// How the tests of a batch get their database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchKind {
    /// `#[sqlx::test]`s: sqlx makes (and drops) each test's database itself.
    Sqlx,
    /// `isolation = "shared"`: one database of the package for all of them.
    Shared,
}

impl From<BatchKind> for crate::events::BatchKind {
    fn from(kind: BatchKind) -> Self {
        match kind {
            BatchKind::Shared => crate::events::BatchKind::Shared,
            BatchKind::Sqlx => crate::events::BatchKind::Sqlx,
        }
    }
}

/// A binary's tests run together in one process, as `cargo test` runs them.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub(crate) kind: BatchKind,
    pub(crate) binary: Arc<TestBinary>,
    pub(crate) cases: Vec<TestCase>,
}

/// Tests of one binary that read only in earlier runs: one process and one database for all of them
/// (see [`super::read_only`]).
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) binary: Arc<TestBinary>,
    /// In the order its process starts them (libtest's: by name).
    pub(crate) cases: Vec<TestCase>,
}

/// The tests of one binary that the history does not know: tried in read-only groups first, small ones
/// growing while they come out untouched (see [`super::trials`]); the tests not counted there run alone.
#[derive(Debug, Clone)]
pub(crate) struct Trial {
    pub(crate) binary: Arc<TestBinary>,
    /// In libtest's order, in which the groups take them.
    pub(crate) cases: Vec<TestCase>,
}

/// A test in a process and a database of its own.
#[derive(Debug, Clone)]
pub(crate) struct Alone {
    pub(crate) case: TestCase,
    /// The named snapshot (index) its database is a copy of, if not its package's template.
    pub(crate) snapshot: Option<usize>,
}

/// What a run executes, in order.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    pub(crate) builders: Vec<Builder>,
    pub(crate) batches: Vec<Batch>,
    pub(crate) groups: Vec<Group>,
    pub(crate) trials: Vec<Trial>,
    pub(crate) alone: Vec<Alone>,
    /// Ignored tests not asked for: reported IGNORED.
    pub(crate) ignored: Vec<TestCase>,
    pub(crate) filtered_out: usize,
    /// Tests a snapshot names that run in a batch, and so start from the plain template.
    pub(crate) snapshot_warning: Option<String>,
}

/// Computes the schedule of the chosen tests. Fails only when two snapshots name one test.
pub(crate) fn compute(
    selection: Selection,
    inputs: &Inputs<'_>,
) -> Result<Schedule, SnapshotsError> {
    let Selection {
        mut run,
        ignored,
        filtered_out,
        listed,
    } = selection;
    let starts = starting_points(inputs.snapshots, &listed, &mut run, inputs.isolation)?;
    let (batches, alone) = match inputs.isolation {
        Isolation::Shared => (batches_of(run, BatchKind::Shared), Vec::new()),
        Isolation::Test => {
            let (sqlx, alone): (Vec<_>, Vec<_>) = run
                .into_iter()
                .partition(|case| !case.ignored && (inputs.self_isolating)(case));
            (batches_of(sqlx, BatchKind::Sqlx), alone)
        }
    };
    let batched = batches.iter().flat_map(|batch| &batch.cases);
    let snapshot_warning = not_applied(&starts.of_test, inputs.snapshots, batched);
    let from_snapshot = |test: &TestId| starts.of_test.contains_key(test);
    let (mut groups, alone) = read_only_groups(alone, inputs.read_only, from_snapshot, inputs.jobs);
    let (trials, alone) = match inputs.try_groups {
        true => trials_of(alone, |case| {
            let id = case.id();
            !case.ignored && !inputs.past.contains_key(&id) && !from_snapshot(&id)
        }),
        false => (Vec::new(), alone),
    };
    let mut alone: Vec<Alone> = alone
        .into_iter()
        .map(|case| Alone {
            snapshot: starts.of_test.get(&case.id()).copied(),
            case,
        })
        .collect();
    let mut batches = batches;
    let estimate = Estimate::from(inputs.past);
    // Stable sorts: work the history cannot tell apart keeps the listing's order.
    batches.sort_by_key(|batch| Reverse(estimate.together(&batch.cases, inputs.jobs)));
    groups.sort_by_key(|group| Reverse(estimate.together(&group.cases, inputs.jobs)));
    alone.sort_by_key(|alone| Reverse(estimate.of(&alone.case)));
    Ok(Schedule {
        builders: starts.builders,
        batches,
        groups,
        trials,
        alone,
        ignored,
        filtered_out,
        snapshot_warning,
    })
}

/// How a test gets its database, as `list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// A fresh clone of its package's template (or snapshot), in a process of its own.
    Own,
    /// Its binary's tests run together against one database of the package (`isolation = "shared"`).
    Shared,
    /// A `#[sqlx::test]`: sqlx makes (and drops) its database itself.
    Sqlx,
    /// Found read-only by earlier runs: runs in a read-only group.
    Group,
    /// Not known to the history: tried in a read-only group, alone if that does not count.
    Trial,
}

impl Kind {
    /// The word `list` prints.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Own => "own",
            Kind::Shared => "shared",
            Kind::Sqlx => "sqlx",
            Kind::Group => "group",
            Kind::Trial => "trial",
        }
    }
}

/// One test of the schedule, as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Entry {
    #[serde(flatten)]
    pub(crate) test: TestId,
    pub(crate) isolation: Kind,
    /// An ignored test asked for (`--ignored`, `--include-ignored`).
    pub(crate) ignored: bool,
    /// The named snapshot the test's database is a copy of, if not the plain template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) snapshot: Option<String>,
    /// The `from_test` snapshot this test builds (it runs first, against a copy of the template).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) builds_snapshot: Option<String>,
}

impl Entry {
    fn of(case: &TestCase, isolation: Kind) -> Entry {
        Entry {
            test: case.id(),
            isolation,
            ignored: case.ignored,
            snapshot: None,
            builds_snapshot: None,
        }
    }
}

impl Schedule {
    /// Every test the schedule runs, in the order a run starts them, with how it gets its database.
    pub(crate) fn entries(&self, snapshots: &NamedSnapshots) -> Vec<Entry> {
        let name_of = |index: usize| snapshots.snapshots.get(index).map(|s| s.name.clone());
        let builders = self.builders.iter().map(|builder| Entry {
            builds_snapshot: name_of(builder.snapshot),
            ..Entry::of(&builder.case, Kind::Own)
        });
        let batches = self.batches.iter().flat_map(|batch| {
            let kind = match batch.kind {
                BatchKind::Sqlx => Kind::Sqlx,
                BatchKind::Shared => Kind::Shared,
            };
            batch.cases.iter().map(move |case| Entry::of(case, kind))
        });
        let groups = self.groups.iter().flat_map(|group| &group.cases);
        let groups = groups.map(|case| Entry::of(case, Kind::Group));
        let trials = self.trials.iter().flat_map(|trial| &trial.cases);
        let trials = trials.map(|case| Entry::of(case, Kind::Trial));
        let alone = self.alone.iter().map(|alone| Entry {
            snapshot: alone.snapshot.and_then(name_of),
            ..Entry::of(&alone.case, Kind::Own)
        });
        let entries = builders.chain(batches).chain(groups).chain(trials);
        entries.chain(alone).collect()
    }

    /// Every test that will end in a result (the ignored ones aside), builders first.
    pub(crate) fn tests(&self) -> impl Iterator<Item = TestId> + '_ {
        let builders = self.builders.iter().map(|builder| builder.case.id());
        let batches = self
            .batches
            .iter()
            .flat_map(|b| b.cases.iter().map(TestCase::id));
        let groups = self
            .groups
            .iter()
            .flat_map(|g| g.cases.iter().map(TestCase::id));
        let trials = self
            .trials
            .iter()
            .flat_map(|t| t.cases.iter().map(TestCase::id));
        let alone = self.alone.iter().map(|alone| alone.case.id());
        builders
            .chain(batches)
            .chain(groups)
            .chain(trials)
            .chain(alone)
    }
}

/// The steps a run takes, as [`drive`] calls them. The runner's real steps start processes; the property
/// test's only record what they are given.
pub(crate) trait Steps {
    /// Builds the `from_test` snapshots; returns the snapshots (indexes) that were not built.
    fn build_snapshots(&self, builders: &[Builder]) -> impl Future<Output = BTreeSet<usize>>;
    /// Before the first test after the builders.
    fn tests_begin(&self) -> impl Future<Output = ()>;
    /// Runs the batches (beside the groups and the tests alone).
    fn batches(&self, batches: &[Batch]) -> impl Future<Output = Result<(), super::RunnerError>>;
    /// Runs the read-only groups; returns the tests to run alone after all (a group that did not count).
    fn groups(&self, groups: &[Group]) -> impl Future<Output = Vec<TestCase>>;
    /// Tries the tests of each trial in groups, and runs the ones not counted there alone.
    fn trials(&self, trials: &[Trial]) -> impl Future<Output = ()>;
    /// Runs the tests alone, in order; a test whose snapshot is `unbuilt` is NOT RUN.
    fn alone(
        &self,
        tests: Vec<Alone>,
        unbuilt: &BTreeSet<usize>,
    ) -> impl Future<Output = Result<(), super::RunnerError>>;
    /// Once every test has ended.
    fn tests_end(&self) -> impl Future<Output = ()>;
}

/// Walks the schedule through `steps`: the one place a run's order is decided. The builders first; then,
/// side by side, every one taking its job slots as it comes: the batches; the read-only groups, then the
/// tests a group did not count, alone; the trials; the tests alone.
pub(crate) async fn drive(
    schedule: Schedule,
    steps: &impl Steps,
) -> Result<(), super::RunnerError> {
    let unbuilt = steps.build_snapshots(&schedule.builders).await;
    steps.tests_begin().await;
    let batches = steps.batches(&schedule.batches);
    let groups = async {
        let again = steps.groups(&schedule.groups).await;
        // A test whose group did not count starts from its package's template: groups hold no snapshot
        // test.
        let again = again.into_iter().map(|case| Alone {
            case,
            snapshot: None,
        });
        steps.alone(again.collect(), &unbuilt).await
    };
    let trials = steps.trials(&schedule.trials);
    let alone = steps.alone(schedule.alone, &unbuilt);
    let (batches, groups, (), alone) = tokio::join!(batches, groups, trials, alone);
    steps.tests_end().await;
    batches.and(groups).and(alone)
}

/// How long work is expected to take, from each test's latest passing time. A test the history does not
/// know counts as the median of those it does: a new test is as likely long as short.
struct Estimate<'a> {
    past: &'a BTreeMap<TestId, Duration>,
    unknown: Duration,
}

impl<'a> From<&'a BTreeMap<TestId, Duration>> for Estimate<'a> {
    fn from(past: &'a BTreeMap<TestId, Duration>) -> Self {
        let mut times: Vec<Duration> = past.values().copied().collect();
        times.sort();
        let unknown = times.get(times.len() / 2).copied().unwrap_or_default();
        Estimate { past, unknown }
    }
}

impl Estimate<'_> {
    fn of(&self, case: &TestCase) -> Duration {
        self.past.get(&case.id()).copied().unwrap_or(self.unknown)
    }

    /// Tests run together in one process, on as many threads as it has tests (up to `jobs`): as long as
    /// its longest test, or its tests' time spread over those threads if that is longer.
    fn together(&self, cases: &[TestCase], jobs: usize) -> Duration {
        let times = cases.iter().map(|case| self.of(case));
        let longest = times.clone().max().unwrap_or_default();
        let threads = u32::try_from(cases.len().clamp(1, jobs.max(1))).unwrap_or(u32::MAX);
        longest.max(times.sum::<Duration>() / threads)
    }
}

/// What the snapshots mean for the chosen tests.
#[derive(Debug, Default)]
struct Starts {
    /// A chosen test → the snapshot (index) it starts from.
    of_test: BTreeMap<TestId, usize>,
    /// The tests that build the `from_test` snapshots the chosen tests need, run first.
    builders: Vec<Builder>,
}

/// Decides which of the chosen tests (`run`) start from which snapshot, over every `listed` test so that a
/// test named by two snapshots is refused whatever the filter; finds the builders the chosen tests need
/// (under per-test isolation) and takes them out of `run`, since they run first.
fn starting_points(
    snapshots: &NamedSnapshots,
    listed: &[TestCase],
    run: &mut Vec<TestCase>,
    isolation: Isolation,
) -> Result<Starts, SnapshotsError> {
    if snapshots.is_empty() {
        return Ok(Starts::default());
    }
    let ids: Vec<TestId> = listed.iter().map(TestCase::id).collect();
    let all = snapshots.starting_points(&ids)?;
    let chosen: BTreeSet<TestId> = run.iter().map(TestCase::id).collect();
    let mut of_test: BTreeMap<TestId, usize> = all
        .into_iter()
        .filter(|(test, _)| chosen.contains(test))
        .collect();
    let mut builders = Vec::new();
    if isolation == Isolation::Test {
        let needed: BTreeSet<usize> = of_test.values().copied().collect();
        for index in needed {
            let Some(builder) = snapshots.builder(index, &ids)? else {
                continue;
            };
            let builder = builder.clone();
            run.retain(|case| case.id() != builder);
            of_test.remove(&builder);
            if let Some(case) = listed.iter().find(|case| case.id() == builder) {
                builders.push(Builder {
                    snapshot: index,
                    case: case.clone(),
                });
            }
        }
    }
    Ok(Starts { of_test, builders })
}

/// The warning for chosen tests a snapshot names but that run in a batch (shared isolation,
/// `#[sqlx::test]`): they start from the plain template.
fn not_applied<'a>(
    of_test: &BTreeMap<TestId, usize>,
    snapshots: &NamedSnapshots,
    batched: impl Iterator<Item = &'a TestCase>,
) -> Option<String> {
    let named: Vec<TestId> = batched
        .map(TestCase::id)
        .filter(|test| of_test.contains_key(test))
        .collect();
    let first = named.first()?;
    let snapshot = of_test
        .get(first)
        .and_then(|index| snapshots.snapshots.get(*index))
        .map_or("", |s| s.name.as_str());
    Some(format!(
        "{} tests named by a snapshot (such as {first}, by `{snapshot}`) start from the plain template: \
         snapshots apply to tests with a database of their own (isolation = \"test\", not #[sqlx::test])",
        named.len()
    ))
}

/// Groups cases by their binary, binaries in the order they first come.
fn batches_of(cases: Vec<TestCase>, kind: BatchKind) -> Vec<Batch> {
    let mut batches: Vec<Batch> = Vec::new();
    for case in cases {
        match batches
            .iter_mut()
            .find(|batch| batch.binary.path == case.binary.path)
        {
            Some(batch) => batch.cases.push(case),
            None => batches.push(Batch {
                kind,
                binary: Arc::clone(&case.binary),
                cases: vec![case],
            }),
        }
    }
    batches
}

/// A binary and some of its tests.
type BinaryTests = (Arc<TestBinary>, Vec<TestCase>);

/// The tests `picked` picks out of `cases`, per binary in libtest's order (the order a process running
/// several of them starts them in), and the rest; a binary with fewer than two picked keeps them with the
/// rest: one test is no group.
fn per_binary(
    cases: Vec<TestCase>,
    picked: impl Fn(&TestCase) -> bool,
) -> (Vec<BinaryTests>, Vec<TestCase>) {
    let (picked, mut rest): (Vec<_>, Vec<_>) = cases.into_iter().partition(picked);
    let mut binaries = Vec::new();
    for Batch {
        binary, mut cases, ..
    } in batches_of(picked, BatchKind::Shared)
    {
        if cases.len() < GROUP_FEWEST_TESTS {
            rest.extend(cases);
            continue;
        }
        cases.sort_by(|a, b| a.name.cmp(&b.name));
        binaries.push((binary, cases));
    }
    (binaries, rest)
}

/// Takes the tests `unknown` picks out of `cases`, a trial per binary. Returns the trials and the tests
/// left to run alone.
fn trials_of(
    cases: Vec<TestCase>,
    unknown: impl Fn(&TestCase) -> bool,
) -> (Vec<Trial>, Vec<TestCase>) {
    let (binaries, alone) = per_binary(cases, unknown);
    let trials = binaries
        .into_iter()
        .map(|(binary, cases)| Trial { binary, cases });
    (trials.collect(), alone)
}

/// Takes the tests `read_only` names (with their past times) out of `cases`, in groups per binary; the
/// tests that start from a snapshot stay out. Returns the groups and the tests left to run alone.
fn read_only_groups(
    cases: Vec<TestCase>,
    read_only: &BTreeMap<TestId, Duration>,
    from_snapshot: impl Fn(&TestId) -> bool,
    jobs: usize,
) -> (Vec<Group>, Vec<TestCase>) {
    let (binaries, mut alone) = per_binary(cases, |case| {
        let id = case.id();
        read_only.contains_key(&id) && !from_snapshot(&id)
    });
    let budget = GROUP_MOST_TIME * u32::try_from(jobs.max(1)).unwrap_or(u32::MAX);
    let mut groups = Vec::new();
    for (binary, cases) in binaries {
        let mut group: Vec<TestCase> = Vec::new();
        let mut time = Duration::ZERO;
        for case in cases {
            let past = read_only.get(&case.id()).copied().unwrap_or_default();
            if !group.is_empty() && (group.len() >= GROUP_MOST_TESTS || time + past > budget) {
                groups.push(Group {
                    binary: Arc::clone(&binary),
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

#[cfg(test)]
mod tests;
