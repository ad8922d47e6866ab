//! The phases a run reports cover all of its work: `cargo metadata`, which runs before the cluster boots,
//! is counted in the build phase (with the build's database and the warm-up beside the build).

use std::os::unix::fs::PermissionsExt;

use crate::support::{self, Project};

/// A `cargo` that takes four seconds longer over `cargo metadata` and is the real one otherwise.
const SLOW_METADATA: &str =
    "#!/bin/sh\n[ \"$1\" = metadata ] && sleep 4\nexec \"$REAL_CARGO\" \"$@\"\n";

fn cargo_metadata_is_counted_in_the_build_phase() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    let cargo = project.probe_dir.join("slow-metadata-cargo");
    std::fs::write(&cargo, SLOW_METADATA).unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let real = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = project.command(&["--json", "-", "passes"]);
    command.env("CARGO", &cargo).env("REAL_CARGO", real);
    let run = support::Run::from(command.output().expect("cargo-pgtest runs"));
    run.expect(0, &[]);
    let build = run
        .events()
        .into_iter()
        .find(|e| e["type"] == "phase_finished" && e["phase"] == "build")
        .and_then(|e| e["seconds"].as_f64())
        .expect("a build phase_finished event");
    assert!(
        build >= 4.0,
        "the build phase ({build:.3} s) leaves out the four seconds of `cargo metadata`"
    );
    project.assert_nothing_left();
}

crate::tests! {
    cargo_metadata_is_counted_in_the_build_phase,
}
