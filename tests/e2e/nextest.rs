//! `cargo pgtest nextest`, driven through the real binary and a real cargo-nextest: fixture projects pass
//! (each test alone in its database) or fail as they should, nextest's own options (filters, profiles)
//! reach it, every test's database is dropped when its process ends however it ends, and the cluster
//! and the tests die with cargo-pgtest. Without cargo-nextest the tests that need it are skipped (a
//! failure in CI, which installs it), and the error that names the install command is checked anyway.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, Project};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Whether cargo-nextest and PostgreSQL are both here (otherwise skipped, or failed in CI).
fn can_run() -> bool {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let nextest = Command::new(cargo)
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !nextest {
        support::skip("cargo-nextest is not installed (`cargo install cargo-nextest --locked`)");
        return false;
    }
    support::postgres_available()
}

/// The leak check cargo-pgtest prints with `-v`: as many databases after the tests as before.
fn assert_every_database_dropped(output: &support::Run) {
    let all = format!("{}\n{}", output.stdout, output.stderr);
    let line = all
        .lines()
        .find(|l| l.contains("cluster databases before the tests:"))
        .unwrap_or_else(|| panic!("no leak check line in\n{all}"));
    let counts: Vec<&str> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(counts.len(), 2, "{line}");
    assert_eq!(
        counts[0], counts[1],
        "a test database outlived its test: {line}"
    );
    assert!(
        !all.contains("still held when nextest ended"),
        "a database was only dropped at the end, not when its test ended:\n{all}"
    );
}

fn the_sqlx_app_passes_with_every_test_alone_in_its_database() {
    if !can_run() {
        return;
    }
    let project = Project::copy_of("sqlx-app");
    // Its isolation tests each check their database is the pristine template and then write to it (the
    // same rows, the same sequence): they can only all pass if no two share a database.
    let output = project.run(&["-v", "nextest"]);
    output.expect(
        0,
        &[
            "the tests run under cargo-nextest",
            "PASS",
            "sqlx-app::isolation users_ids_continue_after_the_seed",
            "sqlx-app::isolation scratch_table_is_mine_too",
            "sqlx-app::sqlx_test fixtures_can_reuse_the_seed",
            "28 tests run: 28 passed, 1 skipped",
        ],
    );
    assert!(!output.stderr.contains("FAIL"), "{}", output.stderr);
    assert_every_database_dropped(&output);
    project.assert_nothing_left();
}

fn nextest_filters_and_a_leading_run_are_nextests() {
    if !can_run() {
        return;
    }
    let project = Project::copy_of("sqlx-app");
    let output = project.run(&["nextest", "run", "-E", "test(/^users_/)", "--no-fail-fast"]);
    output.expect(
        0,
        &[
            "sqlx-app::isolation users_create_one",
            "7 tests run: 7 passed, 22 skipped",
        ],
    );
    assert!(
        !output.stderr.contains("isolation posts_"),
        "{}",
        output.stderr
    );
    project.assert_nothing_left();
}

fn a_failing_test_fails_the_run_and_each_retry_gets_a_fresh_database() {
    if !can_run() {
        return;
    }
    let project = Project::copy_of("failing");
    let output = project.run(&["-v", "nextest", "--no-fail-fast", "--retries", "1"]);
    output.expect(
        100,
        &[
            "PASS",
            "failing::outcomes passes",
            "TRY 2 FAIL",
            "failing::outcomes fails_an_assertion",
            "expected 3 rows, found 4",
            "SIGABRT",
            "4 tests run: 1 passed, 3 failed",
            "error: `cargo nextest run` failed: at least one test failed (exit code 100",
        ],
    );
    // Four tests, and a second attempt for each of the three that fail: seven processes, seven clones.
    let all = format!("{}\n{}", output.stdout, output.stderr);
    let line = all
        .lines()
        .find(|l| l.contains("test databases: "))
        .unwrap_or_else(|| panic!("no database count in\n{all}"));
    let handed_out: u64 = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    assert_eq!(handed_out, 7, "{line}");
    assert_every_database_dropped(&output);
    project.assert_nothing_left();
}

