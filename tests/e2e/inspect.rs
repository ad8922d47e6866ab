//! After a red test, end to end on `fixtures/keep-probe` (two tests write a row and fail, one passes):
//! the run keeps the failed tests' databases, `cargo pgtest psql NAME` opens one of them, `psql` without a
//! name opens the migrated, seeded template, and `serve` runs the migrated cluster for other processes.
//! Every test checks that nothing is left behind, also when the command is stopped or killed.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::support::serve::Serving;
use crate::support::{self, poll, ports, psql, psql_answer, Project};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const KEPT_FIRST: &str = "kept: cargo pgtest psql keep-probe::probe writes_then_fails\n";
const KEPT_SECOND: &str = "kept: cargo pgtest psql keep-probe::probe writes_then_fails_too\n";
const NOTES: &[&str] = &["--", "-XAt", "-c", "SELECT body FROM notes ORDER BY body"];

fn args<'a>(first: &[&'a str], then: &[&'a str]) -> Vec<&'a str> {
    first.iter().chain(then).copied().collect()
}

fn psql_opens_a_failed_tests_kept_database() {
    let Some(project) = Project::with_own_target("keep-probe") else {
        return;
    };
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

fn an_ambiguous_or_unknown_name_lists_the_kept_tests() {
    let Some(project) = Project::with_own_target("keep-probe") else {
        return;
    };
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

fn psql_without_a_name_opens_the_seeded_template_and_keep_failed_0_keeps_nothing() {
    let Some(project) = Project::with_own_target("keep-probe") else {
        return;
    };
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

/// `cargo pgtest serve <extra>`, read up to its first `export` line (`DATABASE_URL`): serving goes on.
fn serve(project: &Project, extra: &[&str]) -> Serving {
    Serving::start(project, extra, "DATABASE_URL")
        .unwrap_or_else(|run| panic!("serve ended at once\n{}", run.all()))
}

fn serve_prints_a_url_another_process_uses_until_sigterm() {
    let Some(project) = Project::with_own_target("keep-probe") else {
        return;
    };
    let served = serve(&project, &[]);
    assert_eq!(psql_answer(&served.url, "SELECT count(*) FROM notes"), "2");
    served.stop(&project);
}

fn a_serve_killed_with_sigkill_leaves_no_server_and_its_directory_goes() {
    let Some(project) = Project::with_own_target("keep-probe") else {
        return;
    };
    let mut served = serve(&project, &[]);
    let url = served.url.clone();
    assert_eq!(psql_answer(&url, "SELECT count(*) FROM notes"), "2");
    let parent = project.cluster_parent.path();
    assert!(
        !support::processes_mentioning(parent).is_empty(),
        "the server runs in the project's run directory"
    );
    kill(Pid::from_raw(served.child.id() as i32), Signal::SIGKILL).unwrap();
    served.child.wait().unwrap();
    support::no_process_mentions(parent, Duration::from_secs(10))
        .expect("the server dies with cargo-pgtest");
    assert!(
        !psql(&url, "SELECT 1").status.success(),
        "nothing serves the URL any more"
    );
    // The killed command's directory is removed by the next one, as after a killed run.
    project.run(&args(&["psql"], NOTES)).expect(0, &[]);
    project.assert_nothing_left();
}

/// `serve --port`: the server binds the port itself, so one found free may be taken by another process
/// before it does; then serve fails to start, and it is tried again on another port.
fn serve_with_a_port_listens_on_the_loopback_address_with_a_password() {
    let Some(project) = Project::with_own_target("keep-probe") else {
        return;
    };
    let (served, port) = ports::on_a_free_port(|port| {
        match Serving::start(&project, &["--port", &port.to_string()], "DATABASE_URL") {
            Ok(served) => Ok((served, port)),
            Err(run) if ports::says_port_taken(&run.stderr) => Err(run.stderr),
            Err(run) => panic!("serve --port {port} ended at once\n{}", run.all()),
        }
    });
    let url = served.url.clone();
    assert!(url.contains(&format!("@127.0.0.1:{port}/")), "{url}");
    assert_eq!(psql_answer(&url, "SELECT count(*) FROM notes"), "2");
    assert_eq!(psql_answer(&url, "SHOW listen_addresses"), "127.0.0.1");
    let (user_and_password, rest) = url.split_once('@').unwrap();
    let (user, _) = user_and_password.split_at(user_and_password.rfind(':').unwrap());
    let wrong = psql(&format!("{user}:wrong@{rest}"), "SELECT 1");
    assert!(!wrong.status.success(), "a wrong password is refused");
    served.stop(&project);
}

fn a_shared_isolation_run_keeps_the_shared_database() {
    let Some(project) = Project::with_own_target("keep-probe") else {
        return;
    };
    project
        .run(&["--isolation", "shared"])
        .expect(100, &[KEPT_FIRST, KEPT_SECOND]);
    let both = project.run(&args(&["psql", "writes_then_fails_too"], NOTES));
    both.expect(
        0,
        &[
            "left by writes_then_fails\n",
            "left by writes_then_fails_too\n",
        ],
    );
    project.assert_nothing_left();
}

/// The children of `pid` whose command name is `name`.
fn children_named(pid: u32, name: &str) -> Vec<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
    children
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}

/// The psql that cargo-pgtest `parent` started, once it is connected (its server session waits idle).
fn psql_child_of(parent: u32) -> i32 {
    let mut found = None;
    poll(Duration::from_secs(120), || {
        let connected = children_named(parent, "postgres")
            .into_iter()
            .any(|server| {
                children_named(server, "postgres")
                    .into_iter()
                    .any(|session| {
                        std::fs::read(format!("/proc/{session}/cmdline")).is_ok_and(|line| {
                            let line = String::from_utf8_lossy(&line);
                            line.contains("pgtest_psql") && line.contains("idle")
                        })
                    })
            });
        found = children_named(parent, "psql")
            .first()
            .map(|&pid| pid as i32);
        found
            .filter(|_| connected)
            .map(drop)
            .ok_or_else(|| "psql is not connected yet".to_owned())
    })
    .unwrap();
    found.unwrap()
}

/// Starts `cargo pgtest psql` as a user at a terminal would: psql waits for input, which it reads from
/// the pipe returned (kept open until the caller drops it).
fn start_interactive_psql(project: &Project) -> (Child, std::process::ChildStdin, i32) {
    let mut psql = project
        .command(&["psql"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cargo-pgtest starts");
    let input = psql.stdin.take().unwrap();
    let child = psql_child_of(psql.id());
    (psql, input, child)
}

fn a_psql_stopped_by_sigterm_or_killed_with_cargo_pgtest_leaves_nothing_running() {
    let Some(project) = Project::with_own_target("keep-probe") else {
        return;
    };

    let (mut psql, input, child) = start_interactive_psql(&project);
    kill(Pid::from_raw(psql.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(psql.wait().unwrap().code(), Some(143));
    support::assert_gone(child, Duration::from_secs(10), "psql, stopped with it,");
    project.assert_nothing_left();
    drop(input);

    let (mut psql, input, child) = start_interactive_psql(&project);
    kill(Pid::from_raw(psql.id() as i32), Signal::SIGKILL).unwrap();
    psql.wait().unwrap();
    let parent = project.cluster_parent.path();
    support::no_process_mentions(parent, Duration::from_secs(10))
        .expect("the server dies with cargo-pgtest");
    // psql still has its input open: only cargo-pgtest's death can end it.
    support::assert_gone(
        child,
        Duration::from_secs(10),
        "psql, dying with cargo-pgtest,",
    );
    drop(input);
    // The killed command's directory is removed by the next one, as after a killed run.
    project.run(&args(&["psql"], NOTES)).expect(0, &[]);
    project.assert_nothing_left();
}

/// `fixtures/sqlx-kept`: the databases sqlx leaves for its failed `#[sqlx::test]`s are kept like the
/// others' and opened by test name; `--keep-failed` caps them too (sqlx's over the cap are dropped). One
/// test, in order. It builds into the shared target/fixtures (sqlx takes minutes to build anew), but keeps
/// its databases apart: any failing run there would replace them.
fn sqlx_tests_kept_databases_are_opened_by_name_and_capped() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::with_state_apart("sqlx-kept");
    let kept = |name: &str| format!("kept: cargo pgtest psql sqlx-kept::probe {name}\n");
    let run = project.run(&[]);
    run.expect(
        100,
        &[
            &kept("writes_then_fails"),
            &kept("writes_then_errs"),
            "1 passed, 2 failed",
        ],
    );
    project.assert_nothing_left();
    let notes = ["--", "-XAt", "-c", "SELECT body FROM notes"];
    let opened = project.run(&args(&["psql", "writes_then_fails"], &notes));
    opened.expect(0, &[]);
    assert_eq!(opened.stdout, "left by writes_then_fails\n");
    let opened = project.run(&args(&["psql", "then_errs"], &notes));
    opened.expect(0, &[]);
    assert_eq!(opened.stdout, "left by writes_then_errs\n");
    project.assert_nothing_left();

    let capped = project.run(&["--keep-failed", "1"]);
    capped.expect(100, &["1 passed, 2 failed"]);
    let kept_lines = capped.stderr.lines().filter(|l| l.starts_with("kept: "));
    assert_eq!(kept_lines.count(), 1, "{}", capped.stderr);
    let (one, other) = match capped.stderr.contains(&kept("writes_then_fails")) {
        true => ("writes_then_fails", "writes_then_errs"),
        false => ("writes_then_errs", "writes_then_fails"),
    };
    let candidates = format!("\n  cargo pgtest psql sqlx-kept::probe {one}\n");
    project
        .run(&args(&["psql", other], &notes))
        .expect(2, &["no kept test matches", &candidates]);
    project.assert_nothing_left();
}

crate::tests! {
    psql_opens_a_failed_tests_kept_database,
    an_ambiguous_or_unknown_name_lists_the_kept_tests,
    psql_without_a_name_opens_the_seeded_template_and_keep_failed_0_keeps_nothing,
    serve_prints_a_url_another_process_uses_until_sigterm,
    a_serve_killed_with_sigkill_leaves_no_server_and_its_directory_goes,
    serve_with_a_port_listens_on_the_loopback_address_with_a_password,
    a_shared_isolation_run_keeps_the_shared_database,
    a_psql_stopped_by_sigterm_or_killed_with_cargo_pgtest_leaves_nothing_running,
    sqlx_tests_kept_databases_are_opened_by_name_and_capped,
}
