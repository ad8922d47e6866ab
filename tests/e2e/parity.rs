//! `cargo pgtest list` against what a run of the same command line executes, and the `cargo test` habits
//! cargo-pgtest keeps: `--fail-fast`, `--no-run`, `-q`, `-v` (and `CARGO_TERM_VERBOSE`), `RUST_TEST_THREADS`,
//! a refused cargo flag's reason, and the progress line (on a pseudo-terminal only).

use std::collections::BTreeSet;

use crate::support::{self, Project};
use serde_json::Value;

/// A few tests of `fixtures/sqlx-app`: `#[sqlx::test]`s and plain ones, in two binaries and the library.
const SOME_TESTS: [&str; 5] = [
    "--",
    "each_test_is_alone",
    "fixtures_can_reuse_the_seed",
    "writes_land_in_the_sqlx_database",
    "users_seed_is_there",
];

/// (binary, name) of every test a `--json -` run ended, whatever its outcome.
fn executed(run: &support::Run) -> BTreeSet<(String, String)> {
    run.events()
        .iter()
        .filter(|event| event["type"] == "test_finished")
        .map(|event| {
            let text = |key: &str| event["test"][key].as_str().unwrap().to_owned();
            (text("binary"), text("name"))
        })
        .collect()
}

/// (binary, name, isolation) of every line `list --json` printed; fails on a line that is not JSON.
fn listed(run: &support::Run) -> BTreeSet<(String, String, String)> {
    run.stdout
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{}", run.stderr));
            let text = |key: &str| entry[key].as_str().unwrap().to_owned();
            (text("binary"), text("name"), text("isolation"))
        })
        .collect()
}

fn with(args: &[&'static str], first: &[&'static str]) -> Vec<&'static str> {
    first.iter().chain(args).copied().collect()
}

fn list_is_what_a_run_executes_with_each_tests_isolation() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("sqlx-app");
    // On the shared target directory runs read no history (see `support::tool_command`), so none of these
    // runs in a read-only group (reuse.rs lists and runs those).
    let list = project.run(&with(&SOME_TESTS, &["list", "--json"]));
    list.expect(0, &[]);
    let listed = listed(&list);
    let run = project.run(&with(&SOME_TESTS, &["--json", "-"]));
    run.expect(0, &["4 passed"]);
    let names: BTreeSet<(String, String)> = listed
        .iter()
        .map(|(b, n, _)| (b.clone(), n.clone()))
        .collect();
    assert_eq!(
        names,
        executed(&run),
        "list\n{}\nrun\n{}",
        list.stdout,
        run.stderr
    );
    // Runs on the shared target directory read no history: the two plain tests of one binary are new to
    // it, so they are tried in a read-only group first.
    for (binary, name, isolation) in &listed {
        let expected = if binary == "sqlx-app::sqlx_test" {
            "sqlx"
        } else {
            "trial"
        };
        assert_eq!(isolation, expected, "{binary} {name}\n{}", list.stdout);
    }
    assert!(
        !list.stderr.contains("PASS") && !list.stderr.contains("Summary"),
        "list runs no test\n{}",
        list.stderr
    );

    let shared = project.run(&with(&SOME_TESTS, &["list", "--isolation", "shared"]));
    shared.expect(0, &[]);
    let lines: Vec<&str> = shared.stdout.lines().collect();
    assert_eq!(lines.len(), names.len(), "{}", shared.stdout);
    for (binary, name) in &names {
        let line = format!("shared {binary} {name}");
        assert!(
            lines.contains(&line.as_str()),
            "{line:?} in\n{}",
            shared.stdout
        );
    }
    project.assert_nothing_left();
}

