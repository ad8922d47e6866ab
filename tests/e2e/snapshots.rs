//! Named snapshots through the cluster cache, driven through the real binary on `fixtures/snapshots`: a
//! fixture snapshot comes back with the cached cluster, and an edit of its SQL file gives another key, so
//! the next run builds the snapshot afresh and its tests see the edit. (What the tests see in one run is
//! the fixture's own expect.toml.)

use std::fs;

use crate::support::Project;

/// Runs the catalog tests; returns whether the cluster came from the cache, and what catalog::first saw.
fn run_catalog(project: &Project) -> (bool, String) {
    let run = project.run(&["--json", "-", "catalog::"]);
    run.expect(0, &["2 passed, 0 failed"]);
    let hit = run
        .events()
        .into_iter()
        .find(|event| event["type"] == "template_cache")
        .unwrap_or_else(|| panic!("no template_cache event in\n{}", run.stdout))["hit"]
        == true;
    let seen = fs::read_to_string(project.probe_dir.join("catalog_first")).unwrap();
    (hit, seen.trim().to_owned())
}

fn a_fixture_snapshot_is_cached_with_the_cluster_and_an_edit_rebuilds_it() {
    let Some(project) = Project::with_own_target("snapshots") else {
        return;
    };
    assert_eq!(
        run_catalog(&project),
        (false, "catalog=3 template=1".into())
    );
    assert_eq!(
        run_catalog(&project),
        (true, "catalog=3 template=1".into()),
        "the snapshot comes back with the cached cluster"
    );
    let seed = project.dir.join("seed/catalog.sql");
    let sql =
        fs::read_to_string(&seed).unwrap() + "INSERT INTO items VALUES ('catalog', 'one more');\n";
    fs::write(&seed, sql).unwrap();
    assert_eq!(
        run_catalog(&project),
        (false, "catalog=4 template=1".into()),
        "an edited snapshot file is another cluster"
    );
}

crate::tests! {
    a_fixture_snapshot_is_cached_with_the_cluster_and_an_edit_rebuilds_it,
}
