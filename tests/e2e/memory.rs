//! The memory watch end to end, on `fixtures/fault-probe`: the cluster line and the `cluster_memory` event
//! count the data directory (RAM on tmpfs) beside the server processes, and that figure grows with the
//! template.

use crate::support::{self, Project};

/// The `cluster_memory` event of a `--json -` run of the fixture's `passes` test.
fn memory_of(project: &Project) -> serde_json::Value {
    let run = project.run(&["--json", "-", "--no-cache", "passes"]);
    run.expect(0, &["1 passed, 0 failed", "peak RAM", "+ data directory"]);
    let memory = run
        .events()
        .into_iter()
        .find(|e| e["type"] == "cluster_memory")
        .unwrap_or_else(|| panic!("no cluster_memory event in\n{}", run.stdout));
    let figure = |name: &str| memory[name].as_u64().unwrap();
    assert_eq!(
        figure("ram_peak_bytes"),
        figure("processes_bytes") + figure("data_dir_bytes"),
        "{memory}"
    );
    // `peak_bytes` keeps its meaning: the processes' own peak.
    assert!(
        figure("peak_bytes") >= figure("processes_bytes"),
        "{memory}"
    );
    assert!(figure("processes_bytes") > 0, "{memory}");
    memory
}

fn the_data_directory_counts_and_grows_with_the_template() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    let plain = memory_of(&project)["data_dir_bytes"].as_u64().unwrap();
    // A cluster after initdb alone holds tens of megabytes.
    assert!(plain > 20 << 20, "{plain}");

    // About 60 MB of rows in the template: it and every clone of it hold them. The walk of the data
    // directory lags a little, so a short-lived clone may go uncounted, but the template never is.
    std::fs::create_dir_all(project.dir.join("seed")).unwrap();
    std::fs::write(
        project.dir.join("seed/big.sql"),
        "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 30) AS filler FROM generate_series(1, 60000) g;\n",
    )
    .unwrap();
    project.append_to_manifest("\n[package.metadata.pgtest]\nfixtures = [\"seed/big.sql\"]\n");
    let big = memory_of(&project)["data_dir_bytes"].as_u64().unwrap();
    assert!(
        big > plain + (40 << 20),
        "plain {plain}, with the big table {big}"
    );
}

crate::tests! {
    the_data_directory_counts_and_grows_with_the_template,
}
