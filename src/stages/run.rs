//! Stage 7, run: the runner's plan built from the earlier stages, the tests run against the cluster, and
//! their times passed to the test history (see `stages::history`).

use std::collections::BTreeMap;
use std::time::Instant;

use super::build::Built;
use super::context::{Run, Setup};
use super::error::Error;
use super::template::Ready;
use crate::cluster::Cluster;
use crate::runner::{self, events::Phase, exec::Limits, list::TestArgs};

pub(crate) async fn run_tests(
    run: &Run<'_>,
    setup: Setup,
    cluster: &mut Cluster,
    ready: Ready,
    built: Built,
    test_args: TestArgs,
) -> Result<(), Error> {
    let plan = plan(&setup, &ready, built, test_args);
    let started = Instant::now();
    let (taps, tapped) = runner::events::channel();
    let running = runner::run(plan, cluster, &ready.databases, run.cancel, &taps);
    let (result, passed) = super::history::forward(run, running, tapped).await;
    run.phase_finished(Phase::Tests, started.elapsed());
    super::history::settle(run, &setup.project.target_dir, &passed);
    ready.databases.close().await;
    result.map_err(Error::from)
}

/// What the runner is asked to do.
fn plan(setup: &Setup, ready: &Ready, built: Built, test_args: TestArgs) -> runner::Plan {
    let config = &setup.config;
    let project = &setup.project;
    let package_templates: BTreeMap<String, String> = config
        .package_database
        .iter()
        .map(|(package, index)| (package.clone(), ready.templates[*index].name.clone()))
        .collect();
    let runs_doc_tests = built.runs_doc_tests && !project.packages_with_lib.is_empty();
    let doc_tests = runs_doc_tests.then(|| runner::DocTests {
        cargo_args: built.cargo_args.for_doc_tests(),
        packages: project.packages_with_lib.clone(),
    });
    runner::Plan {
        binaries: built.binaries,
        args: test_args,
        isolation: config.isolation,
        jobs: config.jobs,
        limits: Limits {
            slow_after: config.slow_timeout,
            timeout: config.timeout,
        },
        database_env: config.database_env.clone(),
        templates: package_templates,
        doc_tests,
    }
}
