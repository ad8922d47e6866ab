//! Stages 6 and 7 under `cargo pgtest nextest`: cargo-nextest builds and runs the tests, and every test
//! process it starts gets a database of its own through [`crate::nextest`]'s target runner and broker.
//! cargo-nextest is looked for before the cluster boots, so a missing one costs nothing.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::time::Instant;

use super::context::{Run, Setup};
use super::error::Error;
use super::template::Ready;
use crate::cli::Cli;
use crate::cluster::Cluster;
use crate::events::Phase;
use crate::nextest::broker::{Broker, Closed, Handout};
use crate::nextest::command;
use crate::nextest::pool::Pool;
use crate::nextest::protocol::Reply;
use crate::nextest::{self, NextestError};
use crate::template;

/// Under `cargo pgtest nextest`, fails unless cargo-nextest is installed; otherwise does nothing.
pub(crate) async fn check(run: &Run<'_>) -> Result<(), Error> {
    if run.cli.nextest().is_none() {
        return Ok(());
    }
    let version = command::version().await?;
    run.info(format!("the tests run under {version}"));
    if let Some(ignored) = ignored_options(run.cli) {
        run.warn(format!(
            "{ignored} apply to cargo-pgtest's own runner and are ignored under `cargo pgtest nextest`: \
             give nextest its own (a filter, `--retries`, a profile's `slow-timeout` and `junit` in \
             .config/nextest.toml)"
        ));
    }
    Ok(())
}

/// cargo-pgtest's options for its own runner that were given, which nextest's run does not use.
fn ignored_options(cli: &Cli) -> Option<String> {
    let pgtest = &cli.pgtest;
    let given: Vec<&str> = [
        ("TESTNAME", cli.filter.is_some()),
        ("test arguments after `--`", !cli.test_args.is_empty()),
        ("--isolation", pgtest.isolation.is_some()),
        ("--timeout", pgtest.timeout.is_some()),
        ("--junit", pgtest.junit.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    (!given.is_empty()).then(|| given.join(", "))
}

/// Runs `cargo nextest run` against the prepared templates; its failure is the run's.
pub(crate) async fn run_tests(
    run: &Run<'_>,
    setup: &Setup,
    cluster: &mut Cluster,
    ready: Ready,
    user_args: &[OsString],
) -> Result<(), Error> {
    if !ready.databases.snapshots().is_empty() {
        run.warn(
            "snapshots are not applied under `cargo pgtest nextest`: every test starts from the plain \
             template; run `cargo pgtest` for them"
                .to_owned(),
        );
    }
    let args = command::arguments(&run.cli.cargo, user_args)?;
    let runner_variable = command::runner_variable(&command::target_triple(user_args).await?);
    let exe = std::env::current_exe().map_err(NextestError::Exe)?;
    let runner = command::runner_value(&exe)?;
    let build_env = super::build::build_database(run, setup, cluster.endpoint(), &ready).await?;
    let all_templates = ready.all_templates();
    run.unless_stopped(template::warm_relation_caches(
        cluster.endpoint(),
        &all_templates,
    ))
    .await?;
    let databases_before = ready.databases.count().await.ok();
    let handout = handout(setup, &ready, &build_env);
    let broker =
        Broker::start(&cluster.info.run_dir, handout).map_err(|source| NextestError::Socket {
            dir: cluster.info.run_dir.display().to_string(),
            source,
        })?;
    let mut nextest = tokio::process::Command::new(command::cargo());
    nextest
        .args(&args)
        .envs(build_env)
        .env(&runner_variable, runner)
        .env(nextest::SOCKET_ENV, broker.socket())
        .kill_on_drop(true);
    // SAFETY: the hook only makes async-signal-safe system calls. SIGTERM lets nextest stop its tests.
    unsafe { nextest.pre_exec(crate::cluster::server::die_with_parent(libc::SIGTERM)) };
    let started = Instant::now();
    let status = match nextest.spawn() {
        Ok(mut child) => nextest::wait(&mut child, run.cancel.clone()).await,
        Err(source) => Err(NextestError::Spawn { source }),
    };
    let closed = broker.stop().await;
    run.phase_finished(Phase::Tests, started.elapsed());
    report(run, &ready, databases_before, closed).await;
    ready.databases.close().await;
    if let Some(signal) = run.cancel.signal() {
        return Err(Error::Interrupted(signal));
    }
    match status? {
        status if status.success() => Ok(()),
        status => Err(NextestError::Failed { status }.into()),
    }
}

/// What the broker hands out: clones of each package's template, started ahead now.
fn handout(setup: &Setup, ready: &Ready, build_env: &[(String, String)]) -> Handout {
    let databases = &ready.databases;
    let pool = Pool::new(databases.clone(), setup.config.jobs);
    let default_template = ready.first_template();
    let templates = databases.templates().values();
    let used: BTreeSet<&String> = templates.chain([&default_template]).collect();
    for template in used {
        pool.fill(template);
    }
    // The build's database must not leak into the tests: what they see is what cargo-pgtest was given.
    let restore = build_env
        .iter()
        .map(|(key, _)| match std::env::var(key) {
            Ok(value) => Reply::Env(key.clone(), value),
            Err(_) => Reply::Unset(key.clone()),
        })
        .collect();
    Handout { pool, restore }
}

/// How the databases were handed out, and the leak check: every test's database is gone again.
async fn report(run: &Run<'_>, ready: &Ready, before: Option<i64>, closed: Closed) {
    let (from_ready, inline) = closed.counts;
    run.info(format!(
        "test databases: {from_ready} from clones made ahead, {inline} cloned while the test waited"
    ));
    let held_at_stop = closed.held_at_stop;
    if held_at_stop > 0 {
        run.warn(format!(
            "{held_at_stop} test databases were still held when nextest ended (a test left a process \
             running?); they were dropped"
        ));
    }
    if let (Some(before), Ok(after)) = (before, ready.databases.count().await) {
        run.info(format!(
            "cluster databases before the tests: {before}, after: {after}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        crate::cli::parse_from(["cargo", "pgtest"].iter().chain(args).copied()).unwrap()
    }

    #[test]
    fn options_only_cargo_pgtests_runner_uses_are_named() {
        assert_eq!(ignored_options(&cli(&["--jobs", "2", "nextest"])), None);
        assert_eq!(
            ignored_options(&cli(&[
                "--timeout",
                "5",
                "--junit",
                "r.xml",
                "nextest",
                "-E",
                "all()"
            ]))
            .as_deref(),
            Some("--timeout, --junit")
        );
    }
}
