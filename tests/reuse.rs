//! Reuse of untouched databases, end to end on `fixtures/reuse-probe` (30 tests that read, 30 that write in
//! six ways; every test first asserts that nothing an earlier test wrote is in its database): a reading
//! suite hands databases on, and `--json` and `-v` say how many; a writing suite gets a fresh database for
//! every test; mixed, no write reaches a later test; `reuse = false` turns it off. The same for
//! `#[sqlx::test]`s on `fixtures/sqlx-reuse` (20 that read, 12 that write in four ways, each checking first),
//! whose databases the gateway hands on.

mod common;

use common::{Project, Run};

/// The probe with a target directory of its own (it has no dependencies: it builds in seconds).
fn probe() -> Option<Project> {
    if !common::postgres_available() {
        return None;
    }
    let mut project = Project::copy_of("reuse-probe");
    project.target_dir = Some(project.dir.join("target"));
    Some(project)
}

/// The summary's count of passed tests.
fn passed(run: &Run) -> u64 {
    let events = run.events();
    let summary = events.iter().find(|event| event["type"] == "summary");
    summary
        .and_then(|event| event["passed"].as_u64())
        .unwrap_or(0)
}

/// A count event's (`field`, `of`): how many of how many got a database an earlier test left untouched.
fn counted(run: &Run, event_type: &str, field: &str) -> (u64, u64) {
    let events = run.events();
    let event = events
        .iter()
        .find(|event| event["type"] == event_type)
        .unwrap_or_else(|| panic!("no {event_type} event in\n{}", run.stdout));
    (
        event[field].as_u64().unwrap(),
        event["of"].as_u64().unwrap(),
    )
}

/// The `databases_reused` event's (tests, of).
fn reused(run: &Run) -> (u64, u64) {
    counted(run, "databases_reused", "tests")
}

#[test]
fn a_reading_suite_reuses_and_a_writing_suite_does_not() {
    let Some(project) = probe() else { return };
    let reads = project.run(&["--json", "-", "--jobs", "2", "--test", "reads"]);
    reads.expect(0, &[]);
    assert_eq!(passed(&reads), 30, "{}{}", reads.stdout, reads.stderr);
    let (tests, of) = reused(&reads);
    assert_eq!(of, 30, "{}", reads.stdout);
    // Only the first tests, whose databases are cloned before any test has ended, must be fresh copies.
    assert!(
        tests >= 20,
        "{tests} of 30 reading tests got a reused database"
    );

    let writes = project.run(&["--json", "-", "--jobs", "2", "--test", "writes"]);
    writes.expect(0, &[]);
    assert_eq!(passed(&writes), 30, "{}{}", writes.stdout, writes.stderr);
    assert_eq!(reused(&writes), (0, 30), "no written database is handed on");

    let verbose = project.run(&["-v", "--jobs", "2", "--test", "reads"]);
    verbose.expect(
        0,
        &["of 30 tests got a database an earlier test left untouched"],
    );
    project.assert_nothing_left();
}

#[test]
fn mixed_no_write_reaches_a_later_test_and_the_key_turns_reuse_off() {
    let Some(project) = probe() else { return };
    let mixed = project.run(&["--json", "-", "--jobs", "2"]);
    mixed.expect(0, &[]);
    assert_eq!(passed(&mixed), 60, "{}{}", mixed.stdout, mixed.stderr);
    let (tests, _) = reused(&mixed);
    assert!(
        tests > 0,
        "reading tests reused databases:\n{}",
        mixed.stdout
    );

    project.append_to_manifest("\n[package.metadata.pgtest]\nreuse = false\n");
    let off = project.run(&["--json", "-", "--jobs", "2"]);
    off.expect(0, &[]);
    assert_eq!(passed(&off), 60, "{}{}", off.stdout, off.stderr);
    assert_eq!(reused(&off), (0, 60));
    project.assert_nothing_left();
}

/// The `sqlx_databases_reused` event's (databases, of).
fn sqlx_reused(run: &Run) -> (u64, u64) {
    counted(run, "sqlx_databases_reused", "databases")
}

#[test]
fn sqlx_tests_that_read_hand_their_databases_on_and_no_write_reaches_a_later_one() {
    if !common::postgres_available() {
        return;
    }
    // In the suite's shared target/fixtures, where the other sqlx fixtures built sqlx.
    let project = Project::copy_of("sqlx-reuse");
    let reads = project.run(&["--json", "-", "--jobs", "2", "--test", "reads"]);
    reads.expect(0, &[]);
    assert_eq!(passed(&reads), 20, "{}{}", reads.stdout, reads.stderr);
    let (databases, of) = sqlx_reused(&reads);
    assert_eq!(of, 20, "{}", reads.stdout);
    assert!(
        databases >= 10,
        "{databases} of 20 reading #[sqlx::test]s got a database handed on"
    );

    let writes = project.run(&["--json", "-", "--jobs", "2", "--test", "writes"]);
    writes.expect(0, &[]);
    assert_eq!(passed(&writes), 12, "{}{}", writes.stdout, writes.stderr);
    assert_eq!(
        sqlx_reused(&writes),
        (0, 12),
        "no written database is handed on"
    );

    // Readers and writers together: every test checks first that nothing was written before it.
    let mixed = project.run(&["-v", "--jobs", "2"]);
    mixed.expect(
        0,
        &[
            "#[sqlx::test] databases were ones an earlier test left untouched",
            "32 passed, 0 failed",
        ],
    );

    project.append_to_manifest("reuse = false\n");
    let off = project.run(&["--json", "-", "--jobs", "2"]);
    off.expect(0, &[]);
    assert_eq!(passed(&off), 32, "{}{}", off.stdout, off.stderr);
    assert_eq!(sqlx_reused(&off), (0, 32));
    project.assert_nothing_left();
}
