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
mod slots;
mod snapshot_builders;
mod sqlx_kept;
mod supervisor;
mod trials;

use std::cell::{Cell, RefCell};
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
use crate::template::{Obtain, TestDatabases};
use dispatch::Dispatcher;
pub(crate) use dispatch::OnFailure;
use exec::Limits;
use schedule::{Alone, Batch, BatchKind, Builder, Group, Schedule, Trial};
use selection::{TestArgs, TestCase};
use slots::{Held, JobSlots};

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
    /// Each test's time in its latest passing run, from the history (empty with `--no-history`): the
    /// schedule starts the longest work first.
    pub(crate) past: BTreeMap<TestId, Duration>,
    /// Whether the tests `past` does not know are tried in read-only groups first (see [`trials`]); off
    /// with the groups.
    pub(crate) try_groups: bool,
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
            past: &settings.past,
            try_groups: settings.try_groups,
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
        let own_databases = !schedule.groups.is_empty()
            || !schedule.trials.is_empty()
            || !schedule.alone.is_empty();
        let sqlx = schedule.batches.iter().any(|b| b.kind == BatchKind::Sqlx);
        let steps = RunSteps {
            runner: self,
            own_databases,
            reuse_wanted: own_databases || sqlx,
            server: Server(RefCell::new(cluster)),
            slots: JobSlots::new(jobs),
            databases_before: Cell::new(None),
            alone_runs: Cell::new(0),
            started_alone: Cell::new(0),
            sqlx_sources: SqlxSources::default(),
        };
        schedule::drive(schedule, &steps).await?;
        if let Some(doc) = self.settings.doc_tests() {
            if !self.must_stop(&steps.server) {
                self.run_doc_tests(doc).await?;
            }
        }
        Ok(())
    }

    /// Whether the run must stop starting tests (stopped, the server gone, or a failure under `--fail-fast`).
    fn must_stop(&self, server: &Server<'_>) -> bool {
        self.cancel.signal().is_some()
            || !server.is_running()
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
        // After every other test: every job slot is its.
        let lanes: Vec<usize> = (0..self.settings.jobs).collect();
        let number = self
            .dispatch
            .batch_started(events::BatchKind::Doc, "doc-tests", 0, &lanes);
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

/// The cluster as the run's parts that go on side by side watch it. One task drives them all (they are
/// joined, not spawned), and no borrow is held across an await, so a `RefCell` is enough.
pub(crate) struct Server<'a>(RefCell<&'a mut Cluster>);

impl Server<'_> {
    /// Whether the server is still alive.
    fn is_running(&self) -> bool {
        self.0.borrow_mut().is_running()
    }

    fn with<T>(&self, read: impl FnOnce(&Cluster) -> T) -> T {
        read(&self.0.borrow())
    }
}

/// The runner's real steps, as [`schedule::drive`] calls them: the batches beside the groups and the tests
/// alone, all of them taking their job slots from one [`JobSlots`].
struct RunSteps<'a> {
    runner: Runner<'a>,
    /// Whether any test gets a database of its own (alone or in a read-only group).
    own_databases: bool,
    /// Whether anything hands untouched databases on: tests with their own, or the `#[sqlx::test]`
    /// gateway (whatever the other tests' isolation).
    reuse_wanted: bool,
    server: Server<'a>,
    slots: JobSlots,
    /// How many databases the cluster held before the tests, for the check that every test's is gone
    /// again at the end.
    databases_before: Cell<Option<i64>>,
    /// How many runs of tests alone have begun (their databases' names tell them apart), and how many
    /// tests they started.
    alone_runs: Cell<usize>,
    started_alone: Cell<usize>,
    sqlx_sources: SqlxSources,
}

