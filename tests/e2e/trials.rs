//! Trials end to end on `fixtures/trial-probe` (48 tests, each checking first that nothing an earlier test
//! wrote is in its database; a seed picks which of them then write, one in four): a first run tries the
//! tests the history does not know in read-only groups, keeps the results of the groups found untouched and
//! runs every other test alone, so that for every seed each test passes exactly as with groups off; and
//! the next run, knowing them, puts the readers in learned groups and tries none.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::{Project, Run};

crate::tests! {
    a_first_run_tries_unknown_tests_in_groups_and_no_write_reaches_a_later_test,
}

const TESTS: usize = 48;
const SEEDS: [&str; 3] = ["2", "4", "6"];

/// Each test's final status, by name.
fn verdicts(run: &Run) -> BTreeMap<String, String> {
    let finished = run
        .events()
        .into_iter()
        .filter(|e| e["type"] == "test_finished");
    finished
        .filter_map(|event| {
            let name = event["test"]["name"].as_str()?.to_owned();
            Some((name, event["status"].as_str()?.to_owned()))
        })
        .collect()
}

/// The run's event of `kind`, if it has one.
fn event(run: &Run, kind: &str) -> Option<Value> {
    run.events().into_iter().find(|event| event["type"] == kind)
}

fn count(event: &Value, field: &str) -> u64 {
    event[field].as_u64().unwrap_or_default()
}

fn a_first_run_tries_unknown_tests_in_groups_and_no_write_reaches_a_later_test() {
    let Some(project) = Project::with_own_target("trial-probe") else {
        return;
    };
    let first_run = ["--json", "-", "--jobs", "2", "--no-history"];
    let mut tried = Vec::new();
    for seed in SEEDS {
        let run = project.run_with(&first_run, &[("TRIAL_PROBE_SEED", seed)]);
        run.expect(0, &[]);
        let verdicts = verdicts(&run);
        assert_eq!(verdicts.len(), TESTS, "{}", run.stdout);
        assert!(
            verdicts.values().all(|status| status == "passed"),
            "seed {seed}: {verdicts:?}"
        );
        let trials = event(&run, "trial_groups").expect("the unknown tests were tried");
        let (tests, groups, counted) = (
            count(&trials, "tests"),
            count(&trials, "groups"),
            count(&trials, "counted"),
        );
        assert!(groups >= 2 && counted >= 2, "seed {seed}: {trials}");
        // One in four writes: some group came out written, and its tests passed alone after all.
        assert!(counted < tests, "seed {seed}: {trials}");
        tried.push(verdicts);
    }

    // A first run that keeps its history: the next run knows every test and tries none; its readers
    // run in learned groups.
    let learning = project.run_with(
        &["--json", "-", "--jobs", "2"],
        &[("TRIAL_PROBE_SEED", "2")],
    );
    learning.expect(0, &[]);
    let learned = project.run_with(
        &["--json", "-", "--jobs", "2"],
        &[("TRIAL_PROBE_SEED", "2")],
    );
    learned.expect(0, &[]);
    assert_eq!(event(&learned, "trial_groups"), None, "{}", learned.stdout);
    let groups = event(&learned, "read_only_groups").expect("the readers ran in learned groups");
    assert!(count(&groups, "tests") >= 2, "{groups}");

    project.append_to_manifest("\n[package.metadata.pgtest]\ngroup_read_only = false\n");
    for (seed, tried) in SEEDS.iter().zip(&tried) {
        let off = project.run_with(&first_run, &[("TRIAL_PROBE_SEED", seed)]);
        off.expect(0, &[]);
        assert_eq!(
            event(&off, "trial_groups"),
            None,
            "no trials with groups off"
        );
        assert_eq!(
            &verdicts(&off),
            tried,
            "seed {seed}: the same verdict for every test"
        );
    }
    project.assert_nothing_left();
}
