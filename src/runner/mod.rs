//! Running the tests: list every binary's tests, choose the ones asked for, run them (one process and one
//! fresh database per test, or whole binaries against a shared database), doc tests last. Emits events only.

pub mod events;
pub mod exec;
pub mod list;
pub mod schedule;
pub mod self_isolating;
pub mod shared;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::cargo::TestBinary;
use crate::cluster::Cluster;
use crate::config::Isolation;
use crate::gateway::{Gateway, GatewayReport};
use crate::template::Databases;
use events::{Event, EventSender, Outcome, TestId};
use exec::Limits;
use list::TestArgs;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
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
    #[error("could not make a pipe for a test's output: {0}")]
    Pipe(#[source] std::io::Error),
    #[error("could not create the shared database: {0}")]
    SharedDatabase(String),
}

/// Watches for Ctrl-C / SIGTERM; cloned into everything that must stop early.
#[derive(Debug, Clone)]
pub struct Cancel(watch::Receiver<Option<&'static str>>);

impl Cancel {
    pub fn new() -> (watch::Sender<Option<&'static str>>, Cancel) {
        let (sender, receiver) = watch::channel(None);
        (sender, Cancel(receiver))
    }

    /// The signal that stopped the run, if one did.
    pub fn signal(&self) -> Option<&'static str> {
        *self.0.borrow()
    }

    /// Resolves with the signal's name once the run is stopped; never, if it is not.
    pub async fn cancelled(&mut self) -> &'static str {
        loop {
            if let Some(signal) = *self.0.borrow_and_update() {
                return signal;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What to run and how.
#[derive(Debug)]
pub struct Plan {
    pub binaries: Vec<TestBinary>,
    pub args: TestArgs,
    pub isolation: Isolation,
    pub jobs: usize,
    pub limits: Limits,
    pub database_env: String,
    /// Package name → its template database.
    pub templates: BTreeMap<String, String>,
    pub doc_tests: Option<DocTests>,
}

/// Takes the `#[sqlx::test]`s (see [`self_isolating`]) out of `cases`, grouped by binary in the order the
/// binaries come; ignored tests asked for stay with the rest.
fn self_isolating_batches(
    cases: Vec<list::TestCase>,
) -> (
    Vec<(Arc<TestBinary>, Vec<list::TestCase>)>,
    Vec<list::TestCase>,
) {
    let mut functions: BTreeMap<PathBuf, std::collections::BTreeSet<String>> = BTreeMap::new();
    let (batched, rest): (Vec<_>, Vec<_>) = cases.into_iter().partition(|case| {
        let known = functions
            .entry(case.binary.cwd.clone())
            .or_insert_with(|| self_isolating::sqlx_test_functions(&case.binary.cwd));
        !case.ignored && self_isolating::is_self_isolating(&case.name, known)
    });
    (by_binary(batched), rest)
}

/// Groups cases by their binary, binaries in the order they first come.
fn by_binary(cases: Vec<list::TestCase>) -> Vec<(Arc<TestBinary>, Vec<list::TestCase>)> {
    let mut groups: Vec<(Arc<TestBinary>, Vec<list::TestCase>)> = Vec::new();
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

/// Reports tests that will not run because the run stopped (or the server died) first.
fn not_run(binary: &TestBinary, cases: &[list::TestCase], cancel: &Cancel, events: &EventSender) {
    let reason = match cancel.signal() {
        Some(signal) => format!("the run was stopped by {signal}"),
        None => "the PostgreSQL server died during the run".to_owned(),
    };
    for case in cases {
        let _ = events.send(Event::TestFinished {
            test: TestId {
                binary: binary.id.clone(),
                name: case.name.clone(),
            },
            outcome: Outcome::NotRun {
                reason: reason.clone(),
            },
            duration: None,
            output: String::new(),
        });
    }
}

/// `cargo test --doc` for the packages that have a library.
#[derive(Debug)]
pub struct DocTests {
    pub cargo_args: Vec<String>,
    pub packages: Vec<String>,
}

/// Runs the plan against the cluster, sending events; returns once every test has ended.
pub async fn run(
    plan: Plan,
    cluster: &mut Cluster,
    databases: &Databases,
    cancel: &Cancel,
    events: &EventSender,
) -> Result<(), RunnerError> {
    let endpoint = cluster.endpoint().clone();

    // Both isolations choose their tests alike: every binary listed, the arguments applied here.
    let mut cases = Vec::new();
    let mut ignored = Vec::new();
    let mut filtered_out = 0;
    for binary in plan.binaries {
        let binary = Arc::new(binary);
        let (all, ignored_names) = exec::list(&binary).await?;
        let selection = list::select(&binary, &all, &ignored_names, &plan.args);
        cases.extend(selection.run);
        ignored.extend(selection.ignored);
        filtered_out += selection.filtered_out;
    }
    let _ = events.send(Event::RunStarted {
        to_run: cases.len(),
        filtered_out,
        jobs: plan.jobs,
        shared: plan.isolation == Isolation::Shared,
    });
    for case in ignored {
        let _ = events.send(Event::TestIgnored {
            test: TestId {
                binary: case.binary.id.clone(),
                name: case.name,
            },
        });
    }

    let batch_plan = BatchPlan {
        jobs: plan.jobs,
        limits: plan.limits,
        database_env: plan.database_env.clone(),
        templates: plan.templates.clone(),
    };
    let whole_binaries = Batches {
        plan: &batch_plan,
        databases,
        cancel,
        events,
    };
    match plan.isolation {
        Isolation::Test => {
            let (batches, cases) = self_isolating_batches(cases);
            let gateway = (!batches.is_empty())
                .then(|| sqlx_gateway(cluster, plan.jobs, events))
                .flatten();
            let sqlx_endpoint = gateway.as_ref().map_or(&endpoint, Gateway::endpoint);
            // sqlx uses these databases, one per package, only to create each test's own.
            let sqlx_database = |package: &str| format!("pgtest_sqlx_{}", sanitize(package));
            let made = whole_binaries
                .run_batches(batches, sqlx_database, sqlx_endpoint, cluster)
                .await?;
            if let Some(gateway) = gateway {
                report_gateway(gateway.stop(), events);
            }
            for database in made.iter().filter(|_| cluster.is_running()) {
                let _ = databases.drop_database(database).await;
            }
            let context = schedule::Isolated {
                databases: databases.clone(),
                endpoint: endpoint.clone(),
                templates: Arc::new(plan.templates.clone()),
                database_env: plan.database_env.clone(),
                jobs: plan.jobs,
                limits: plan.limits,
            };
            schedule::run(cases, &context, cluster, cancel, events).await;
        }
        Isolation::Shared => {
            let shared_database = |package: &str| format!("pgtest_shared_{}", sanitize(package));
            whole_binaries
                .run_batches(by_binary(cases), shared_database, &endpoint, cluster)
                .await?;
        }
    }

    if let Some(doc) = plan
        .doc_tests
        .filter(|_| cancel.signal().is_none() && cluster.is_running())
    {
        let package = doc.packages.first().cloned().unwrap_or_default();
        let database = format!("pgtest_doc_{}", sanitize(&package));
        clone_for(&package, &database, &plan.templates, databases).await?;
        let env = endpoint.env(&database, &plan.database_env);
        let package_of_crate = |crate_name: &str| {
            doc.packages
                .iter()
                .find(|p| p.replace('-', "_") == crate_name)
                .cloned()
                .unwrap_or_else(|| crate_name.to_owned())
        };
        shared::run_doc_tests(
            &doc.cargo_args,
            &plan.args,
            plan.jobs,
            &env,
            package_of_crate,
            cancel.clone(),
            events,
        )
        .await?;
    }
    Ok(())
}

/// Starts the gateway through which `#[sqlx::test]`s get their databases; without it (it could not
/// start, which the report says) they reach the server directly and make their databases as sqlx does.
fn sqlx_gateway(cluster: &Cluster, jobs: usize, events: &EventSender) -> Option<Gateway> {
    let started = Gateway::start(
        cluster.endpoint(),
        &cluster.info.run_dir,
        cluster.info.version.major,
        jobs,
    );
    match started {
        Ok(gateway) => Some(gateway),
        Err(error) => {
            let message = format!("{error}; #[sqlx::test]s make their own databases instead");
            let _ = events.send(Event::Warning { message });
            None
        }
    }
}

fn report_gateway(report: GatewayReport, events: &EventSender) {
    let counts = report.counts;
    let message = format!(
        "#[sqlx::test] databases: {} from copies made ahead, {} copied while the test waited, {} dropped after their test",
        counts.ready, counts.inline, counts.deferred_drops
    );
    let _ = events.send(Event::Info { message });
    if let Some(reason) = report.broken {
        let message = format!("copies for #[sqlx::test] stopped being made ahead: {reason}");
        let _ = events.send(Event::Warning { message });
    }
}

/// What running binaries together needs of the plan.
struct BatchPlan {
    jobs: usize,
    limits: Limits,
    database_env: String,
    templates: BTreeMap<String, String>,
}

/// Runs whole binaries one after another, each binary's tests together in one process
/// ([`shared::Together`]).
struct Batches<'a> {
    plan: &'a BatchPlan,
    databases: &'a Databases,
    cancel: &'a Cancel,
    events: &'a EventSender,
}

impl Batches<'_> {
    /// Runs each binary's cases together against its package's database (`database_for` names it; made once
    /// per package), reached at `endpoint`; returns the databases made.
    async fn run_batches(
        &self,
        batches: Vec<(Arc<TestBinary>, Vec<list::TestCase>)>,
        database_for: impl Fn(&str) -> String,
        endpoint: &crate::cluster::Endpoint,
        cluster: &mut Cluster,
    ) -> Result<Vec<String>, RunnerError> {
        let mut made = Vec::new();
        for (binary, names) in batches {
            if self.cancel.signal().is_some() || !cluster.is_running() {
                not_run(&binary, &names, self.cancel, self.events);
                continue;
            }
            let database = database_for(&binary.package);
            clone_once(
                &mut made,
                &binary.package,
                &database,
                &self.plan.templates,
                self.databases,
            )
            .await?;
            let env = endpoint.env(&database, &self.plan.database_env);
            let together = shared::Together {
                binary: &binary,
                cases: &names,
                threads: self.plan.jobs,
                limits: self.plan.limits,
            };
            together.run(&env, self.cancel.clone(), self.events).await?;
        }
        Ok(made)
    }
}

/// Makes `database` for `package` unless `made` already holds it (binaries of one package share it).
async fn clone_once(
    made: &mut Vec<String>,
    package: &str,
    database: &str,
    templates: &BTreeMap<String, String>,
    databases: &Databases,
) -> Result<(), RunnerError> {
    if !made.iter().any(|m| m == database) {
        clone_for(package, database, templates, databases).await?;
        made.push(database.to_owned());
    }
    Ok(())
}

/// Makes `database`, a copy of `package`'s template, for tests that share it.
async fn clone_for(
    package: &str,
    database: &str,
    templates: &BTreeMap<String, String>,
    databases: &Databases,
) -> Result<(), RunnerError> {
    let template = templates.get(package).cloned().unwrap_or_default();
    databases
        .create_from(&template, database)
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

/// Whether an outcome counts against the run.
pub fn is_failure(outcome: &Outcome) -> bool {
    !outcome.is_success()
}
