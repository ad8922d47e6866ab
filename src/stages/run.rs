//! Stage 7, run: the runner's settings resolved once from the earlier stages, the tests run against the
//! cluster, and their times passed to the test history (see `stages::history`).

use std::time::Instant;

use super::build::Built;
use super::context::{Run, Setup};
use super::error::Error;
use super::template::Ready;
use crate::cluster::Cluster;
use crate::events::{Event, Phase};
use crate::runner::{self, exec::Limits, selection::TestArgs};

/// What a run that ended with failed tests' databases kept leaves to save, once the tests phase is over.
pub(crate) struct ToKeep {
    target_dir: std::path::PathBuf,
    templates: Vec<crate::template::Template>,
    kept: Vec<crate::template::KeptDatabase>,
}

/// The runner's settings for this command line: every value resolved here, once.
pub(crate) fn settings(
    run: &Run<'_>,
    setup: &Setup,
    cluster: &Cluster,
    built: &Built,
    args: TestArgs,
) -> runner::Settings {
    let config = &setup.config;
    let pgtest = &run.cli.pgtest;
    let latest = super::history::latest(run, &setup.project.target_dir);
    let groups = groups_allowed(setup, cluster.is_existing(), &args);
    let read_only = latest
        .iter()
        .filter(|(_, latest)| groups && latest.read_only)
        .map(|(test, latest)| (test.clone(), latest.time))
        .collect();
    runner::Settings {
        past: latest
            .into_iter()
            .map(|(test, latest)| (test, latest.time))
            .collect(),
        read_only,
        try_groups: groups,
        args,
        isolation: config.isolation,
        jobs: config.jobs,
        limits: Limits {
            slow_after: config.slow_timeout,
            timeout: config.timeout,
        },
        on_failure: runner::OnFailure {
            retries: config.retries,
            fail_fast: pgtest.fail_fast,
        },
        partition: pgtest.partition,
        doc_tests: doc_tests(setup, built),
    }
}

/// Runs the tests; the kept databases come back to be saved after the tests phase (saving stops the
/// server, which the phase's memory figure must not see).
pub(crate) async fn run_tests(
    run: &Run<'_>,
    setup: Setup,
    cluster: &mut Cluster,
    ready: Ready,
    built: Built,
    settings: &runner::Settings,
) -> Result<Option<ToKeep>, Error> {
    // The phase holds the history's reading and writing too: every piece of a run's work is in one.
    let started = Instant::now();
    // This async function runs on the main thread (the runtime's `block_on`), as does the runner's
    // scheduling; the tasks it spawns run on the runtime's workers, which `threads` lists.
    let cpu_before = (crate::own_cpu::process(), crate::own_cpu::this_thread());
    let threads_before = crate::own_cpu::threads();
    let server = cluster.server_pid();
    let server_cpu = || server.and_then(crate::cluster::process_tree::cpu);
    let others_before = (server_cpu(), crate::own_cpu::children());
    let (taps, tapped) = run.events.channel_beside();
    let databases = &ready.databases;
    let running = runner::run(
        built.binaries,
        settings,
        cluster,
        databases,
        run.cancel,
        &taps,
    );
    let (result, seen) = super::history::forward(run, running, tapped).await;
    super::history::settle(run, &setup.project.target_dir, &seen);
    let threads = crate::own_cpu::used_since(&threads_before);
    run.send(Event::OwnCpu {
        process: crate::own_cpu::process().saturating_sub(cpu_before.0),
        main_thread: crate::own_cpu::this_thread().saturating_sub(cpu_before.1),
        threads: threads
            .into_iter()
            .map(|(name, cpu)| crate::events::ThreadUse { name, cpu })
            .collect(),
    });
    let server_used = server_cpu()
        .zip(others_before.0)
        .map(|(now, before)| now.saturating_sub(before));
    run.send(Event::TestsCpu {
        server: server_used,
        test_processes: crate::own_cpu::children().saturating_sub(others_before.1),
    });
    run.phase_finished(Phase::Tests, started.elapsed());
    databases.close().await;
    result?;
    let kept = databases.kept();
    // A stopped run tears down at once, as always: saving can wait for a run that ends by itself.
    let keep = !kept.is_empty() && cluster.is_running() && run.cancel.signal().is_none();
    Ok(keep.then(|| ToKeep {
        target_dir: setup.project.target_dir.clone(),
        templates: ready.templates,
        kept,
    }))
}

/// Whether the tests the history found read-only run in read-only groups: with `reuse` and
/// `group_read_only` on, on a cluster of our own (whose files the check reads). Not when every test's
/// output is asked for (`--nocapture`): libtest keeps a passing test's output to itself in a group.
fn groups_allowed(setup: &Setup, existing_server: bool, test_args: &TestArgs) -> bool {
    let config = &setup.config;
    config.reuse && config.group_read_only && !existing_server && !test_args.shows_passing_output()
}

/// Saves the cluster holding the failed tests' databases (see `stages::inspect`).
pub(crate) async fn keep(run: &Run<'_>, cluster: &mut Cluster, to_keep: ToKeep) {
    let ToKeep {
        target_dir,
        templates,
        kept,
    } = to_keep;
    super::inspect::keep(run, cluster, &target_dir, &templates, &kept).await;
}

/// `cargo test --doc`, when the run has doc tests to run (`list` asks the same).
fn doc_tests(setup: &Setup, built: &Built) -> Option<runner::DocTests> {
    let packages = &setup.project.packages_with_lib;
    (built.runs_doc_tests && !packages.is_empty()).then(|| runner::DocTests {
        cargo_args: built.cargo_args.for_doc_tests(),
        packages: packages.clone(),
    })
}
