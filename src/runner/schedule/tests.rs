//! The schedule's decisions, and the property that `list` and a run agree: for generated suites, the
//! entries `list` prints are, test by test and in order, what [`drive`] hands a run's steps.

use std::cell::RefCell;
use std::path::PathBuf;

use proptest::prelude::*;

use super::*;
use crate::config::Origin;
use crate::runner::partition::{Partition, Strategy as Dealing};
use crate::runner::selection::{self, Listing, TestArgs};
use crate::template::snapshots::NamedSnapshot;

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

fn snapshot(name: &str, pattern: &str, from_test: Option<&str>) -> NamedSnapshot {
    NamedSnapshot {
        name: name.into(),
        database: format!("pgtest_snapshot_{name}"),
        base: "pgtest_template".into(),
        tests: vec![pattern.into()],
        from_test: from_test.map(str::to_owned),
        fixtures: Vec::new(),
        origin: Origin {
            table: String::new(),
            manifest: PathBuf::new(),
            line: None,
        },
    }
}

fn snapshots() -> NamedSnapshots {
    NamedSnapshots {
        snapshots: vec![
            snapshot("catalog", "catalog::", None),
            snapshot("built", "built::", Some("setup::build")),
        ],
    }
}

fn selection_of(cases: Vec<TestCase>) -> Selection {
    Selection {
        listed: cases.clone(),
        run: cases,
        ..Selection::default()
    }
}

fn inputs<'a>(
    isolation: Isolation,
    snapshots: &'a NamedSnapshots,
    read_only: &'a BTreeMap<TestId, Duration>,
    self_isolating: &'a dyn Fn(&TestCase) -> bool,
) -> Inputs<'a> {
    Inputs {
        isolation,
        snapshots,
        read_only,
        past: &NO_PAST,
        try_groups: false,
        self_isolating,
        jobs: 2,
    }
}

/// A run without history.
static NO_PAST: BTreeMap<TestId, Duration> = BTreeMap::new();

fn text(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| format!("{} {}", e.isolation.label(), e.test.name))
        .collect()
}

#[test]
fn shared_isolation_runs_each_binary_together_in_binary_order() {
    let (a, b) = (binary("a"), binary("b"));
    let cases = vec![case(&a, "one"), case(&b, "two"), case(&a, "three")];
    let none = NamedSnapshots::default();
    let read_only = BTreeMap::new();
    let inputs = inputs(Isolation::Shared, &none, &read_only, &|_| true);
    let schedule = compute(selection_of(cases), &inputs).unwrap();
    assert_eq!(schedule.batches.len(), 2);
    assert!(schedule.alone.is_empty() && schedule.groups.is_empty());
    let entries = schedule.entries(&none);
    assert_eq!(text(&entries), ["shared one", "shared three", "shared two"]);
}

