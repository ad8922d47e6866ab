//! Reuse of untouched databases, end to end on `fixtures/reuse-probe` (30 tests that read, 30 that write in
//! six ways; every test first asserts that nothing an earlier test wrote is in its database): a reading
//! suite hands databases on, and `--json` and `-v` say how many; a writing suite gets a fresh database for
//! every test; mixed, no write reaches a later test; `reuse = false` turns it off. Read-only groups on its
//! `turns` (12 tests that read, one of which writes when told to): learned, grouped, and undone. The same for
//! `#[sqlx::test]`s on `fixtures/sqlx-reuse` (20 that read, 12 that write in four ways, each checking first),
//! whose databases the gateway hands on.

use crate::support::{self, Project, Run};

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

fn a_reading_suite_reuses_and_a_writing_suite_does_not() {
    let Some(project) = Project::with_own_target("reuse-probe") else {
        return;
    };
    // Every test alone, as reuse hands databases on between tests alone: no group, learned or tried.
    project.append_to_manifest("\n[package.metadata.pgtest]\ngroup_read_only = false\n");
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

    // Without the history's marks (a first run), the reading tests run alone and hand databases on.
    let verbose = project.run(&["-v", "--no-history", "--jobs", "2", "--test", "reads"]);
    verbose.expect(
        0,
        &["of 30 tests got a database an earlier test left untouched"],
    );
    project.assert_nothing_left();
}

fn mixed_no_write_reaches_a_later_test_and_the_key_turns_reuse_off() {
    let Some(project) = Project::with_own_target("reuse-probe") else {
        return;
    };
    let mixed = project.run(&["--json", "-", "--jobs", "2"]);
    mixed.expect(0, &[]);
    assert_eq!(passed(&mixed), 72, "{}{}", mixed.stdout, mixed.stderr);
    let (tests, _) = reused(&mixed);
    assert!(
        tests > 0,
        "reading tests reused databases:\n{}",
        mixed.stdout
    );

    project.append_to_manifest("\n[package.metadata.pgtest]\nreuse = false\n");
    let off = project.run(&["--json", "-", "--jobs", "2"]);
    off.expect(0, &[]);
    assert_eq!(passed(&off), 72, "{}{}", off.stdout, off.stderr);
    assert_eq!(reused(&off), (0, 72));
    assert!(
        groups(&off).is_none(),
        "no read-only groups without reuse's check"
    );
    project.assert_nothing_left();
}

/// The `read_only_groups` event's (tests, groups, ran_alone), if the run had one.
fn groups(run: &Run) -> Option<(u64, u64, u64)> {
    let events = run.events();
    let event = events
        .iter()
        .find(|event| event["type"] == "read_only_groups")?;
    let count = |field: &str| event[field].as_u64().unwrap();
    Some((count("tests"), count("groups"), count("ran_alone")))
}

/// The `trial_groups` event's (tests, groups, counted), if the run tried tests in groups.
fn trials(run: &Run) -> Option<(u64, u64, u64)> {
    let events = run.events();
    let event = events
        .iter()
        .find(|event| event["type"] == "trial_groups")?;
    let count = |field: &str| event[field].as_u64().unwrap();
    Some((count("tests"), count("groups"), count("counted")))
}

/// How many tests the run found read-only (`database_untouched` events).
fn untouched(run: &Run) -> usize {
    let events = run.events();
    events
        .iter()
        .filter(|event| event["type"] == "database_untouched")
        .count()
}

/// Runs `turns` with the environment given, its tests noting their process ids in a fresh file; returns
/// the run and how many processes ran its tests (and how many ids were noted).
fn run_turns(project: &Project, args: &[&str], env: &[(&str, &str)]) -> (Run, usize, usize) {
    let pids = project.dir.join("pids");
    let _ = std::fs::remove_file(&pids);
    let pids_env = ("REUSE_PROBE_PIDS", pids.to_str().unwrap());
    let mut env = env.to_vec();
    env.push(pids_env);
    let mut all = vec!["--json", "-", "--jobs", "2", "--test", "turns"];
    all.extend(args);
    let run = project.run_with(&all, &env);
    let noted = std::fs::read_to_string(&pids).unwrap_or_default();
    let mut distinct: Vec<&str> = noted.lines().collect();
    let lines = distinct.len();
    distinct.sort_unstable();
    distinct.dedup();
    (run, distinct.len(), lines)
}

/// `list` shows every test of `turns` in a group, and the groups first.
fn assert_listed_in_groups(project: &Project) {
    let list = project.run(&["list", "--test", "turns", "--test", "reads"]);
    list.expect(
        0,
        &[
            "group  reuse-probe::turns turn_01",
            // Never run here: new to the history, so tried in a group first.
            "trial  reuse-probe::reads read_01",
        ],
    );
    let kinds: Vec<&str> = list
        .stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        kinds.iter().filter(|kind| **kind == "group").count(),
        12,
        "{}",
        list.stdout
    );
    assert_eq!(
        kinds.first(),
        Some(&"group"),
        "groups run first:\n{}",
        list.stdout
    );
}

