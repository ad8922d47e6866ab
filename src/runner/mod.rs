//! Running the tests: list every binary's tests, choose the ones asked for, run them (one process and one
//! fresh database per test, or whole binaries against a shared database), doc tests last. Emits events only.
//!
//! Every child process is started and watched by [`supervisor::supervise`]; every test result becomes an
//! event in [`dispatch::Dispatcher`] only.

mod dispatch;
mod doc;

pub(crate) mod exec;
mod gateway;
mod keep;
mod libtest;
pub(crate) mod list;
pub(crate) mod listing;
pub(crate) mod partition;
pub(crate) mod read_only;
mod retry;
pub(crate) mod schedule;
pub(crate) mod shared;
pub(crate) mod snapshot_tests;
mod sqlx_kept;
mod supervisor;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;



use crate::cargo::TestBinary;
use crate::cluster::Cluster;
use crate::config::Isolation;
use crate::sqlx::gateway::Gateway;
use crate::template::reuse::Reuse;
use crate::template::{MaintenancePool, Extras};
use dispatch::Dispatcher;
use crate::cancel::Cancel;
use crate::events::{self, EventSender};
use exec::Limits;
use keep::Keeper;
pub(crate) use keep::KeptDatabase;
use list::TestArgs;

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

/// What to run and how.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) binaries: Vec<TestBinary>,
    pub(crate) args: TestArgs,
    pub(crate) isolation: Isolation,
    pub(crate) jobs: usize,
    pub(crate) limits: Limits,
    pub(crate) database_env: String,
    /// Package name → its template database.
    pub(crate) templates: BTreeMap<String, String>,
    pub(crate) doc_tests: Option<DocTests>,
    /// How many failed tests' databases are kept rather than dropped (0: none).
    pub(crate) keep_failed: usize,
    /// `--partition`: only this shard's tests run.
    pub(crate) partition: Option<partition::Partition>,
    /// How many more times a failing test is run (`--retries`, the `retries` key).
    pub(crate) retries: usize,
    /// `--fail-fast`: no test starts after one has failed.
    pub(crate) fail_fast: bool,
    /// The named snapshots some tests start from.
    pub(crate) snapshots: crate::template::snapshots::NamedSnapshots,
    /// The extra databases (`databases.NAME`) every test gets a copy of beside its own.
    pub(crate) extras: Extras,
    /// The `reuse` key: a database its test left untouched goes to the next test.
    pub(crate) reuse: bool,
    /// The tests that read only in their latest passing run, with that run's time: they run in read-only
    /// groups ([`read_only`]). Empty when `reuse` or `group_read_only` is off, or with `--no-history`.
    pub(crate) read_only: BTreeMap<events::TestId, std::time::Duration>,
}

/// How the databases of shared-isolation runs are named (then the package's name).
const SHARED_PREFIX: &str = "pgtest_shared_";

/// A binary and the cases run together in one process of it.
type Batch = (Arc<TestBinary>, Vec<list::TestCase>);

/// Takes the `#[sqlx::test]`s (see [`crate::sqlx::scan`]) out of `cases`, grouped by binary in the order the
/// binaries come; ignored tests asked for stay with the rest.
fn self_isolating_batches(cases: Vec<list::TestCase>) -> (Vec<Batch>, Vec<list::TestCase>) {
    let mut functions: BTreeMap<PathBuf, std::collections::BTreeSet<String>> = BTreeMap::new();
    let (batched, rest): (Vec<_>, Vec<_>) = cases.into_iter().partition(|case| {
        let known = functions
            .entry(case.binary.cwd.clone())
            .or_insert_with(|| crate::sqlx::scan::scan(&case.binary.cwd).tests);
        !case.ignored && crate::sqlx::scan::is_self_isolating(&case.name, known)
    });
    (by_binary(batched), rest)
}