fn list_names_the_doc_tests_a_run_executes() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("tokio-postgres-app");
    let list = project.run(&["list", "--json", "-"]);
    list.expect(0, &[]);
    // -q quiets cargo but must not quiet libtest under `cargo test --doc`, whose lines are read.
    let run = project.run(&["-q", "--json", "-"]);
    run.expect(0, &["8 passed"]);
    assert!(
        !run.stderr.contains("PASS"),
        "-q: no line per passing test\n{}",
        run.stderr
    );
    let listed = listed(&list);
    let names: BTreeSet<(String, String)> = listed
        .iter()
        .map(|(b, n, _)| (b.clone(), n.clone()))
        .collect();
    assert_eq!(
        names,
        executed(&run),
        "list\n{}\nrun\n{}",
        list.stdout,
        run.stderr
    );
    let doc = (
        "tokio-postgres-app::doc".to_owned(),
        "src/lib.rs - add_todo (line 7)".to_owned(),
        "shared".to_owned(),
    );
    assert!(listed.contains(&doc), "{}", list.stdout);
    project.assert_nothing_left();
}

fn fail_fast_starts_nothing_after_the_first_failure() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    // One test at a time, from RUST_TEST_THREADS: libtest lists `aborts` first, and it crashes.
    let run = project.run_with(
        &["--fail-fast", "--json", "-"],
        &[("RUST_TEST_THREADS", "1")],
    );
    run.expect(
        100,
        &["--fail-fast: not started after failing::outcomes aborts failed"],
    );
    let events = run.events();
    let started = events.iter().find(|e| e["type"] == "run_started").unwrap();
    assert_eq!(
        started["jobs"], 1,
        "RUST_TEST_THREADS sets the tests at a time"
    );
    let statuses: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["type"] == "test_finished")
        .map(|e| {
            (
                e["test"]["name"].as_str().unwrap(),
                e["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses.len(), 4, "{statuses:?}");
    assert!(statuses.contains(&("aborts", "crashed")), "{statuses:?}");
    let not_run = statuses.iter().filter(|(_, s)| *s == "not_run").count();
    assert_eq!(
        not_run, 3,
        "the rest are NOT RUN: {statuses:?}\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("Progress"),
        "no progress line in a pipe\n{}",
        run.stderr
    );
    project.assert_nothing_left();
}

fn no_run_builds_and_runs_nothing_and_verbose_reaches_cargo() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    let quiet = project.run(&["--no-run"]);
    quiet.expect(0, &[]);
    let verbose = project.run(&["--no-run", "-v"]);
    verbose.expect(0, &["Directory"]);
    for run in [&quiet, &verbose] {
        for word in ["PASS", "FAIL", "SIGABRT", "Summary"] {
            assert!(!run.stderr.contains(word), "{word} in\n{}", run.stderr);
        }
    }
    // cargo -v names each unit it finds up to date (`Fresh`); without -v it does not.
    assert!(verbose.stderr.contains("Fresh"), "{}", verbose.stderr);
    assert!(!quiet.stderr.contains("Fresh"), "{}", quiet.stderr);
    let from_env = project.run_with(&["--no-run"], &[("CARGO_TERM_VERBOSE", "true")]);
    from_env.expect(0, &["Directory"]);
    project.assert_nothing_left();
}

fn the_progress_line_is_for_a_terminal_and_not_with_quiet() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    let (code, output) = support::terminal::run_in_terminal(project.command(&[]));
    assert_eq!(code, Some(100), "{output}");
    assert!(output.contains("Progress"), "{output}");
    assert!(output.contains("4/4 done, 0 running, 3 failed"), "{output}");
    let (code, output) = support::terminal::run_in_terminal(project.command(&["-q"]));
    assert_eq!(code, Some(100), "{output}");
    assert!(!output.contains("Progress"), "{output}");
    assert!(
        !output.contains("PASS"),
        "-q leaves out passing tests\n{output}"
    );
    assert!(output.contains("FAIL"), "{output}");
}

fn a_refused_cargo_flag_says_why() {
    let run = support::tool_command(&["--message-format", "json"], std::path::Path::new("."))
        .output()
        .map(support::Run::from)
        .unwrap();
    run.expect(2, &["`--message-format`", "--json PATH"]);
}

crate::tests! {
    list_is_what_a_run_executes_with_each_tests_isolation,
    list_names_the_doc_tests_a_run_executes,
    fail_fast_starts_nothing_after_the_first_failure,
    no_run_builds_and_runs_nothing_and_verbose_reaches_cargo,
    the_progress_line_is_for_a_terminal_and_not_with_quiet,
    a_refused_cargo_flag_says_why,
}
