//! Running the tests: list every binary's tests, choose the ones asked for, compute the [`schedule`] (what
//! `cargo pgtest list` prints), and execute it: snapshot builders, batches of tests run together, read-only
//! groups, the tests alone (one process and one database each), doc tests last. Emits events only.
//!
//! The run's settings are resolved once ([`Settings`]) and every part borrows them through [`Runner`];
//! every database comes from the run's one owner, [`TestDatabases`]. Every child process is started and
//! watched by [`supervisor::supervise`]; every test result becomes an event in [`dispatch::Dispatcher`]
//! only.

mod dispatch;
mod doc;
pub(crate) mod exec;
mod gateway;
mod isolated;
mod libtest;
pub(crate) mod list_command;
pub(crate) mod partition;
mod read_only;
mod retry;
pub(crate) mod schedule;
pub(crate) mod selection;
pub(crate) mod shared;
mod snapshot_builders;
mod sqlx_kept;
mod supervisor;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use crate::cargo::TestBinary;
use crate::cluster::Cluster;
use crate::config::Isolation;
use crate::events::{self, DatabaseKind, EventSender, TestId};
use crate::sqlx::gateway::Gateway;
use crate::template::{Obtain, Return, TestDatabases};
use dispatch::Dispatcher;
pub(crate) use dispatch::OnFailure;
use exec::Limits;
use schedule::{Alone, Batch, BatchKind, Builder, Group, Schedule};
use selection::{TestArgs, TestCase};

#[derive(Debug, thiserror::Error)]
pub(crate) enum RunnerError {
    #[error("could not run {}: {source}", binary.display())]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("could not list the tests of {binary} ({status}): {stderr}")]
    List {
        binary: String,
        status: String,
        stderr: String,
    },
    #[error("could not create the shared database: {0}")]
    SharedDatabase(String),
    #[error(transparent)]
    Snapshots(#[from] crate::template::snapshots::SnapshotsError),
}

/// The run's settings, resolved once from the command line and the configuration; read-only, borrowed by
/// every part of the runner. What concerns databases is the [`TestDatabases`] owner's.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The arguments after `--` (filters, `--exact`, `--ignored`, …).
    pub(crate) args: TestArgs,
    pub(crate) isolation: Isolation,
    pub(crate) jobs: usize,
    pub(crate) limits: Limits,
    /// What a failure leads to: `--retries` (the `retries` key) and `--fail-fast`.
    pub(crate) on_failure: OnFailure,
    /// `--partition`: only this shard's tests run.
    pub(crate) partition: Option<partition::Partition>,
    pub(crate) doc_tests: Option<DocTests>,
    /// The tests that read only in their latest passing run, with that run's time: they run in read-only
    /// groups. Empty when groups are off.
    pub(crate) read_only: BTreeMap<TestId, Duration>,
}

impl Settings {
    /// The doc tests this run's shard runs: all of them on the first shard of a partition.
    pub(crate) fn doc_tests(&self) -> Option<&DocTests> {
        let runs_them = self.partition.is_none_or(|p| p.runs_doc_tests());
        self.doc_tests.as_ref().filter(|_| runs_them)
    }
}

/// `cargo test --doc` for the packages that have a library.
#[derive(Debug)]
pub(crate) struct DocTests {
    /// cargo's arguments choosing packages, features and profile; a `--color` among them (with its value)
    /// is replaced by the runner's own.
    pub(crate) cargo_args: Vec<String>,
    pub(crate) packages: Vec<String>,
}

impl DocTests {
    /// The package a doc test's crate belongs to (crate names spell a package's `-` as `_`).
    pub(crate) fn package_of_crate(&self, crate_name: &str) -> String {
        self.packages
            .iter()
            .find(|p| p.replace('-', "_") == crate_name)
            .cloned()
            .unwrap_or_else(|| crate_name.to_owned())
    }
}

/// What `cargo pgtest list` prints for `binaries`: the schedule a run of the same command line executes,
/// test by test in its order. None if stopped first.
pub(crate) async fn list(
    binaries: Vec<TestBinary>,
    settings: &Settings,
    databases: &TestDatabases,
    cancel: &Cancel,
    events: &EventSender,
) -> Result<Option<Vec<schedule::Entry>>, RunnerError> {
    let dispatch = Dispatcher::new(events.clone());
    let runner = Runner {
        settings,
        databases,
        cancel,
        dispatch: &dispatch,
    };
    let schedule = runner.plan(binaries).await?;
    Ok(schedule.map(|schedule| schedule.entries(databases.snapshots())))
}

