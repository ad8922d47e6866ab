//! After a red test, end to end on `fixtures/keep-probe` (two tests write a row and fail, one passes):
//! the run keeps the failed tests' databases, `cargo pgtest psql NAME` opens one of them, `psql` without a
//! name opens the migrated, seeded template, and `serve` runs the migrated cluster for other processes.
//! Every test checks that nothing is left behind, also when the command is stopped or killed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{poll, Project};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const KEPT_FIRST: &str = "kept: cargo pgtest psql keep-probe::probe writes_then_fails\n";
const KEPT_SECOND: &str = "kept: cargo pgtest psql keep-probe::probe writes_then_fails_too\n";
const NOTES: &[&str] = &["--", "-XAt", "-c", "SELECT body FROM notes ORDER BY body"];

/// The probe with a target directory (and so kept databases) of its own; it has no dependencies, so
/// building it there takes a second.
fn probe() -> Option<Project> {
    if !common::postgres_available() {
        return None;
    }
    let mut project = Project::copy_of("keep-probe");
    project.target_dir = Some(project.dir.join("target"));
    Some(project)
}

fn args<'a>(first: &[&'a str], then: &[&'a str]) -> Vec<&'a str> {
    first.iter().chain(then).copied().collect()
}

#[test]
fn psql_opens_a_failed_tests_kept_database() {
    let Some(project) = probe() else { return };
    let run = project.run(&[]);
    run.expect(100, &[KEPT_FIRST, KEPT_SECOND, "1 passed, 2 failed"]);
    project.assert_nothing_left();

    let full_id = project.run(&args(
        &["psql", "keep-probe::probe", "writes_then_fails"],
        NOTES,
    ));
    full_id.expect(0, &[]);
    assert_eq!(
        full_id.stdout, "left by writes_then_fails\nseeded one\nseeded two\n",
        "the row the test wrote before failing, beside the seed; not the other test's"
    );
    project.assert_nothing_left();

    let part = project.run(&args(&["psql", "then_fails_too"], NOTES));
    part.expect(0, &[]);
    assert_eq!(
        part.stdout,
        "left by writes_then_fails_too\nseeded one\nseeded two\n"
    );
    project.assert_nothing_left();

    let error = ["--", "-Xc", "SELECT no_such_column FROM notes"];
    let exit = project.run(&args(&["psql", "writes_then_fails"], &error));
    assert_eq!(
        exit.code,
        Some(1),
        "psql's exit code is the command's\n{}",
        exit.stderr
    );
    assert!(exit.stderr.contains("no_such_column"), "{}", exit.stderr);
    project.assert_nothing_left();
}

#[test]
fn an_ambiguous_or_unknown_name_lists_the_kept_tests() {
    let Some(project) = probe() else { return };
    project.run(&[]).expect(100, &[KEPT_FIRST]);
    let candidates = [
        "\n  cargo pgtest psql keep-probe::probe writes_then_fails\n",
        "\n  cargo pgtest psql keep-probe::probe writes_then_fails_too\n",
    ];
    project
        .run(&args(&["psql", "writes_then"], NOTES))
        .expect(2, &["`writes_then` matches several kept tests"])
        .expect(2, &candidates);
    project
        .run(&args(&["psql", "nothing_like_it"], NOTES))
        .expect(2, &["no kept test matches `nothing_like_it`"])
        .expect(2, &candidates);
    project.assert_nothing_left();
}

#[test]
fn psql_without_a_name_opens_the_seeded_template_and_keep_failed_0_keeps_nothing() {
    let Some(project) = probe() else { return };
    let run = project.run(&["--keep-failed", "0"]);
    run.expect(100, &["1 passed, 2 failed"]);
    assert!(!run.stderr.contains("kept:"), "{}", run.stderr);
    project
        .run(&args(&["psql", "writes_then_fails"], NOTES))
        .expect(2, &["no failed test's database is kept under"]);

    let fresh = project.run(&args(&["psql"], NOTES));
    fresh.expect(0, &[]);
    assert_eq!(
        fresh.stdout, "seeded one\nseeded two\n",
        "what every test starts from"
    );
    project.assert_nothing_left();

    let run = project.run(&["--keep-failed", "1"]);
    run.expect(
        100,
        &["kept: cargo pgtest psql keep-probe::probe writes_then_fails"],
    );
    assert_eq!(run.stderr.matches("kept:").count(), 1, "{}", run.stderr);
}

/// Starts `cargo pgtest <args>` with stdout piped; returns it once `ready` says it is ready.
fn start(project: &Project, args: &[&str]) -> Child {
    project
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cargo-pgtest starts")
}

#[test]
fn serve_prints_a_url_another_process_uses_until_sigterm() {
    let Some(project) = probe() else { return };
    let mut serve = start(&project, &["serve"]);
    let mut stdout = BufReader::new(serve.stdout.take().unwrap());
    let mut url = String::new();
    stdout.read_line(&mut url).unwrap();
    assert!(
        url.starts_with("postgres://"),
        "the first line is the URL: {url:?}"
    );
    let mut exports = String::new();
    stdout.read_line(&mut exports).unwrap();
    assert!(
        exports.starts_with("export DATABASE_URL='postgres://"),
        "{exports}"
    );

    let other = Command::new("psql")
        .args([url.trim(), "-XAtc", "SELECT count(*) FROM notes"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("psql runs");
    assert_eq!(
        String::from_utf8_lossy(&other.stdout).trim(),
        "2",
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );

    kill(Pid::from_raw(serve.id() as i32), Signal::SIGTERM).unwrap();
    let status = serve.wait().unwrap();
    assert_eq!(status.code(), Some(0), "serve ends normally on SIGTERM");
    project.assert_nothing_left();
}

/// The psql that cargo-pgtest `parent` started, once it runs.
fn psql_child_of(parent: u32) -> i32 {
    let mut found = None;
    poll(Duration::from_secs(120), || {
        let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .map_err(|e| format!("cannot read the children of {parent}: {e}"))?;
        found = children.split_whitespace().find_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "psql").then(|| pid.parse().ok()).flatten()
        });
        found.map(drop).ok_or_else(|| "no psql yet".to_owned())
    })
    .unwrap();
    found.unwrap()
}

