//! The cache of migrated clusters under the target directory, driven through the real binary on
//! `fixtures/cache-probe`: a second run with nothing changed uses the cached cluster and runs no
//! migration; a changed migration or fixture file builds (and stores) it afresh; `--no-cache` neither
//! reads nor writes it; two runs filling an empty cache at once both pass and leave one whole entry;
//! unlogged tables keep their seeded rows through the cache.

use std::fs;

use crate::support::{self, Project, Run};

/// Runs once, expects success, and returns the `template_cache` event.
fn cache_event(run: Run) -> serde_json::Value {
    run.expect(0, &["2 passed, 0 failed"]);
    run.events()
        .into_iter()
        .find(|event| event["type"] == "template_cache")
        .unwrap_or_else(|| panic!("no template_cache event in\n{}", run.stdout))
}

fn run(project: &Project, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "-"];
    args.extend(extra);
    cache_event(project.run(&args))
}

/// The entries of the project's cache.
fn entries(project: &Project) -> Vec<String> {
    support::entries(&project.dir.join("target/pgtest/cache"))
}

fn an_unchanged_project_reuses_the_cluster_and_any_change_rebuilds_it() {
    let Some(probe) = Project::with_own_target("cache-probe") else {
        return;
    };
    let first = run(&probe, &[]);
    assert_eq!(
        (first["hit"].as_bool(), first["stored"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(entries(&probe).len(), 1);

    assert_eq!(
        run(&probe, &[])["hit"],
        true,
        "nothing changed: the cached cluster is used"
    );

    probe.append(
        "migrations/20240101000000_create_probe.sql",
        "CREATE INDEX probe_id ON probe (id);\n",
    );
    assert_eq!(
        run(&probe, &[])["hit"],
        false,
        "a changed migration rebuilds the cluster"
    );
    assert_eq!(run(&probe, &[])["hit"], true);

    probe.append("seed/rows.sql", "INSERT INTO probe VALUES (2);\n");
    assert_eq!(
        run(&probe, &[])["hit"],
        false,
        "a changed fixture rebuilds the cluster"
    );

    let more = probe.dir.join("migrations/20240102000000_more.sql");
    fs::write(more, "CREATE TABLE more (id int);\n").unwrap();
    assert_eq!(
        run(&probe, &[])["hit"],
        false,
        "a new migration rebuilds the cluster"
    );
    assert_eq!(run(&probe, &[])["hit"], true);
    assert_eq!(
        entries(&probe).len(),
        4,
        "one entry per state, the oldest pruned beyond four"
    );

    let before = entries(&probe);
    let off = run(&probe, &["--no-cache"]);
    assert_eq!(
        (off["hit"].as_bool(), off["stored"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(entries(&probe), before, "--no-cache writes nothing");
    probe.assert_nothing_left();
}

/// A cluster whose migrations make unlogged tables is cached from a clean stop (a snapshot of the running
/// cluster would come back through recovery, which empties them): their seeded rows are there when the
/// cluster comes from the cache.
fn unlogged_tables_keep_their_seed_in_the_cache() {
    let Some(probe) = Project::with_own_target("cache-probe") else {
        return;
    };
    probe.append(
        "migrations/20240101000000_create_probe.sql",
        "CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY);\n",
    );
    probe.append("seed/rows.sql", "INSERT INTO scratch VALUES (7);\n");
    let asked = [("PROBE_UNLOGGED", "1")];
    let first = cache_event(probe.run_with(&["--json", "-"], &asked));
    assert_eq!(
        (first["hit"].as_bool(), first["stored"].as_bool()),
        (Some(false), Some(true))
    );
    let second = cache_event(probe.run_with(&["--json", "-"], &asked));
    assert_eq!(second["hit"], true, "the second run starts from the cache");
    probe.assert_nothing_left();
}

fn two_runs_filling_an_empty_cache_at_once_both_pass() {
    let Some(probe) = Project::with_own_target("cache-probe") else {
        return;
    };
    // Build once with the cache off, so both runs reach the cache at about the same time.
    run(&probe, &["--no-cache"]);
    let both = (0..2).map(|_| probe.command(&["--json", "-"]));
    for run in support::run_at_once(both) {
        cache_event(run);
    }
    let stored = entries(&probe);
    assert_eq!(
        stored.len(),
        1,
        "one whole entry, no half-written staging left: {stored:?}"
    );
    assert_eq!(run(&probe, &[])["hit"], true);
    probe.assert_nothing_left();
}

fn a_cached_cluster_that_does_not_start_is_rebuilt_and_replaced() {
    let Some(probe) = Project::with_own_target("cache-probe") else {
        return;
    };
    run(&probe, &[]);
    let stored = entries(&probe);
    assert_eq!(stored.len(), 1);
    // Overwrite the entry with a well-formed pack of an empty directory, with the manifest it had.
    let key = stored[0].trim_end_matches(".pack");
    let cache = cargo_pgtest::cache::Store::in_target_dir(&probe.dir.join("target"));
    let manifest = cache.get(key).expect("the entry reads back").manifest;
    let empty = tempfile::tempdir().unwrap();
    let pack = cargo_pgtest::cache::Pack::read(empty.path(), &|_| true).unwrap();
    cache.put(key, &manifest, &pack).unwrap();

    let rebuilt = probe.run(&["--json", "-"]);
    rebuilt.expect(
        0,
        &["the cached cluster could not be used", "building it afresh"],
    );
    let event = cache_event(rebuilt);
    assert_eq!(
        (event["hit"].as_bool(), event["stored"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(
        run(&probe, &[])["hit"],
        true,
        "the bad entry was replaced by a good one"
    );
    probe.assert_nothing_left();
}

crate::tests! {
    an_unchanged_project_reuses_the_cluster_and_any_change_rebuilds_it,
    unlogged_tables_keep_their_seed_in_the_cache,
    two_runs_filling_an_empty_cache_at_once_both_pass,
    a_cached_cluster_that_does_not_start_is_rebuilt_and_replaced,
}