/// Runs the tests of `binaries` against the cluster, sending events; returns once every test has ended,
/// with the failed tests' databases left in the cluster (see [`TestDatabases::kept`]). Every test chosen
/// ends in one result: the ones never reached are NOT RUN, with the reason the run stopped.
pub(crate) async fn run(
    binaries: Vec<TestBinary>,
    settings: &Settings,
    cluster: &mut Cluster,
    databases: &TestDatabases,
    cancel: &Cancel,
    events: &EventSender,
) -> Result<(), RunnerError> {
    let dispatch = Dispatcher::new(events.clone()).on_failure(settings.on_failure);
    let runner = Runner {
        settings,
        databases,
        cancel,
        dispatch: &dispatch,
    };
    let result = runner.run(binaries, cluster).await;
    dispatch.close(|| match &result {
        Err(error) => error.to_string(),
        Ok(()) => dispatch
            .stop_reason()
            .unwrap_or_else(|| stop_reason(cancel, cluster)),
    });
    result
}

/// Why a run stopped before its end.
fn stop_reason(cancel: &Cancel, cluster: &mut Cluster) -> String {
    match cancel.signal() {
        Some(signal) => format!("the run was stopped by {signal}"),
        None if !cluster.is_running() => format!(
            "the PostgreSQL server died during the run; the end of its log:\n{}",
            cluster.log_tail(15)
        ),
        None => "the run ended before it got to it".to_owned(),
    }
}

/// How the databases of shared-isolation runs are named (then the package's name).
const SHARED_PREFIX: &str = "pgtest_shared_";

/// What every part of a run borrows: its settings, its databases, the stop request and the dispatcher.
#[derive(Clone, Copy)]
pub(crate) struct Runner<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) databases: &'a TestDatabases,
    pub(crate) cancel: &'a Cancel,
    pub(crate) dispatch: &'a Dispatcher,
}

impl Runner<'_> {
    /// Lists every binary, applies the arguments and the partition, and computes the schedule: what `list`
    /// prints and a run executes. None if the run was stopped while listing.
    async fn plan(self, binaries: Vec<TestBinary>) -> Result<Option<Schedule>, RunnerError> {
        let (settings, databases) = (self.settings, self.databases);
        let mut listings = Vec::with_capacity(binaries.len());
        for binary in binaries {
            let binary = Arc::new(binary);
            let Some((all, ignored)) = exec::list(&binary, self.cancel, self.dispatch).await?
            else {
                return Ok(None);
            };
            listings.push(selection::Listing {
                binary,
                all,
                ignored,
            });
        }
        let chosen = selection::choose(&listings, &settings.args, settings.partition);
        // The `#[sqlx::test]` functions of each package a chosen test comes from, read from its sources
        // (under shared isolation every test runs with its binary's others anyway).
        let packages: BTreeSet<PathBuf> = match settings.isolation {
            Isolation::Test => chosen.run.iter().map(|c| c.binary.cwd.clone()).collect(),
            Isolation::Shared => BTreeSet::new(),
        };
        let scans: BTreeMap<PathBuf, BTreeSet<String>> = packages
            .into_iter()
            .map(|cwd| {
                let tests = crate::sqlx::scan::scan(&cwd).tests;
                (cwd, tests)
            })
            .collect();
        let self_isolating = |case: &TestCase| {
            let known = scans.get(&case.binary.cwd);
            known.is_some_and(|known| crate::sqlx::scan::is_self_isolating(&case.name, known))
        };
        let inputs = schedule::Inputs {
            isolation: settings.isolation,
            snapshots: databases.snapshots(),
            read_only: &settings.read_only,
            self_isolating: &self_isolating,
            jobs: settings.jobs,
        };
        Ok(Some(schedule::compute(chosen, &inputs)?))
    }

    async fn run(
        self,
        binaries: Vec<TestBinary>,
        cluster: &mut Cluster,
    ) -> Result<(), RunnerError> {
        let Some(schedule) = self.plan(binaries).await? else {
            // Stopped while listing: nothing was chosen, nothing is left to report.
            return Ok(());
        };
        let shared = self.settings.isolation == Isolation::Shared;
        let (jobs, dispatch) = (self.settings.jobs, self.dispatch);
        dispatch.run_started(schedule.tests(), schedule.filtered_out, jobs, shared);
        for case in &schedule.ignored {
            dispatch.ignored(case.id());
        }
        if let Some(warning) = schedule.snapshot_warning.clone() {
            dispatch.warning(warning);
        }
        let mut steps = RunSteps {
            runner: self,
            own_databases: !schedule.groups.is_empty() || !schedule.alone.is_empty(),
            cluster,
            databases_before: None,
        };
        schedule::drive(schedule, &mut steps).await?;
        let cluster = steps.cluster;
        if let Some(doc) = self.settings.doc_tests() {
            if !self.must_stop(cluster) {
                self.run_doc_tests(doc).await?;
            }
        }
        Ok(())
    }

    /// Whether the run must stop starting tests (stopped, the server gone, or a failure under `--fail-fast`).
    fn must_stop(&self, cluster: &mut Cluster) -> bool {
        self.cancel.signal().is_some()
            || !cluster.is_running()
            || self.dispatch.stop_reason().is_some()
    }

    /// Makes `name`, a copy of `package`'s template that several tests share.
    async fn shared_database(&self, package: &str, name: &str) -> Result<(), RunnerError> {
        let template = self.databases.template_for(package, None);
        let lease = self.databases.lease(&template, name, Obtain::Fresh).await;
        let made = lease.map_err(|e| crate::template::server_message(&e));
        made.map(drop).map_err(RunnerError::SharedDatabase)
    }

    /// `cargo test --doc` against a database of its own, copied from the first package's template.
    async fn run_doc_tests(&self, doc: &DocTests) -> Result<(), RunnerError> {
        let package = doc.packages.first().cloned().unwrap_or_default();
        let database = format!("pgtest_doc_{}", sanitize(&package));
        self.shared_database(&package, &database).await?;
        let env = self.databases.env(&database);
        let cargo_args = doc::cargo_args(doc, &self.settings.args, self.settings.jobs);
        let package_of_crate = |crate_name: &str| doc.package_of_crate(crate_name);
        let (limits, cancel) = (self.settings.limits, self.cancel.clone());
        let jobs = self.settings.jobs;
        let number = self
            .dispatch
            .batch_started(events::BatchKind::Doc, "doc-tests", 0, jobs);
        let began = Instant::now();
        let ran = doc::run(
            cargo_args,
            &env,
            limits,
            package_of_crate,
            cancel,
            self.dispatch,
        )
        .await;
        self.dispatch.batch_finished(number, began.elapsed());
        ran
    }
}