fn tests_found_read_only_run_together_and_a_group_written_to_counts_for_nothing() {
    let Some(project) = Project::with_own_target("reuse-probe") else {
        return;
    };
    // A first run: nothing is learned yet, so the tests are tried in groups (2, then 4, then the last 6),
    // each found untouched, and so counted and marked read-only.
    let (first, processes, noted) = run_turns(&project, &[], &[]);
    first.expect(0, &[]);
    assert_eq!(passed(&first), 12, "{}{}", first.stdout, first.stderr);
    assert_eq!(groups(&first), None, "nothing is learned yet");
    assert_eq!(trials(&first), Some((12, 3, 12)), "{}", first.stdout);
    assert_eq!((processes, noted), (3, 12), "one process per trial group");
    assert_eq!(untouched(&first), 12, "{}", first.stdout);

    // Learned: all in groups, a process per group, no test alone. How many groups depends on the tests'
    // past times (a group is closed after a few seconds of them), so on the machine's load: one, unless
    // the first run was slow.
    let (second, processes, noted) = run_turns(&project, &[], &[]);
    second.expect(0, &[]);
    assert_eq!(passed(&second), 12, "{}{}", second.stdout, second.stderr);
    let (tests, count, ran_alone) = groups(&second).expect("read-only groups");
    assert_eq!((tests, ran_alone), (12, 0), "{}", second.stdout);
    assert_eq!(
        (processes, noted),
        (count as usize, 12),
        "a group shares one process"
    );
    assert_eq!(
        untouched(&second),
        12,
        "a counted group keeps its tests' marks"
    );
    assert_listed_in_groups(&project);

    // turn_06 writes now: its group's database is written to, and tests after it in the group see its
    // mark and fail there. None of that counts: every test of that group runs again alone and passes (all
    // twelve when they are one group).
    let (third, processes, noted) = run_turns(&project, &[], &[("REUSE_PROBE_WRITE", "1")]);
    third.expect(0, &[]);
    assert_eq!(passed(&third), 12, "{}{}", third.stdout, third.stderr);
    let (tests, count, ran_alone) = groups(&third).expect("read-only groups");
    assert_eq!(tests, 12, "{}", third.stdout);
    assert!(
        ran_alone >= 2 && (count > 1 || ran_alone == 12),
        "the written group's tests run again alone: {}",
        third.stdout
    );
    assert_eq!(
        (processes, noted),
        ((count + ran_alone) as usize, 12 + ran_alone as usize),
        "a process per group, then one per test run again"
    );
    assert_eq!(untouched(&third), 11, "turn_06 wrote, alone too");

    // turn_06 lost its mark: the groups are of the other 11, and they count.
    let (fourth, processes, _) = run_turns(&project, &["-v"], &[("REUSE_PROBE_WRITE", "1")]);
    fourth.expect(0, &[]);
    let (tests, count, ran_alone) = groups(&fourth).expect("read-only groups");
    assert_eq!((tests, ran_alone), (11, 0), "{}", fourth.stdout);
    assert_eq!(
        processes,
        count as usize + 1,
        "the groups' processes and turn_06's"
    );

    // `--no-history` reads no marks: the tests are tried in groups again, as in the first run;
    // `--nocapture` asks for every test's output, which a group keeps to itself; the key turns groups and
    // trials off.
    let (unread, processes, _) = run_turns(&project, &["--no-history"], &[]);
    unread.expect(0, &[]);
    assert_eq!(groups(&unread), None);
    let (tried, count, counted) = trials(&unread).expect("tried in groups");
    assert_eq!(
        (tried, processes),
        (12, count as usize),
        "{}",
        unread.stdout
    );
    assert_eq!(counted, 12, "{}", unread.stdout);
    let (shown, processes, _) = run_turns(&project, &["--", "--nocapture"], &[]);
    shown.expect(0, &[]);
    assert_eq!(
        (groups(&shown), trials(&shown), processes),
        (None, None, 12)
    );
    project.append_to_manifest("\n[package.metadata.pgtest]\ngroup_read_only = false\n");
    let (off, processes, _) = run_turns(&project, &["--no-history"], &[]);
    off.expect(0, &[]);
    assert_eq!((groups(&off), trials(&off), processes), (None, None, 12));
    project.assert_nothing_left();
}

/// The `sqlx_databases_reused` event's (databases, of).
fn sqlx_reused(run: &Run) -> (u64, u64) {
    counted(run, "sqlx_databases_reused", "databases")
}

fn sqlx_tests_that_read_hand_their_databases_on_and_no_write_reaches_a_later_one() {
    if !support::postgres_available() {
        return;
    }
    // In the suite's shared target/fixtures, where the other sqlx fixtures built sqlx.
    let project = Project::copy_of("sqlx-reuse");
    let reads = project.run(&["--json", "-", "--jobs", "2", "--test", "reads"]);
    reads.expect(0, &[]);
    assert_eq!(passed(&reads), 20, "{}{}", reads.stdout, reads.stderr);
    let (databases, of) = sqlx_reused(&reads);
    assert_eq!(of, 20, "{}", reads.stdout);
    // How many depends on timing: the gateway's worker checks a used database while the next tests already
    // ask for theirs, and on a loaded machine it falls behind (9 of 20 seen once). That reuse happens at all
    // is what this shows; that no write reaches a later test is checked below.
    assert!(
        databases >= 1,
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

crate::tests! {
    a_reading_suite_reuses_and_a_writing_suite_does_not,
    mixed_no_write_reaches_a_later_test_and_the_key_turns_reuse_off,
    tests_found_read_only_run_together_and_a_group_written_to_counts_for_nothing,
    sqlx_tests_that_read_hand_their_databases_on_and_no_write_reaches_a_later_one,
}