#[test]
fn sqlx_tests_run_together_and_the_rest_alone_after_them() {
    let it = binary("it");
    let cases = vec![
        case(&it, "plain"),
        case(&it, "uses_sqlx"),
        case(&it, "other"),
    ];
    let none = NamedSnapshots::default();
    let read_only = BTreeMap::new();
    let sqlx = |case: &TestCase| case.name.contains("sqlx");
    let inputs = inputs(Isolation::Test, &none, &read_only, &sqlx);
    let schedule = compute(selection_of(cases), &inputs).unwrap();
    let entries = schedule.entries(&none);
    assert_eq!(text(&entries), ["sqlx uses_sqlx", "own plain", "own other"]);
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[test]
fn the_longest_known_work_comes_first_and_an_unknown_test_counts_as_the_median() {
    let (it, sqlx_one, sqlx_many) = (binary("it"), binary("rustsec"), binary("pg"));
    let cases = vec![
        case(&it, "quick"),
        case(&it, "new"),
        case(&it, "slow"),
        case(&it, "middling"),
        case(&sqlx_many, "sqlx_a"),
        case(&sqlx_many, "sqlx_b"),
        case(&sqlx_many, "sqlx_c"),
        case(&sqlx_one, "sqlx_long"),
    ];
    let id = |binary: &Arc<TestBinary>, name: &str| case(binary, name).id();
    let past = BTreeMap::from([
        (id(&it, "quick"), ms(10)),
        (id(&it, "slow"), ms(900)),
        (id(&it, "middling"), ms(50)),
        (id(&sqlx_many, "sqlx_a"), ms(100)),
        (id(&sqlx_many, "sqlx_b"), ms(100)),
        (id(&sqlx_many, "sqlx_c"), ms(100)),
        (id(&sqlx_one, "sqlx_long"), ms(2_000)),
    ]);
    let none = NamedSnapshots::default();
    let read_only = BTreeMap::new();
    let sqlx = |case: &TestCase| case.name.starts_with("sqlx");
    let known = Inputs {
        past: &past,
        ..inputs(Isolation::Test, &none, &read_only, &sqlx)
    };
    let schedule = compute(selection_of(cases.clone()), &known).unwrap();
    assert_eq!(
        text(&schedule.entries(&none)),
        [
            // The one long #[sqlx::test] first, though its binary came last and holds one test.
            "sqlx sqlx_long",
            "sqlx sqlx_a",
            "sqlx sqlx_b",
            "sqlx sqlx_c",
            "own slow",
            // The median of the known times (100 ms) puts the new test before the 50 ms one.
            "own new",
            "own middling",
            "own quick",
        ]
    );
    let unknown = compute(
        selection_of(cases),
        &inputs(Isolation::Test, &none, &read_only, &sqlx),
    )
    .unwrap();
    assert_eq!(
        text(&unknown.entries(&none)),
        [
            "sqlx sqlx_a",
            "sqlx sqlx_b",
            "sqlx sqlx_c",
            "sqlx sqlx_long",
            "own quick",
            "own new",
            "own slow",
            "own middling",
        ],
        "without history, the listing's order"
    );
}

#[test]
fn a_batch_is_as_long_as_its_longest_test_or_its_work_over_its_threads() {
    let it = binary("it");
    let cases: Vec<TestCase> = ["a", "b", "c", "d"].iter().map(|n| case(&it, n)).collect();
    let past: BTreeMap<TestId, Duration> = cases
        .iter()
        .zip([ms(100), ms(100), ms(100), ms(500)])
        .map(|(case, time)| (case.id(), time))
        .collect();
    let estimate = Estimate::from(&past);
    assert_eq!(estimate.together(&cases, 2), ms(500), "its longest test");
    assert_eq!(estimate.together(&cases[..3], 1), ms(300), "one thread");
    assert_eq!(estimate.together(&cases[..3], 2), ms(150), "two threads");
    assert_eq!(
        estimate.together(&cases[..1], 8),
        ms(100),
        "one test, one thread"
    );
}

#[test]
fn learned_tests_are_grouped_per_binary_and_the_rest_runs_alone() {
    let (it, other) = (binary("it"), binary("other"));
    let cases = vec![
        case(&it, "c_reads"),
        case(&it, "writes"),
        case(&it, "a_reads"),
        case(&other, "lonely_reader"),
        case(&it, "catalog::b_from_snapshot"),
        case(&it, "b_reads"),
    ];
    let learned = [0, 2, 3, 4, 5];
    let read_only: BTreeMap<TestId, Duration> = learned
        .iter()
        .map(|&i| (cases[i].id(), Duration::from_millis(5)))
        .collect();
    let snapshots = snapshots();
    let inputs = inputs(Isolation::Test, &snapshots, &read_only, &|_| false);
    let schedule = compute(selection_of(cases), &inputs).unwrap();
    assert_eq!(schedule.groups.len(), 1);
    assert_eq!(schedule.groups[0].binary.id, "app::it");
    let grouped = names(&schedule.groups[0].cases);
    assert_eq!(grouped, ["a_reads", "b_reads", "c_reads"]);
    let alone: Vec<&str> = schedule
        .alone
        .iter()
        .map(|a| a.case.name.as_str())
        .collect();
    // A test never found read-only, one that starts from a snapshot, a binary with one learned test.
    assert_eq!(
        alone,
        ["writes", "catalog::b_from_snapshot", "lonely_reader"]
    );
    assert_eq!(schedule.alone[1].snapshot, Some(0));
    let entries = schedule.entries(&snapshots);
    assert_eq!(entries[0].isolation, Kind::Group);
    assert_eq!(entries[4].snapshot.as_deref(), Some("catalog"));
}

#[test]
fn a_group_ends_at_its_time_or_its_size() {
    let it = binary("it");
    let cases: Vec<TestCase> = (0..600).map(|n| case(&it, &format!("t{n:03}"))).collect();
    let quick: BTreeMap<TestId, Duration> = cases
        .iter()
        .map(|case| (case.id(), Duration::from_millis(1)))
        .collect();
    let (groups, alone) = read_only_groups(cases.clone(), &quick, |_| false, 2);
    let sizes: Vec<usize> = groups.iter().map(|group| group.cases.len()).collect();
    assert_eq!(
        sizes,
        [
            GROUP_MOST_TESTS,
            GROUP_MOST_TESTS,
            600 - 2 * GROUP_MOST_TESTS
        ]
    );
    assert!(alone.is_empty());

    // 300 ms each on 2 jobs: 13 tests fill the 4 s of test time two jobs spend in 2 s.
    let slow: BTreeMap<TestId, Duration> = cases
        .iter()
        .take(27)
        .map(|case| (case.id(), Duration::from_millis(300)))
        .collect();
    let (groups, alone) = read_only_groups(cases, &slow, |_| false, 2);
    let sizes: Vec<usize> = groups.iter().map(|group| group.cases.len()).collect();
    assert_eq!(sizes, [13, 13], "the 27th is alone in its group, so alone");
    assert_eq!(alone.len(), 600 - 26);
}

#[test]
fn a_needed_builder_runs_first_even_when_filtered_out_and_only_then() {
    let it = binary("it");
    let cases = |names: &[&str]| -> Vec<TestCase> { names.iter().map(|n| case(&it, n)).collect() };
    let listed = cases(&["setup::build", "built::a", "catalog::b", "plain"]);
    let snapshots = snapshots();
    let read_only = BTreeMap::new();
    let schedule_of = |run: Vec<TestCase>, isolation| {
        let selection = Selection {
            run,
            listed: listed.clone(),
            ..Selection::default()
        };
        compute(
            selection,
            &inputs(isolation, &snapshots, &read_only, &|_| false),
        )
        .unwrap()
    };
    let schedule = schedule_of(
        cases(&["setup::build", "built::a", "plain"]),
        Isolation::Test,
    );
    let entries = schedule.entries(&snapshots);
    assert_eq!(
        text(&entries),
        ["own setup::build", "own built::a", "own plain"],
        "the builder is taken out of the rest and runs first"
    );
    assert_eq!(entries[0].builds_snapshot.as_deref(), Some("built"));
    assert_eq!(entries[1].snapshot.as_deref(), Some("built"));

    let filtered = schedule_of(cases(&["built::a"]), Isolation::Test);
    assert_eq!(
        filtered.builders.len(),
        1,
        "built although the filter left it out"
    );

    let unneeded = schedule_of(cases(&["catalog::b", "plain"]), Isolation::Test);
    assert!(unneeded.builders.is_empty(), "no chosen test needs `built`");

    let shared = schedule_of(cases(&["setup::build", "built::a"]), Isolation::Shared);
    assert!(shared.builders.is_empty(), "shared runs build nothing");
    let warning = shared.snapshot_warning.unwrap();
    assert!(
        warning.starts_with("1 tests named by a snapshot (such as app::it built::a, by `built`)"),
        "{warning}"
    );
}

#[test]
fn two_snapshots_naming_one_test_are_refused_whatever_the_filter() {
    let it = binary("it");
    let mut snapshots = snapshots();
    snapshots
        .snapshots
        .push(snapshot("again", "catalog::", None));
    let listed = vec![case(&it, "catalog::b"), case(&it, "plain")];
    let selection = Selection {
        run: vec![case(&it, "plain")],
        listed,
        ..Selection::default()
    };
    let read_only = BTreeMap::new();
    let inputs = inputs(Isolation::Test, &snapshots, &read_only, &|_| false);
    assert!(compute(selection, &inputs).is_err());
}

/// The steps of a dry run: what each step is given, in order, with every group counted.
#[derive(Default)]
struct DryRun {
    started: RefCell<Vec<TestId>>,
}

impl Steps for DryRun {
    async fn build_snapshots(&self, builders: &[Builder]) -> BTreeSet<usize> {
        let mut started = self.started.borrow_mut();
        started.extend(builders.iter().map(|b| b.case.id()));
        BTreeSet::new()
    }

    async fn tests_begin(&self) {}

    async fn batches(&self, batches: &[Batch]) -> Result<(), super::super::RunnerError> {
        let cases = batches.iter().flat_map(|batch| &batch.cases);
        self.started.borrow_mut().extend(cases.map(TestCase::id));
        Ok(())
    }

    async fn groups(&self, groups: &[Group]) -> Vec<TestCase> {
        let cases = groups.iter().flat_map(|group| &group.cases);
        self.started.borrow_mut().extend(cases.map(TestCase::id));
        Vec::new()
    }

    async fn trials(&self, trials: &[Trial]) {
        let cases = trials.iter().flat_map(|trial| &trial.cases);
        self.started.borrow_mut().extend(cases.map(TestCase::id));
    }

    async fn alone(
        &self,
        tests: Vec<Alone>,
        _: &BTreeSet<usize>,
    ) -> Result<(), super::super::RunnerError> {
        let mut started = self.started.borrow_mut();
        started.extend(tests.iter().map(|alone| alone.case.id()));
        Ok(())
    }

    async fn tests_end(&self) {}
}

/// A generated test: its name's parts and what it is.
#[derive(Debug, Clone)]
struct Generated {
    module: usize,
    number: usize,
    ignored: bool,
    sqlx: bool,
    read_only: bool,
}

fn generated() -> impl proptest::strategy::Strategy<Value = Generated> {
    (
        0..4usize,
        0..40usize,
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.2),
        any::<bool>(),
    )
        .prop_map(|(module, number, ignored, sqlx, read_only)| Generated {
            module,
            number,
            ignored,
            sqlx,
            read_only,
        })
}