impl schedule::Steps for RunSteps<'_> {
    async fn build_snapshots(&self, builders: &[Builder]) -> BTreeSet<usize> {
        snapshot_builders::build(builders, &self.runner).await
    }

    async fn tests_begin(&self) {
        if self.runner.settings.isolation != Isolation::Shared {
            self.databases_before
                .set(self.runner.databases.count().await.ok());
        }
        if self.reuse_wanted {
            self.runner.start_reuse().await;
        }
    }

    async fn batches(&self, batches: &[Batch]) -> Result<(), RunnerError> {
        if batches.is_empty() {
            return Ok(());
        }
        let runner = self.runner;
        let sqlx = batches.iter().any(|batch| batch.kind == BatchKind::Sqlx);
        let gateway = sqlx
            .then(|| self.server.with(|cluster| gateway::start(cluster, &runner)))
            .flatten();
        let lanes = lanes(batches);
        let ran = futures_util::future::join_all(
            lanes
                .iter()
                .map(|lane| self.run_lane(lane, gateway.as_ref())),
        )
        .await;
        if let Some(gateway) = gateway {
            gateway::report(gateway.stop().await, runner.dispatch);
        }
        // The databases sqlx made each test's own from are left to the teardown (which removes the
        // cluster, or drops every database the run made on an existing server): dropping one just after
        // its last process ended can wait for that process's sessions to go.
        ran.into_iter().collect()
    }

    async fn groups(&self, groups: &[Group]) -> Vec<TestCase> {
        if self.runner.settings.isolation == Isolation::Shared {
            return Vec::new();
        }
        let must_stop = || self.runner.must_stop(&self.server);
        read_only::run(groups, &self.runner, &self.slots, must_stop).await
    }

    async fn trials(&self, trials: &[Trial]) {
        if self.runner.settings.isolation == Isolation::Shared || trials.is_empty() {
            return;
        }
        let (runner, server, slots) = (&self.runner, &self.server, &self.slots);
        let tried = futures_util::future::join_all(
            trials
                .iter()
                .enumerate()
                .map(|(number, trial)| trials::run(trial, number, runner, server, slots)),
        )
        .await;
        let mut tally = trials::Tally::default();
        for one in tried {
            tally += one;
        }
        self.started_alone
            .set(self.started_alone.get() + tally.alone);
        self.runner
            .dispatch
            .trial_groups(tally.tests, tally.groups, tally.counted);
    }

    async fn alone(&self, tests: Vec<Alone>, unbuilt: &BTreeSet<usize>) -> Result<(), RunnerError> {
        if self.runner.settings.isolation == Isolation::Shared || tests.is_empty() {
            return Ok(());
        }
        let number = self.alone_runs.get();
        self.alone_runs.set(number + 1);
        // The first run's databases are named as they always were: pgtest_0, pgtest_1, ...
        let prefix = match number {
            0 => String::new(),
            n => format!("a{n}_"),
        };
        let (runner, server, slots) = (&self.runner, &self.server, &self.slots);
        let started = isolated::run(tests, unbuilt, &prefix, runner, server, slots).await;
        self.started_alone.set(self.started_alone.get() + started);
        Ok(())
    }

    async fn tests_end(&self) {
        let (databases, dispatch) = (self.runner.databases, self.runner.dispatch);
        if self.own_databases {
            dispatch.databases_reused(databases.reused(), self.started_alone.get());
        }
        // What a leak check reads: every database made for a test is gone again, or waits for reuse (those
        // are dropped now).
        let Some(before) = self.databases_before.get() else {
            return;
        };
        if !self.server.is_running() {
            return;
        }
        let idle = databases.settle().await;
        if let Ok(after) = databases.count().await {
            let after = after - idle as i64;
            let message = format!("cluster databases before the tests: {before}, after: {after}");
            dispatch.info(message);
        }
    }
}

/// How the databases `#[sqlx::test]`s make theirs from are named (then the batch's number and package).
const SQLX_PREFIX: &str = "pgtest_sqlx_";

