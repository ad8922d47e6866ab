//! Extra databases (`[package.metadata.pgtest.databases.NAME]`) outside a test run, on
//! `fixtures/two-databases` (extras `audit`, seeded, and `stats` with `env = "STATS_URL"`): `serve` prints
//! each one's variable beside the main one's, and the extra templates are cached with the main one, an
//! extra database's migrations in the cache key; a `from_test` snapshot's builder gets them too. The runs
//! themselves are the fixture's own expect.toml.

use crate::support::serve::Serving;
use crate::support::{psql_answer, Project};

/// `cargo pgtest serve`, read up to its last `export` line, the extra databases' (`STATS_URL`).
fn serve(project: &Project) -> Serving {
    Serving::start(project, &[], "STATS_URL")
        .unwrap_or_else(|run| panic!("serve ended at once\n{}", run.all()))
}

fn serve_exports_every_extra_database_and_the_cache_follows_their_migrations() {
    let Some(project) = Project::with_own_target("two-databases") else {
        return;
    };
    let served = serve(&project);
    let exports = &served.exports;
    let names: Vec<&str> = exports.keys().map(String::as_str).collect();
    for wanted in ["DATABASE_URL", "AUDIT_DATABASE_URL", "STATS_URL"] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    let audit = &exports["AUDIT_DATABASE_URL"];
    assert_eq!(psql_answer(audit, "SELECT entry FROM audit_log"), "seeded");
    assert_eq!(
        psql_answer(&exports["STATS_URL"], "SELECT count(*) FROM counters"),
        "0"
    );
    assert_eq!(
        psql_answer(audit, "SELECT to_regclass('orders') IS NULL"),
        "t"
    );
    served.stop(&project);

    // A new migration of the extra database: the cached cluster no longer fits, the next one has it.
    std::fs::write(
        project.dir.join("audit/migrations/20240102000000_more.sql"),
        "CREATE TABLE audit_more (id int);",
    )
    .unwrap();
    let served = serve(&project);
    let audit = &served.exports["AUDIT_DATABASE_URL"];
    assert_eq!(
        psql_answer(audit, "SELECT to_regclass('audit_more') IS NOT NULL"),
        "t"
    );
    served.stop(&project);
}

fn a_kept_failed_tests_extra_databases_are_kept_with_it() {
    let Some(project) = Project::with_own_target("two-databases") else {
        return;
    };
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

fn a_snapshot_builder_gets_the_extra_databases_too() {
    let Some(project) = Project::with_own_target("two-databases") else {
        return;
    };
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

crate::tests! {
    serve_exports_every_extra_database_and_the_cache_follows_their_migrations,
    a_kept_failed_tests_extra_databases_are_kept_with_it,
    a_snapshot_builder_gets_the_extra_databases_too,
}
