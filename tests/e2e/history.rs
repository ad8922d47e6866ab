//! The test history end to end, on `fixtures/history-probe` with a target directory of its own (the history
//! lives there): a test made 20 times slower than its runs so far is flagged SLOWER in the summary, the JSON
//! events and the JUnit report, the others are not, and `--no-history` flags nothing and writes nothing.

use std::fs;

use crate::support::{self, Project};

const HISTORY: &str = "pgtest/history/durations.jsonl";

fn a_test_twenty_times_slower_than_its_history_is_flagged_and_no_other() {
    if !support::postgres_available() {
        return;
    }
    let mut project = Project::copy_of("history-probe");
    let target = tempfile::tempdir().unwrap();
    project.target_dir = Some(target.path().to_owned());
    let history = target.path().join(HISTORY);
    let set_time =
        |millis: u64| fs::write(project.probe_dir.join("varies_ms"), millis.to_string()).unwrap();

    set_time(50);
    for run in 1..=4 {
        let done = project.run(&[]);
        done.expect(0, &["3 passed, 0 failed"]);
        assert!(
            !done.stderr.contains("SLOWER"),
            "run {run}:\n{}",
            done.stderr
        );
    }
    assert_eq!(fs::read_to_string(&history).unwrap().lines().count(), 12);

    set_time(1000);
    let before = fs::read(&history).unwrap();
    let unrecorded = project.run(&["--no-history"]);
    unrecorded.expect(0, &["3 passed, 0 failed"]);
    assert!(
        !unrecorded.stderr.contains("SLOWER"),
        "{}",
        unrecorded.stderr
    );
    assert_eq!(
        fs::read(&history).unwrap(),
        before,
        "--no-history writes nothing"
    );

    let junit = project.probe_dir.join("junit.xml");
    let slow = project.run(&["--json", "-", "--junit", junit.to_str().unwrap()]);
    slow.expect(0, &["3 passed, 0 failed"]);
    let flagged: Vec<&str> = slow
        .stderr
        .lines()
        .filter(|l| l.contains("SLOWER"))
        .collect();
    assert_eq!(flagged.len(), 1, "{}", slow.stderr);
    assert!(
        flagged[0].contains("history-probe::timed varies (median of its last passing runs: 0.0"),
        "{}",
        slow.stderr
    );
    let events: Vec<_> = slow
        .events()
        .into_iter()
        .filter(|e| e["type"] == "test_slower")
        .collect();
    assert_eq!(events.len(), 1, "{}", slow.stdout);
    assert_eq!(events[0]["test"]["name"], "varies");
    // It slept a second. In a read-only group a test's time runs from when its thread was seen to free,
    // a moment after it did, so it may read a little under.
    assert!(
        events[0]["seconds"].as_f64().unwrap() >= 0.9,
        "{:?}",
        events[0]
    );
    assert!(events[0]["median_seconds"].as_f64().unwrap() < 1.0 / 3.0);
    let xml = fs::read_to_string(&junit).unwrap();
    let document = roxmltree::Document::parse(&xml).unwrap();
    let marked: Vec<&str> = document
        .descendants()
        .filter(|node| node.has_tag_name("testcase"))
        .filter(|case| {
            case.descendants()
                .any(|p| p.has_tag_name("property") && p.attribute("name") == Some("pgtest.slower"))
        })
        .filter_map(|case| case.attribute("name"))
        .collect();
    assert_eq!(marked, ["varies"], "{xml}");
}

crate::tests! {
    a_test_twenty_times_slower_than_its_history_is_flagged_and_no_other,
}