/// Batches that run one after another: a package's under `isolation = "shared"` (they share its database,
/// as under `cargo test`, one binary at a time), each `#[sqlx::test]` batch alone. Lanes run side by side,
/// in the schedule's order.
struct Lane<'b> {
    kind: BatchKind,
    package: String,
    batches: Vec<&'b Batch>,
}

/// The batches' lanes, in the order their first batch comes.
fn lanes(batches: &[Batch]) -> Vec<Lane<'_>> {
    let mut lanes: Vec<Lane<'_>> = Vec::new();
    for batch in batches {
        let package = &batch.binary.package;
        let joins = |lane: &Lane<'_>| {
            batch.kind == BatchKind::Shared && lane.kind == batch.kind && &lane.package == package
        };
        match lanes.iter_mut().find(|lane| joins(lane)) {
            Some(lane) => lane.batches.push(batch),
            None => lanes.push(Lane {
                kind: batch.kind,
                package: package.clone(),
                batches: vec![batch],
            }),
        }
    }
    lanes
}

/// Which databases `#[sqlx::test]` batches make their tests' databases from: one per package, taken by one
/// batch at a time. sqlx, as each process starts, drops what earlier processes recorded in that database,
/// which must not reach a process still running: a batch that finds its package's taken gets one of its
/// own instead (a copy more, made while it holds its slots).
#[derive(Debug, Default)]
struct SqlxSources {
    /// Package → whether its database is made, and whether a batch runs on it now.
    packages: RefCell<BTreeMap<String, (bool, bool)>>,
    /// How many databases of their own batches got (they are numbered).
    own: Cell<usize>,
}

/// The database a batch makes its tests' databases from, and whether it is its package's (given back
/// when the batch ends).
struct Source {
    name: String,
    package: Option<String>,
}

impl RunSteps<'_> {
    /// The database a `#[sqlx::test]` batch of `package` runs against: its package's when no other batch
    /// runs on it, made if it is not yet; otherwise one of its own.
    async fn sqlx_source(&self, package: &str) -> Result<Source, RunnerError> {
        let safe = sanitize(package);
        let (made, free) = {
            let mut packages = self.sqlx_sources.packages.borrow_mut();
            let (made, busy) = packages.entry(package.to_owned()).or_default();
            let free = !*busy;
            *busy = true;
            (*made, free)
        };
        if !free {
            let number = self.sqlx_sources.own.get();
            self.sqlx_sources.own.set(number + 1);
            let name = format!("{SQLX_PREFIX}{number}_{safe}");
            self.runner.shared_database(package, &name).await?;
            return Ok(Source {
                name,
                package: None,
            });
        }
        let source = Source {
            name: format!("{SQLX_PREFIX}{safe}"),
            package: Some(package.to_owned()),
        };
        if !made {
            if let Err(error) = self.runner.shared_database(package, &source.name).await {
                self.give_back_source(&source);
                return Err(error);
            }
            let mut packages = self.sqlx_sources.packages.borrow_mut();
            if let Some((made, _)) = packages.get_mut(package) {
                *made = true;
            }
        }
        Ok(source)
    }

    /// The batch on `source` ended: its package's database is free again.
    fn give_back_source(&self, source: &Source) {
        if let Some(package) = &source.package {
            if let Some((_, busy)) = self.sqlx_sources.packages.borrow_mut().get_mut(package) {
                *busy = false;
            }
        }
    }
}