fn a_test_nextest_kills_on_its_profiles_timeout_loses_its_database() {
    if !can_run() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    let config = project.dir.join(".config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("nextest.toml"),
        "[profile.quick-kill]\nslow-timeout = { period = \"1s\", terminate-after = 1, grace-period = \"1s\" }\n",
    )
    .unwrap();
    let output = project.run_with(
        &[
            "-v",
            "nextest",
            "--profile",
            "quick-kill",
            "-E",
            "test(hangs_when_asked)",
        ],
        &[("PROBE_HANG", "1")],
    );
    output.expect(
        100,
        &[
            "nextest profile: quick-kill",
            "TIMEOUT",
            "fault-probe::faults hangs_when_asked",
        ],
    );
    assert_every_database_dropped(&output);
    project.assert_nothing_left();
}

/// Starts `cargo pgtest nextest` on the probe's blocking test and waits until that test runs; returns
/// the run and the test's pid.
fn start_blocked(project: &Project) -> (std::process::Child, i32) {
    let run = project.start_blocked(&["nextest", "-E", "test(blocks_until_released)"]);
    (run, project.blocked_test_pid())
}

fn ctrl_c_reaches_nextest_and_the_run_ends_cleanly() {
    if !can_run() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    let (run, test_pid) = start_blocked(&project);
    // To cargo-pgtest alone, as a CI runner may send it: cargo-pgtest passes it on to nextest.
    kill(Pid::from_raw(run.id() as i32), Signal::SIGINT).unwrap();
    let signalled = Instant::now();
    let output = support::Run::from(run.wait_with_output().unwrap());
    output.expect(130, &["stopped by SIGINT"]);
    // Unless nextest hears of the signal, the blocked test runs on for a minute, or until cargo-pgtest
    // gives up waiting for nextest (30 s) and kills it.
    assert!(
        signalled.elapsed() < Duration::from_secs(20),
        "the run took {:?} to stop: nextest was not told",
        signalled.elapsed()
    );
    support::assert_gone(test_pid, Duration::from_secs(30), "the test process");
    project.assert_nothing_left();
}

fn a_killed_cargo_pgtest_takes_nextest_its_tests_and_the_cluster_along() {
    if !can_run() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    let (mut run, test_pid) = start_blocked(&project);
    kill(Pid::from_raw(run.id() as i32), Signal::SIGKILL).unwrap();
    run.wait().unwrap();
    support::assert_gone(test_pid, Duration::from_secs(30), "the test process");
    let parent = project.cluster_parent.path();
    support::no_process_mentions(parent, Duration::from_secs(30))
        .expect("the server dies with the run that started it");
}

fn without_cargo_nextest_the_error_names_the_install_command() {
    let project = Project::copy_of("failing");
    let empty = tempfile::tempdir().unwrap();
    let cargo = std::env::var_os("CARGO").expect("cargo runs the test suite");
    let output = support::Run::from(
        project
            .command(&["nextest"])
            // No cargo-nextest on PATH nor in CARGO_HOME: the cargo running this suite alone.
            .env("PATH", empty.path())
            .env("CARGO_HOME", empty.path())
            .env("CARGO", Path::new(&cargo))
            .output()
            .unwrap(),
    );
    output.expect(
        2,
        &[
            "error: cargo-nextest is not installed",
            "cargo install cargo-nextest --locked",
        ],
    );
    assert!(
        !output.stderr.contains("Cluster"),
        "the check comes before the cluster boots:\n{}",
        output.stderr
    );
    project.assert_nothing_left();
}

fn extra_databases_come_fresh_with_every_tests_database() {
    if !can_run() {
        return;
    }
    // Each test checks that its two extra databases are copies named after its own database, each with
    // only its own migrations' table, and holding none of an earlier test's rows.
    let project = Project::copy_of("two-databases");
    let output = project.run(&["-v", "nextest"]);
    output.expect(0, &["PASS", "4 tests run: 4 passed"]);
    assert!(!output.stderr.contains("FAIL"), "{}", output.stderr);
    assert_every_database_dropped(&output);
    project.assert_nothing_left();
}

crate::tests! {
    the_sqlx_app_passes_with_every_test_alone_in_its_database,
    nextest_filters_and_a_leading_run_are_nextests,
    a_failing_test_fails_the_run_and_each_retry_gets_a_fresh_database,
    a_test_nextest_kills_on_its_profiles_timeout_loses_its_database,
    ctrl_c_reaches_nextest_and_the_run_ends_cleanly,
    a_killed_cargo_pgtest_takes_nextest_its_tests_and_the_cluster_along,
    without_cargo_nextest_the_error_names_the_install_command,
    extra_databases_come_fresh_with_every_tests_database,
}