/// The runner's real steps, in the order [`schedule::drive`] calls them.
struct RunSteps<'a> {
    runner: Runner<'a>,
    /// Whether any test gets a database of its own (alone or in a read-only group).
    own_databases: bool,
    cluster: &'a mut Cluster,
    /// How many databases the cluster held before the tests that get their own (read-only groups
    /// included), for the check that every test's is gone again at the end.
    databases_before: Option<i64>,
}

impl schedule::Steps for RunSteps<'_> {
    async fn build_snapshots(&mut self, builders: &[Builder]) -> BTreeSet<usize> {
        snapshot_builders::build(builders, &self.runner).await
    }

    async fn batches(&mut self, batches: &[Batch]) -> Result<(), RunnerError> {
        let runner = self.runner;
        let sqlx = batches.iter().any(|batch| batch.kind == BatchKind::Sqlx);
        let gateway = sqlx
            .then(|| gateway::start(self.cluster, &runner))
            .flatten();
        let made = runner
            .run_batches(batches, gateway.as_ref(), self.cluster)
            .await;
        if let Some(gateway) = gateway {
            gateway::report(gateway.stop(), runner.dispatch);
        }
        // sqlx uses its per-package databases only to make each test's own.
        let made = made?;
        for database in made.iter().filter(|_| sqlx && self.cluster.is_running()) {
            if database.starts_with(SQLX_PREFIX) {
                runner.databases.give_back(database, Return::Drop).await;
            }
        }
        Ok(())
    }

    async fn groups(&mut self, groups: &[Group]) -> Vec<TestCase> {
        if self.runner.settings.isolation == Isolation::Shared {
            return Vec::new();
        }
        // After the batches' databases are gone: what the leak check compares the end with.
        self.databases_before = self.runner.databases.count().await.ok();
        if self.own_databases {
            self.runner.start_reuse().await;
        }
        let cluster = &mut *self.cluster;
        let runner = self.runner;
        let must_stop = || runner.must_stop(cluster);
        read_only::run(groups, &self.runner, must_stop).await
    }

    async fn alone(
        &mut self,
        tests: Vec<Alone>,
        unbuilt: &BTreeSet<usize>,
    ) -> Result<(), RunnerError> {
        if self.runner.settings.isolation == Isolation::Shared {
            return Ok(());
        }
        let before = self.databases_before;
        isolated::run(tests, unbuilt, &self.runner, self.cluster, before).await;
        Ok(())
    }
}