impl RunSteps<'_> {
    /// A lane's batches, one after another, each on the job slots free when it comes (at most one per
    /// test).
    async fn run_lane(
        &self,
        lane: &Lane<'_>,
        gateway: Option<&Gateway>,
    ) -> Result<(), RunnerError> {
        let runner = self.runner;
        let jobs = runner.settings.jobs;
        let shared = format!("{SHARED_PREFIX}{}", sanitize(&lane.package));
        let mut shared_made = false;
        for batch in &lane.batches {
            let held = self.slots.take(batch.cases.len().min(jobs)).await;
            if runner.must_stop(&self.server) {
                break;
            }
            if lane.kind == BatchKind::Shared {
                if !shared_made {
                    runner.shared_database(&lane.package, &shared).await?;
                    shared_made = true;
                }
                self.run_batch(batch, &shared, gateway, &held).await?;
                continue;
            }
            let source = self.sqlx_source(&batch.binary.package).await?;
            let ran = self.run_batch(batch, &source.name, gateway, &held).await;
            self.give_back_source(&source);
            ran?;
        }
        Ok(())
    }

    /// One batch: its process, its retries (each alone), and what becomes of the databases of the tests
    /// that failed for good.
    async fn run_batch(
        &self,
        batch: &Batch,
        database: &str,
        gateway: Option<&Gateway>,
        held: &Held,
    ) -> Result<(), RunnerError> {
        let runner = self.runner;
        let databases = runner.databases;
        // `#[sqlx::test]`s reach the server through the gateway, which serves the databases sqlx makes;
        // the extra databases are reached directly.
        let endpoint = match (batch.kind, gateway) {
            (BatchKind::Sqlx, Some(gateway)) => gateway.endpoint(),
            _ => databases.endpoint(),
        };
        let env = databases.env_via(endpoint, database);
        let again = runner.run_together(batch, &env, held).await?;
        let template = databases.template_for(&batch.binary.package, None);
        let attempts = match batch.kind {
            BatchKind::Shared => retry::AttemptDatabase::Clone {
                databases,
                template,
                base: database,
            },
            BatchKind::Sqlx => retry::AttemptDatabase::Given(&env),
        };
        let (limits, cancel, dispatch) = (runner.settings.limits, runner.cancel, runner.dispatch);
        for case in again {
            // One at a time, after the batch, on its first slot.
            retry::run_again(&case, &attempts, held.first(), limits, cancel, dispatch).await;
        }
        match batch.kind {
            // The tests share the database: one that failed for good keeps it.
            BatchKind::Shared => {
                let failed = batch.cases.iter().filter(|c| dispatch.has_failed(&c.id()));
                for case in failed {
                    databases.keep(case.id(), database);
                }
            }
            // sqlx's databases only make the tests' own, which sqlx leaves when they fail.
            BatchKind::Sqlx if cancel.signal().is_none() && self.server.is_running() => {
                let endpoint = self.server.with(|cluster| cluster.endpoint().clone());
                let left = sqlx_kept::SqlxLeftovers {
                    endpoint: &endpoint,
                    source: database,
                    databases,
                };
                left.settle(&batch.cases, dispatch).await;
            }
            BatchKind::Sqlx => {}
        }
        Ok(())
    }
}

impl Runner<'_> {
    /// Reuse of untouched databases for the tests that get their own, when the `reuse` key and the cluster
    /// allow it; a warning if it cannot start.
    async fn start_reuse(&self) {
        if let Err(error) = self.databases.start_reuse().await {
            let message = format!("{error}; every test gets a fresh copy instead");
            self.dispatch.warning(message);
        }
    }

    /// A batch's process, told as one: its tests run together, one libtest thread per job slot it holds.
    async fn run_together(
        &self,
        batch: &Batch,
        env: &[(String, String)],
        held: &Held,
    ) -> Result<Vec<TestCase>, RunnerError> {
        let dispatch = self.dispatch;
        let database = match batch.kind {
            BatchKind::Sqlx => DatabaseKind::Sqlx,
            BatchKind::Shared => DatabaseKind::Shared,
        };
        let kind = events::BatchKind::from(batch.kind);
        let number =
            dispatch.batch_started(kind, &batch.binary.id, batch.cases.len(), held.numbers());
        let began = Instant::now();
        let together = shared::Together {
            binary: &batch.binary,
            cases: &batch.cases,
            settings: self.settings,
            slots: held.numbers(),
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