fn gone(pid: i32) -> Result<(), String> {
    match kill(Pid::from_raw(pid), None) {
        Err(_) => Ok(()),
        Ok(()) => Err(format!("process {pid} is still there")),
    }
}

#[test]
fn a_psql_stopped_by_sigterm_or_killed_with_cargo_pgtest_leaves_nothing_running() {
    let Some(project) = probe() else { return };
    let sleep = ["psql", "--", "-Xc", "SELECT pg_sleep(600)"];

    let mut psql = start(&project, &sleep);
    let child = psql_child_of(psql.id());
    kill(Pid::from_raw(psql.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(psql.wait().unwrap().code(), Some(143));
    poll(Duration::from_secs(10), || gone(child)).expect("psql is stopped with it");
    project.assert_nothing_left();

    let mut psql = start(&project, &sleep);
    let child = psql_child_of(psql.id());
    kill(Pid::from_raw(psql.id() as i32), Signal::SIGKILL).unwrap();
    psql.wait().unwrap();
    let parent = project.cluster_parent.path();
    poll(Duration::from_secs(10), || {
        let left = common::processes_mentioning(parent);
        left.is_empty()
            .then_some(())
            .ok_or_else(|| format!("still running: {left:?}"))
    })
    .expect("the server dies with cargo-pgtest");
    poll(Duration::from_secs(10), || gone(child)).expect("psql dies with cargo-pgtest");
    // The killed command's directory is removed by the next one, as after a killed run.
    project.run(&args(&["psql"], NOTES)).expect(0, &[]);
    project.assert_nothing_left();
}