/// How the databases `#[sqlx::test]`s make theirs from are named (then the package's name).
const SQLX_PREFIX: &str = "pgtest_sqlx_";

impl Runner<'_> {
    /// Reuse of untouched databases for the tests that get their own, when the `reuse` key and the cluster
    /// allow it; a warning if it cannot start.
    async fn start_reuse(&self) {
        if let Err(error) = self.databases.start_reuse().await {
            let message = format!("{error}; every test gets a fresh copy instead");
            self.dispatch.warning(message);
        }
    }

    /// Runs each batch's tests together ([`shared::Together`]) against its package's database (made once
    /// per package); returns the databases made. `#[sqlx::test]`s reach the server through `gateway` when
    /// it started.
    async fn run_batches(
        &self,
        batches: &[Batch],
        gateway: Option<&Gateway>,
        cluster: &mut Cluster,
    ) -> Result<Vec<String>, RunnerError> {
        let mut made: Vec<String> = Vec::new();
        for batch in batches {
            if self.must_stop(cluster) {
                break;
            }
            let prefix = match batch.kind {
                BatchKind::Sqlx => SQLX_PREFIX,
                BatchKind::Shared => SHARED_PREFIX,
            };
            let database = format!("{prefix}{}", sanitize(&batch.binary.package));
            if !made.contains(&database) {
                self.shared_database(&batch.binary.package, &database)
                    .await?;
                made.push(database.clone());
            }
            self.run_batch(batch, &database, gateway, cluster).await?;
        }
        Ok(made)
    }

    /// One batch: its process, its retries (each alone), and what becomes of the databases of the tests
    /// that failed for good.
    async fn run_batch(
        &self,
        batch: &Batch,
        database: &str,
        gateway: Option<&Gateway>,
        cluster: &mut Cluster,
    ) -> Result<(), RunnerError> {
        let databases = self.databases;
        // `#[sqlx::test]`s reach the server through the gateway, which serves the databases sqlx makes;
        // the extra databases are reached directly.
        let endpoint = match (batch.kind, gateway) {
            (BatchKind::Sqlx, Some(gateway)) => gateway.endpoint(),
            _ => databases.endpoint(),
        };
        let env = databases.env_via(endpoint, database);
        let again = self.run_together(batch, &env).await?;
        let template = databases.template_for(&batch.binary.package, None);
        let attempts = match batch.kind {
            BatchKind::Shared => retry::AttemptDatabase::Clone {
                databases,
                template,
                base: database,
            },
            BatchKind::Sqlx => retry::AttemptDatabase::Given(&env),
        };
        for case in again {
            let limits = self.settings.limits;
            // One at a time, after the batch: the first slot.
            retry::run_again(&case, &attempts, 0, limits, self.cancel, self.dispatch).await;
        }
        match batch.kind {
            // The tests share the database: one that failed for good keeps it.
            BatchKind::Shared => {
                let failed = batch
                    .cases
                    .iter()
                    .filter(|c| self.dispatch.has_failed(&c.id()));
                for case in failed {
                    databases.keep(case.id(), database);
                }
            }
            // sqlx's databases only make the tests' own, which sqlx leaves when they fail.
            BatchKind::Sqlx if self.cancel.signal().is_none() && cluster.is_running() => {
                let left = sqlx_kept::SqlxLeftovers {
                    endpoint: cluster.endpoint(),
                    source: database,
                    databases,
                };
                left.settle(&batch.cases, self.dispatch).await;
            }
            BatchKind::Sqlx => {}
        }
        Ok(())
    }
}

impl Runner<'_> {
    /// A batch's process, told as one: its tests run together, holding every job slot.
    async fn run_together(
        &self,
        batch: &Batch,
        env: &[(String, String)],
    ) -> Result<Vec<TestCase>, RunnerError> {
        let (jobs, dispatch) = (self.settings.jobs, self.dispatch);
        let database = match batch.kind {
            BatchKind::Sqlx => DatabaseKind::Sqlx,
            BatchKind::Shared => DatabaseKind::Shared,
        };
        let kind = events::BatchKind::from(batch.kind);
        let number = dispatch.batch_started(kind, &batch.binary.id, batch.cases.len(), jobs);
        let began = Instant::now();
        let together = shared::Together {
            binary: &batch.binary,
            cases: &batch.cases,
            settings: self.settings,
            batch: number,
            database,
        };
        let again = together.run(env, self.cancel.clone(), dispatch).await;
        dispatch.batch_finished(number, began.elapsed());
        again
    }
}

/// A database-name-safe form of a package name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}
