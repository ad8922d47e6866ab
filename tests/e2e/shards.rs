//! CI at scale, end to end through the real binary: the shards of a `--partition` run every test of
//! `fixtures/shard-split` exactly once between them (plain, `#[sqlx::test]`, ignored and doc tests), each
//! with its own JSON and JUnit report; and `--retries` on `fixtures/flaky-retry`, whose tests count their
//! attempts in `PROBE_DIR`: a test that fails once is FLAKY with a retry and FAIL without, in every way a
//! test can run (alone, in a `#[sqlx::test]` batch, in shared isolation), and one that never passes fails
//! with every attempt's output.

use std::fs;

use crate::support::{postgres_available, Project, Run};
use serde_json::Value;

/// `binary name` of every test a run (made with `--json -`) finished, with its status word.
fn finished(run: &Run) -> Vec<(String, String)> {
    events_of(run, "test_finished")
        .map(|event| {
            (
                test_of(&event),
                event["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn events_of(run: &Run, kind: &'static str) -> impl Iterator<Item = Value> {
    run.events()
        .into_iter()
        .filter(move |event| event["type"] == kind)
}

fn test_of(event: &Value) -> String {
    let test = &event["test"];
    format!(
        "{} {}",
        test["binary"].as_str().unwrap_or(""),
        test["name"].as_str().unwrap_or("")
    )
}

/// Every test a run reported: the ones it finished and the ones it reported IGNORED.
fn reported(run: &Run) -> Vec<String> {
    let mut tests: Vec<String> = finished(run).into_iter().map(|(test, _)| test).collect();
    tests.extend(events_of(run, "test_ignored").map(|event| test_of(&event)));
    tests
}

/// Doc tests are named after their file and line (`src/lib.rs - double (line 5)`).
fn is_doc_test(test: &str) -> bool {
    test.contains(" - ") && test.contains("(line ")
}

fn the_shards_of_a_partition_run_every_test_exactly_once() {
    if !postgres_available() {
        return;
    }
    let project = Project::copy_of("shard-split");
    let whole = project.run(&["--json", "-"]);
    whole.expect(0, &["1 ignored"]);
    let mut all = reported(&whole);
    all.sort();
    let doc_tests = all.iter().filter(|test| is_doc_test(test)).count();
    let batched = |tests: &[String]| tests.iter().filter(|t| t.contains(" sqlx_")).count();
    assert!(doc_tests >= 2 && batched(&all) >= 3, "{all:#?}");
    let reports = tempfile::tempdir().unwrap();
    for strategy in ["count", "hash"] {
        let mut together = Vec::new();
        for shard in 1..=3 {
            let partition = format!("{strategy}:{shard}/3");
            let junit = reports.path().join(format!("{strategy}-{shard}.xml"));
            let args = ["--partition", &partition, "--json", "-", "--junit"];
            let run = project.run(&[&args[..], &[junit.to_str().unwrap()]].concat());
            run.expect(0, &[]);
            let tests = reported(&run);
            // The JUnit report is the shard's own: one test case per test it reported.
            let xml = fs::read_to_string(&junit).unwrap();
            assert_eq!(
                xml.matches("<testcase ").count(),
                tests.len(),
                "{partition}\n{xml}"
            );
            // Doc tests are only known once compiled: they all run on shard 1.
            let docs = tests.iter().filter(|test| is_doc_test(test)).count();
            assert_eq!(docs, if shard == 1 { doc_tests } else { 0 }, "{partition}");
            if strategy == "count" {
                // Dealt round-robin, the six #[sqlx::test]s of one binary give each shard two.
                assert_eq!(batched(&tests), 2, "{partition}: {tests:#?}");
            }
            together.extend(tests);
        }
        together.sort();
        assert_eq!(
            together, all,
            "{strategy}: the shards together differ from the whole run"
        );
    }
}

fn a_bad_partition_is_refused_before_anything_runs() {
    let project = Project::copy_of("flaky-retry");
    let run = project.run(&["--partition", "count:4/3"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("shard 4 of 3 does not exist"),
        "{}",
        run.stderr
    );
}

/// Runs `args` (ending with one test's name) on a fresh copy of `fixtures/flaky-retry`, with a JSON and a
/// JUnit report.
fn flaky_run(args: &[&str]) -> (Run, String) {
    flaky_run_with(args, "")
}

fn flaky_run_with(args: &[&str], manifest: &str) -> (Run, String) {
    let project = Project::copy_of("flaky-retry");
    project.append_to_manifest(manifest);
    let junit = project.probe_dir.join("junit.xml");
    let reports = ["--json", "-", "--junit", junit.to_str().unwrap()];
    let run = project.run(&[&reports[..], args, &["--", "--exact"]].concat());
    let xml = fs::read_to_string(&junit).unwrap_or_default();
    (run, xml)
}

/// Whether `test` was retried and then passed: one `test_retry`, then `passed`.
fn assert_flaky(run: &Run, xml: &str, test: &str) {
    run.expect(0, &["FLAKY", "1 passed (1 flaky), 0 failed"]);
    let retries: Vec<Value> = events_of(run, "test_retry").collect();
    assert_eq!(retries.len(), 1, "{}", run.stdout);
    assert!(test_of(&retries[0]).ends_with(test), "{}", retries[0]);
    assert_eq!(retries[0]["attempt"], 1);
    assert!(retries[0]["output"]
        .as_str()
        .unwrap()
        .contains("attempt 1 fails on purpose"));
    let results = finished(run);
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].1, "passed");
    assert_eq!(xml.matches("<flakyFailure").count(), 1, "{xml}");
    assert!(xml.contains("attempt 1 fails on purpose"), "{xml}");
}

fn a_test_that_fails_once_fails_without_retries() {
    if !postgres_available() {
        return;
    }
    let (run, _) = flaky_run(&["fails_once_then_passes"]);
    run.expect(
        100,
        &["FAIL", "attempt 1 fails on purpose", "0 passed, 1 failed"],
    );
    assert_eq!(events_of(&run, "test_retry").count(), 0);
    let (run, _) = flaky_run(&["sqlx_fails_once_then_passes"]);
    run.expect(100, &["attempt 1 fails on purpose", "0 passed, 1 failed"]);
}

fn a_test_that_passes_on_its_retry_is_flaky() {
    if !postgres_available() {
        return;
    }
    let (run, xml) = flaky_run(&["--retries", "1", "fails_once_then_passes"]);
    assert_flaky(&run, &xml, "fails_once_then_passes");
    // The `retries` key means the same (the fixture's manifest ends in its [package.metadata.pgtest]).
    let key = "retries = 1\n";
    let (run, xml) = flaky_run_with(&["fails_once_then_passes"], key);
    assert_flaky(&run, &xml, "fails_once_then_passes");
}

fn tests_run_together_are_retried_alone() {
    if !postgres_available() {
        return;
    }
    // A #[sqlx::test] runs in its binary's batch first, then alone.
    let (run, xml) = flaky_run(&["--retries", "1", "sqlx_fails_once_then_passes"]);
    assert_flaky(&run, &xml, "sqlx_fails_once_then_passes");
    // In shared isolation the retry gets a fresh copy of the template: the test's table is not there yet.
    let args = [
        "--isolation",
        "shared",
        "--retries",
        "1",
        "fails_once_then_passes",
    ];
    let (run, xml) = flaky_run(&args);
    assert_flaky(&run, &xml, "fails_once_then_passes");
}

fn a_test_that_never_passes_fails_with_every_attempts_output() {
    if !postgres_available() {
        return;
    }
    let (run, xml) = flaky_run(&["--retries", "2", "always_fails"]);
    run.expect(
        100,
        &[
            "TRY 1 FAIL",
            "TRY 2 FAIL",
            "--- attempt 1 of 3: FAIL ---",
            "attempt 1 fails on purpose",
            "attempt 2 fails on purpose",
            "--- attempt 3 of 3: FAIL ---",
            "attempt 3 fails on purpose",
            "0 passed, 1 failed",
        ],
    );
    assert_eq!(events_of(&run, "test_retry").count(), 2);
    assert_eq!(xml.matches("<rerunFailure").count(), 2, "{xml}");
    assert!(!xml.contains("flakyFailure"), "{xml}");
}

crate::tests! {
    the_shards_of_a_partition_run_every_test_exactly_once,
    a_bad_partition_is_refused_before_anything_runs,
    a_test_that_fails_once_fails_without_retries,
    a_test_that_passes_on_its_retry_is_flaky,
    tests_run_together_are_retried_alone,
    a_test_that_never_passes_fails_with_every_attempts_output,
}