/// Groups cases by their binary, binaries in the order they first come.
fn by_binary(cases: Vec<list::TestCase>) -> Vec<Batch> {
    let mut groups: Vec<Batch> = Vec::new();
    for case in cases {
        match groups
            .iter_mut()
            .find(|(binary, _)| binary.path == case.binary.path)
        {
            Some((_, group)) => group.push(case),
            None => groups.push((Arc::clone(&case.binary), vec![case])),
        }
    }
    groups
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

/// Runs the plan against the cluster, sending events; returns once every test has ended, with the failed
/// tests' databases left in the cluster ([`Plan::keep_failed`]). Every test chosen ends in one result: the
/// ones never reached are NOT RUN, with the reason the run stopped.
pub(crate) async fn run(
    plan: Plan,
    cluster: &mut Cluster,
    databases: &MaintenancePool,
    cancel: &Cancel,
    events: &EventSender,
) -> Result<Vec<KeptDatabase>, RunnerError> {
    let dispatch = Dispatcher::new(events.clone())
        .retrying(plan.retries)
        .fail_fast(plan.fail_fast);
    let keeper = Keeper::new(plan.keep_failed);
    let result = run_plan(plan, cluster, databases, cancel, &dispatch, &keeper).await;
    dispatch.close(|| match &result {
        Err(error) => error.to_string(),
        Ok(()) => dispatch
            .stop_reason()
            .unwrap_or_else(|| stop_reason(cancel, cluster)),
    });
    result.map(|()| keeper.kept())
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

/// Whether the run must stop starting tests (stopped, the server gone, or a failure under `--fail-fast`).
fn must_stop(cancel: &Cancel, dispatch: &Dispatcher, cluster: &mut Cluster) -> bool {
    cancel.signal().is_some() || !cluster.is_running() || dispatch.stop_reason().is_some()
}

async fn run_plan(
    plan: Plan,
    cluster: &mut Cluster,
    databases: &MaintenancePool,
    cancel: &Cancel,
    dispatch: &Dispatcher,
    keeper: &Keeper,
) -> Result<(), RunnerError> {
    let partition = plan.partition;
    let Some(mut cases) = choose(plan.binaries, &plan.args, partition, cancel, dispatch).await?
    else {
        // Stopped while listing: nothing was chosen, nothing is left to report.
        return Ok(());
    };
    let snapshots = &plan.snapshots;
    let starts = snapshot_tests::decide(snapshots, &cases.listed, &mut cases.run, plan.isolation)?;
    let builders = starts.builders.iter().map(|(_, case)| case.id());
    dispatch.run_started(
        builders.chain(cases.run.iter().map(list::TestCase::id)),
        cases.filtered_out,
        plan.jobs,
        plan.isolation == Isolation::Shared,
    );
    for case in cases.ignored {
        dispatch.ignored(case.id());
    }
    let settings = Settings {
        jobs: plan.jobs,
        limits: plan.limits,
        database_env: plan.database_env,
        templates: plan.templates,
        extras: plan.extras,
        reuse: plan.reuse,
        read_only: plan.read_only,
    };
    let context = Context {
        settings: &settings,
        databases,
        cancel,
        dispatch,
        keeper,
    };
    // The same split `cargo pgtest list` shows.
    let arranged = listing::arrange(cases.run, plan.isolation);
    let not_own: Vec<_> = arranged.batched().map(list::TestCase::id).collect();
    if let Some(warning) = snapshot_tests::not_applied(&starts, snapshots, &not_own) {
        dispatch.warning(warning);
    }
    match plan.isolation {
        Isolation::Test => {
            let alone = context.build_snapshots(arranged.alone, &starts, snapshots, cluster);
            let (alone, starting) = alone.await;
            context
                .run_isolated(arranged.sqlx, alone, cluster, starting)
                .await?
        }
        Isolation::Shared => {
            let shared_database = |package: &str| format!("{SHARED_PREFIX}{}", sanitize(package));
            let endpoint = cluster.endpoint().clone();
            context
                .run_together(arranged.shared, shared_database, &endpoint, true, cluster)
                .await?;
        }
    }
    let doc_tests = plan
        .doc_tests
        .filter(|_| partition.is_none_or(|p| p.runs_doc_tests()));
    if let Some(doc) = doc_tests.filter(|_| !must_stop(cancel, dispatch, cluster)) {
        context.run_doc_tests(doc, &plan.args, cluster).await?;
    }
    Ok(())
}

/// Lists every binary and applies the arguments, the same way in every isolation; None if the run was
/// stopped first.
async fn choose(
    binaries: Vec<TestBinary>,
    args: &TestArgs,
    partition: Option<partition::Partition>,
    cancel: &Cancel,
    dispatch: &Dispatcher,
) -> Result<Option<list::Selection>, RunnerError> {
    let mut chosen = list::Selection::default();
    for binary in binaries {
        let binary = Arc::new(binary);
        let Some((all, ignored)) = exec::list(&binary, cancel, dispatch).await? else {
            return Ok(None);
        };
        let mut selection = list::select(&binary, &all, &ignored, args);
        if let Some(partition) = partition {
            selection = partition.apply(selection);
        }
        chosen.run.extend(selection.run);
        chosen.ignored.extend(selection.ignored);
        chosen.filtered_out += selection.filtered_out;
        chosen.listed.extend(selection.listed);
    }
    Ok(Some(chosen))
}

/// What the stages of a run need of the plan.
struct Settings {
    jobs: usize,
    limits: Limits,
    database_env: String,
    templates: BTreeMap<String, String>,
    extras: Extras,
    reuse: bool,
    read_only: BTreeMap<events::TestId, std::time::Duration>,
}

/// What every stage of a run shares.
struct Context<'a> {
    settings: &'a Settings,
    databases: &'a MaintenancePool,
    cancel: &'a Cancel,
    dispatch: &'a Dispatcher,
    keeper: &'a Keeper,
}

impl Context<'_> {
    /// Builds the `from_test` snapshots the tests need; returns the tests left to run and the snapshot
    /// database each test starting from one is cloned from.
    async fn build_snapshots(
        &self,
        alone: Vec<list::TestCase>,
        starts: &snapshot_tests::Starts,
        snapshots: &crate::template::snapshots::NamedSnapshots,
        cluster: &Cluster,
    ) -> (Vec<list::TestCase>, BTreeMap<events::TestId, String>) {
        let builders = snapshot_tests::Builders {
            databases: self.databases,
            endpoint: cluster.endpoint(),
            database_env: &self.settings.database_env,
            extras: &self.settings.extras,
            limits: self.settings.limits,
            cancel: self.cancel,
            dispatch: self.dispatch,
        };
        let failed = builders.build(starts, snapshots).await;
        snapshot_tests::assign(alone, starts, snapshots, &failed, self.dispatch)
    }

    /// One process and one fresh database per test, except `#[sqlx::test]`s, which run together per
    /// binary (through the gateway when it starts) and make their own databases.
    async fn run_isolated(
        &self,
        batches: Vec<Batch>,
        cases: Vec<list::TestCase>,
        cluster: &mut Cluster,
        starting: BTreeMap<events::TestId, String>,
    ) -> Result<(), RunnerError> {
        let endpoint = cluster.endpoint().clone();
        let jobs = self.settings.jobs;
        let gateway = (!batches.is_empty())
            .then(|| gateway::start(cluster, (jobs, self.settings.reuse), self.dispatch))
            .flatten();
        let sqlx_endpoint = gateway.as_ref().map_or(&endpoint, Gateway::endpoint);
        // sqlx uses these databases, one per package, only to create each test's own.
        let sqlx_database = |package: &str| format!("pgtest_sqlx_{}", sanitize(package));
        let made = self
            .run_together(batches, sqlx_database, sqlx_endpoint, false, cluster)
            .await?;
        if let Some(gateway) = gateway {
            gateway::report(gateway.stop(), self.dispatch);
        }
        for database in made.iter().filter(|_| cluster.is_running()) {
            let extras = &self.settings.extras;
            extras.drop_with(self.databases, database).await;
        }
        let databases_before = self.databases.count().await.ok();
        let reuse = match self.settings.reuse && !cluster.is_existing() && !cases.is_empty() {
            true => self.start_reuse(cluster).await,
            false => None,
        };
        let context = schedule::Isolated {
            reuse,
            databases: self.databases.clone(),
            endpoint,
            templates: Arc::new(self.settings.templates.clone()),
            starting_points: Arc::new(starting),
            database_env: self.settings.database_env.clone(),
            jobs,
            limits: self.settings.limits,
            keeper: self.keeper.clone(),
            extras: self.settings.extras.clone(),
            databases_before,
        };
        let cases = self.run_read_only(cases, &context, cluster).await;
        schedule::run(cases, &context, cluster, self.cancel, self.dispatch).await;
        Ok(())
    }

    /// Runs the tests the history found read-only in groups ([`read_only`]), when reuse's check is there to
    /// judge them; returns the tests to run alone: the others, and those whose group did not count.
    async fn run_read_only(
        &self,
        cases: Vec<list::TestCase>,
        context: &schedule::Isolated,
        cluster: &mut Cluster,
    ) -> Vec<list::TestCase> {
        let Some(reuse) = &context.reuse else {
            return cases;
        };
        let learned = &self.settings.read_only;
        let from_snapshot = |test: &events::TestId| context.starting_points.contains_key(test);
        let (groups, mut alone) = read_only::split(cases, learned, from_snapshot, context.jobs);
        if groups.is_empty() {
            return alone;
        }
        let grouped = read_only::Grouped { context, reuse };
        let stop = || must_stop(self.cancel, self.dispatch, cluster);
        alone.extend(grouped.run(groups, self.cancel, self.dispatch, stop).await);
        alone
    }

    /// Reuse of untouched databases on our own cluster (its files are readable here); a warning and none
    /// if it cannot start.
    async fn start_reuse(&self, cluster: &Cluster) -> Option<Reuse> {
        let pool = self.databases.pool().clone();
        match Reuse::start(pool, cluster.data_dir().to_owned()).await {
            Ok(reuse) => Some(reuse),
            Err(error) => {
                let message = format!("{error}; every test gets a fresh copy instead");
                self.dispatch.warning(message);
                None
            }
        }
    }

    /// Runs each binary's cases together ([`shared::Together`]) against its package's database
    /// (`database_for` names it; made once per package), reached at `endpoint`; returns the databases made.
    /// A test run again gets a fresh copy of the template if `fresh_clones`, else (`#[sqlx::test]`s, which
    /// make their own) the same environment.
    async fn run_together(
        &self,
        batches: Vec<Batch>,
        database_for: impl Fn(&str) -> String,
        endpoint: &crate::cluster::Endpoint,
        fresh_clones: bool,
        cluster: &mut Cluster,
    ) -> Result<Vec<String>, RunnerError> {
        let mut made = Vec::new();
        for (binary, cases) in batches {
            if must_stop(self.cancel, self.dispatch, cluster) {
                break;
            }
            let database = database_for(&binary.package);
            let templates = &self.settings.templates;
            let extras = &self.settings.extras;
            let copies = (self.databases, extras);
            clone_once(&mut made, &binary.package, &database, templates, copies).await?;
            let env = endpoint.env(&database, &self.settings.database_env);
            // Reached directly: the `#[sqlx::test]` gateway is for the databases sqlx makes.
            let env = extras.with_env(env, cluster.endpoint(), &database);
            let together = shared::Together {
                binary: &binary,
                cases: &cases,
                threads: self.settings.jobs,
                limits: self.settings.limits,
            };
            let again = together
                .run(&env, self.cancel.clone(), self.dispatch)
                .await?;
            let fresh = match fresh_clones {
                true => retry::Fresh::Clone {
                    databases: self.databases,
                    endpoint,
                    template: templates.get(&binary.package).cloned().unwrap_or_default(),
                    database_env: &self.settings.database_env,
                    base: database.clone(),
                    extras,
                },
                false => retry::Fresh::Given(&env),
            };
            for case in again {
                let limits = self.settings.limits;
                retry::run_again(&case, &fresh, limits, self.cancel, self.dispatch).await;
            }
            // The tests share the database: one that failed for good keeps it. (sqlx's databases only make
            // the tests' own, which sqlx leaves when they fail.)
            let keeps = database.starts_with(SHARED_PREFIX);
            for case in cases
                .iter()
                .filter(|c| keeps && self.dispatch.has_failed(&c.id()))
            {
                self.keeper.keep(case.id(), &database);
            }
            if !keeps && self.cancel.signal().is_none() && cluster.is_running() {
                let left = sqlx_kept::Left {
                    endpoint: cluster.endpoint(),
                    source: &database,
                    databases: self.databases,
                };
                left.settle(&cases, self.dispatch, self.keeper).await;
            }
        }
        Ok(made)
    }

    /// `cargo test --doc` against a database of its own, copied from the first package's template.
    async fn run_doc_tests(
        &self,
        doc: DocTests,
        args: &TestArgs,
        cluster: &Cluster,
    ) -> Result<(), RunnerError> {
        let package = doc.packages.first().cloned().unwrap_or_default();
        let database = format!("pgtest_doc_{}", sanitize(&package));
        let extras = &self.settings.extras;
        let copies = (self.databases, extras);
        clone_for(&package, &database, &self.settings.templates, copies).await?;
        let endpoint = cluster.endpoint();
        let env = endpoint.env(&database, &self.settings.database_env);
        let env = extras.with_env(env, endpoint, &database);
        let cargo_args = doc::cargo_args(&doc, args, self.settings.jobs);
        let package_of_crate = |crate_name: &str| doc.package_of_crate(crate_name);
        let limits = self.settings.limits;
        let cancel = self.cancel.clone();
        doc::run(
            cargo_args,
            &env,
            limits,
            package_of_crate,
            cancel,
            self.dispatch,
        )
        .await
    }
}

/// Makes `database` for `package` unless `made` already holds it (binaries of one package share it).
async fn clone_once(
    made: &mut Vec<String>,
    package: &str,
    database: &str,
    templates: &BTreeMap<String, String>,
    databases: (&MaintenancePool, &Extras),
) -> Result<(), RunnerError> {
    if !made.iter().any(|m| m == database) {
        clone_for(package, database, templates, databases).await?;
        made.push(database.to_owned());
    }
    Ok(())
}

/// Makes `database`, a copy of `package`'s template, for tests that share it; and the extra databases'
/// copies that go with it.
async fn clone_for(
    package: &str,
    database: &str,
    templates: &BTreeMap<String, String>,
    (databases, extras): (&MaintenancePool, &Extras),
) -> Result<(), RunnerError> {
    let template = templates.get(package).cloned().unwrap_or_default();
    extras
        .create_with(databases, &template, database)
        .await
        .map_err(|e| RunnerError::SharedDatabase(crate::template::server_message(&e)))
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
