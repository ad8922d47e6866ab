//! Extra databases (`[package.metadata.pgtest.databases.NAME]`) outside a test run, on
//! `fixtures/two-databases` (extras `audit`, seeded, and `stats` with `env = "STATS_URL"`): `serve` prints
//! each one's variable beside the main one's, and the extra templates are cached with the main one, an
//! extra database's migrations in the cache key; a `from_test` snapshot's builder gets them too. The runs
//! themselves are the fixture's own expect.toml.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::Project;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The project with a target directory (so a cache) of its own; serving builds nothing.
fn project() -> Option<Project> {
    if !common::postgres_available() {
        return None;
    }
    let mut project = Project::copy_of("two-databases");
    project.target_dir = Some(project.dir.join("target"));
    Some(project)
}

/// Starts `cargo pgtest serve`; returns it and the variables of its `export` lines, read up to the last
/// one (the extra databases' come last).
fn serve(project: &Project) -> (Child, BTreeMap<String, String>) {
    let mut serve = project
        .command(&["serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cargo-pgtest starts");
    let mut stdout = BufReader::new(serve.stdout.take().unwrap());
    let mut exports = BTreeMap::new();
    for _ in 0..20 {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some((name, value)) = line
            .trim()
            .strip_prefix("export ")
            .and_then(|e| e.split_once('='))
        {
            exports.insert(name.to_owned(), value.trim_matches('\'').to_owned());
        }
        if exports.contains_key("STATS_URL") {
            break;
        }
    }
    (serve, exports)
}

fn stop(mut serve: Child, project: &Project) {
    kill(Pid::from_raw(serve.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(
        serve.wait().unwrap().code(),
        Some(0),
        "serve ends on SIGTERM"
    );
    project.assert_nothing_left();
}

/// `psql URL -XAtc SQL` from another process.
fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args([url, "-XAtc", sql])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn serve_exports_every_extra_database_and_the_cache_follows_their_migrations() {
    let Some(project) = project() else { return };
    let (server, exports) = serve(&project);
    let names: Vec<&str> = exports.keys().map(String::as_str).collect();
    for wanted in ["DATABASE_URL", "AUDIT_DATABASE_URL", "STATS_URL"] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    let audit = &exports["AUDIT_DATABASE_URL"];
    assert_eq!(psql(audit, "SELECT entry FROM audit_log"), "seeded");
    assert_eq!(
        psql(&exports["STATS_URL"], "SELECT count(*) FROM counters"),
        "0"
    );
    assert_eq!(psql(audit, "SELECT to_regclass('orders') IS NULL"), "t");
    stop(server, &project);

    // A new migration of the extra database: the cached cluster no longer fits, the next one has it.
    std::fs::write(
        project.dir.join("audit/migrations/20240102000000_more.sql"),
        "CREATE TABLE audit_more (id int);",
    )
    .unwrap();
    let (server, exports) = serve(&project);
    let audit = &exports["AUDIT_DATABASE_URL"];
    assert_eq!(
        psql(audit, "SELECT to_regclass('audit_more') IS NOT NULL"),
        "t"
    );
    stop(server, &project);
}

#[test]
fn a_kept_failed_tests_extra_databases_are_kept_with_it() {
    let Some(project) = project() else { return };
    let run = project.run_with(&["first"], &[("MODE", "fail")]);
    run.expect(100, &["kept: cargo pgtest psql two-databases::three first"]);
    // psql opens the kept main database, with AUDIT_DATABASE_URL naming its kept audit copy.
    let audit = project.run(&[
        "psql",
        "first",
        "--",
        "-XAtq",
        "-c",
        "\\getenv url AUDIT_DATABASE_URL",
        "-c",
        "\\c :url",
        "-c",
        "SELECT string_agg(entry, ',' ORDER BY id) FROM audit_log",
    ]);
    audit.expect(0, &[]);
    assert_eq!(audit.stdout.trim(), "seeded,first", "{}", audit.stderr);
    project.assert_nothing_left();
}

#[test]
fn a_snapshot_builder_gets_the_extra_databases_too() {
    let Some(project) = project() else { return };
    // `first` builds a snapshot that `second` starts from; both talk to all three databases (MODE=shared
    // skips the checks of rows, which the snapshot carries over from `first`).
    project.append_to_manifest(
        "\n[package.metadata.pgtest.snapshots.after_first]\nfrom_test = \"first\"\ntests = [\"second\"]\n",
    );
    let run = project.run_with(&["-v", "--", "first", "second"], &[("MODE", "shared")]);
    run.expect(0, &["2 passed, 0 failed"]);
    let list = project.run(&["list", "--", "first", "second"]);
    list.expect(
        0,
        &[
            "two-databases::three first (builds snapshot after_first)",
            "two-databases::three second (from snapshot after_first)",
        ],
    );
    project.assert_nothing_left();
}