/// The module names tests live in: two of them named by snapshots, `setup` holding a builder.
const MODULES: [&str; 4] = ["catalog", "built", "setup", "plain"];

fn test_name(test: &Generated) -> String {
    format!("{}::t{:02}", MODULES[test.module], test.number)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn list_and_a_dry_run_of_the_schedule_agree_test_by_test(
        suites in prop::collection::vec(prop::collection::vec(generated(), 0..24), 1..4),
        shared in prop::bool::weighted(0.2),
        with_snapshots in any::<bool>(),
        filter in prop::option::of(prop::sample::select(vec!["catalog", "t1", "plain::", "t0"])),
        ignored_mode in 0..3usize,
        partition in prop::option::of((1..4u64, any::<bool>())),
        jobs in 1..4usize,
        try_groups in any::<bool>(),
    ) {
        let mut listings = Vec::new();
        let mut read_only = BTreeMap::new();
        let mut past = BTreeMap::new();
        let mut sqlx = BTreeSet::new();
        for (index, suite) in suites.iter().enumerate() {
            let binary = binary(&format!("b{index}"));
            // The `built` snapshot's builder, in the first binary (a missing builder is a config error).
            let mut all: Vec<String> = match (index, with_snapshots) {
                (0, true) => vec!["setup::build".to_owned()],
                _ => Vec::new(),
            };
            let mut ignored = Vec::new();
            for test in suite {
                let name = test_name(test);
                if all.contains(&name) {
                    continue;
                }
                let id = TestId { binary: binary.id.clone(), name: name.clone() };
                if test.ignored { ignored.push(name.clone()); }
                if test.sqlx { sqlx.insert(id.clone()); }
                if test.read_only { read_only.insert(id.clone(), Duration::from_millis(test.number as u64 * 10)); }
                // Some tests known to the history, at times that tie now and then.
                if test.number % 3 != 0 { past.insert(id, Duration::from_millis(test.number as u64 * 7 % 40)); }
                all.push(name);
            }
            // libtest lists by name.
            all.sort();
            // The history knows every test it found read-only.
            for (id, time) in &read_only {
                past.entry(id.clone()).or_insert(*time);
            }
            listings.push(Listing { binary, all, ignored });
        }
        let args = TestArgs {
            filters: filter.map(str::to_owned).into_iter().collect(),
            ignored: [selection::IgnoredMode::Skip, selection::IgnoredMode::Only, selection::IgnoredMode::Include][ignored_mode],
            ..TestArgs::default()
        };
        let partition = partition.map(|(total, hash)| Partition {
            strategy: if hash { Dealing::Hash } else { Dealing::Count },
            shard: 1,
            total,
        });
        let chosen = selection::choose(&listings, &args, partition);
        let expected_run: BTreeSet<TestId> = chosen.run.iter().map(TestCase::id).collect();
        let ignored_count = chosen.ignored.len();
        let snapshots = if with_snapshots { snapshots() } else { NamedSnapshots::default() };
        let self_isolating = |case: &TestCase| sqlx.contains(&case.id());
        let inputs = Inputs {
            isolation: if shared { Isolation::Shared } else { Isolation::Test },
            snapshots: &snapshots,
            read_only: &read_only,
            past: &past,
            try_groups,
            self_isolating: &self_isolating,
            jobs,
        };
        let schedule = compute(chosen, &inputs).unwrap();
        prop_assert_eq!(schedule.ignored.len(), ignored_count);
        let entries = schedule.entries(&snapshots);
        let listed: Vec<TestId> = entries.iter().map(|entry| entry.test.clone()).collect();
        let announced: Vec<TestId> = schedule.tests().collect();
        prop_assert_eq!(&listed, &announced, "what the run announces is what list prints");

        let dry = DryRun::default();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(drive(schedule, &dry)).unwrap();
        prop_assert_eq!(&listed, &*dry.started.borrow(), "list and the run agree test by test, in order");

        // Every chosen test once; a builder may come from outside the filter, and nothing else.
        let unique: BTreeSet<&TestId> = listed.iter().collect();
        prop_assert_eq!(unique.len(), listed.len(), "no test twice");
        for entry in &entries {
            prop_assert!(
                expected_run.contains(&entry.test) || entry.builds_snapshot.is_some(),
                "{} was not chosen", entry.test
            );
        }
        let builders = entries.iter().filter(|e| e.builds_snapshot.is_some()).count();
        let chosen_builders = entries
            .iter()
            .filter(|e| e.builds_snapshot.is_some() && expected_run.contains(&e.test))
            .count();
        prop_assert_eq!(listed.len() - builders + chosen_builders, expected_run.len());
        // The phases come in the run's order, and a group holds tests of one binary, never a snapshot's.
        let rank = |kind: Kind, builds: bool| match (kind, builds) {
            (_, true) => 0,
            (Kind::Sqlx | Kind::Shared, _) => 1,
            (Kind::Group, _) => 2,
            (Kind::Trial, _) => 3,
            (Kind::Own, _) => 4,
        };
        let ranks: Vec<u8> = entries.iter().map(|e| rank(e.isolation, e.builds_snapshot.is_some())).collect();
        prop_assert!(ranks.windows(2).all(|pair| pair[0] <= pair[1]), "{:?}", ranks);
        for entry in entries.iter().filter(|e| e.isolation == Kind::Group) {
            prop_assert!(entry.snapshot.is_none() && read_only.contains_key(&entry.test));
        }
        // A trial holds only tests the history does not know, never an ignored one or a snapshot's.
        for entry in entries.iter().filter(|e| e.isolation == Kind::Trial) {
            prop_assert!(try_groups && !past.contains_key(&entry.test));
            prop_assert!(entry.snapshot.is_none() && !entry.ignored);
        }
        // With trials on, no test the history does not know runs alone but where a trial cannot be:
        // the only one of its binary, an ignored one, a snapshot's.
        if try_groups && !shared {
            for entry in entries.iter().filter(|e| e.isolation == Kind::Own && !past.contains_key(&e.test)) {
                let binary = &entry.test.binary;
                let alone_of_binary = entries
                    .iter()
                    .filter(|e| &e.test.binary == binary && e.isolation == Kind::Own && !past.contains_key(&e.test) && !e.ignored && e.snapshot.is_none() && e.builds_snapshot.is_none())
                    .count();
                prop_assert!(
                    entry.ignored || entry.snapshot.is_some() || entry.builds_snapshot.is_some() || alone_of_binary < 2,
                    "{} is unknown yet alone", entry.test
                );
            }
        }
        if shared {
            prop_assert!(entries.iter().all(|e| e.isolation == Kind::Shared));
        }
    }
}
