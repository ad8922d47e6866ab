//! cargo-pgtest: `cargo test` against a throwaway PostgreSQL. The stages, in the order data flows:
//! config → cluster → template → build → runner (events) → reporters → exit code.

pub mod cargo;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod exit_code;
pub mod gateway;
pub mod report;
pub mod runner;
pub mod template;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cli::Cli;
use cluster::binaries::{self, SearchPlaces};
use cluster::{privileges, storage, Cluster, ClusterSpec, SnapshotOf};
use config::{Config, Isolation, Overrides};
use report::styles::Styles;
use report::{human::Human, json::JsonLines, junit::Junit, Reporters};
use runner::events::{self, ClusterFacts, Event, EventSender, Phase};
use runner::exec::Limits;
use runner::list::TestArgs;
use runner::Cancel;
use template::CachePlan;

/// Everything that can stop a run before its tests are done, with the exit code each one means.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    TestArgs(String),
    #[error(transparent)]
    Cargo(#[from] cargo::CargoError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error(transparent)]
    Runner(#[from] runner::RunnerError),
    #[error("could not create the report file {}: {source}", path.display())]
    ReportFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stopped by {0}")]
    Interrupted(&'static str),
}

impl Error {
    fn exit_code(&self) -> u8 {
        match self {
            Error::Cargo(cargo::CargoError::BuildFailed { .. }) => exit_code::BUILD_FAILED,
            Error::Interrupted(signal) => signal_exit_code(signal),
            _ => exit_code::SETUP_FAILED,
        }
    }
}

fn signal_exit_code(signal: &str) -> u8 {
    if signal == "SIGTERM" {
        exit_code::TERMINATED
    } else {
        exit_code::INTERRUPTED
    }
}

/// The whole program: parse the arguments, run, and turn the outcome into an exit code. The cluster is
/// always stopped and removed before this returns, a panic included.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = match cli::parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                exit_code::SETUP_FAILED
            } else {
                exit_code::SUCCESS
            });
        }
    };
    // One thread: every process (and the server, whose parent-death signal is tied to the spawning thread)
    // is started from the main thread, and the work is waiting, not computing.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::from(exit_code::INTERNAL_ERROR);
        }
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(run(cli)))) {
        Ok(code) => ExitCode::from(code),
        Err(_) => {
            eprintln!("error: cargo-pgtest crashed (a bug; please report it). The cluster was stopped and removed.");
            ExitCode::from(exit_code::INTERNAL_ERROR)
        }
    }
}

async fn run(cli: Cli) -> u8 {
    let styles = Styles::decide(cli.pgtest.color);
    let test_args = match TestArgs::parse(cli.filter.as_deref(), &cli.test_args) {
        Ok(args) => args,
        Err(message) => return fail(&styles, &Error::TestArgs(message)),
    };
    if cli.pgtest.which_postgres {
        return which_postgres(&cli, &styles).await;
    }
    let mut reporters = match reporters(&cli, &styles, &test_args) {
        Ok(reporters) => reporters,
        Err(error) => return fail(&styles, &error),
    };

    let (events, mut receiver) = events::channel();
    let (cancel_sender, cancel) = Cancel::new();
    let signals = tokio::spawn(watch_signals(cancel_sender, events.clone()));
    let pipeline = async {
        let result = pipeline(&cli, &styles, test_args, &cancel, events).await;
        signals.abort();
        result
    };
    let consume = async {
        while let Some(event) = receiver.recv().await {
            reporters.report(&event);
        }
    };
    let (result, ()) = tokio::join!(pipeline, consume);
    if let Err(error) = reporters.finish() {
        eprintln!("error: could not write a report: {error}");
    }
    let summary = &reporters.summary;
    match result {
        Err(Error::Interrupted(signal)) => signal_exit_code(signal),
        Err(error) => fail(&styles, &error),
        Ok(()) => match &summary.interrupted {
            Some(signal) => signal_exit_code(signal),
            None if summary.failures() > 0 => exit_code::TEST_FAILED,
            None => exit_code::SUCCESS,
        },
    }
}

fn fail(styles: &Styles, error: &Error) -> u8 {
    use owo_colors::OwoColorize;
    eprintln!("{} {error}", "error:".style(styles.fail));
    error.exit_code()
}

fn reporters(cli: &Cli, styles: &Styles, test_args: &TestArgs) -> Result<Reporters, Error> {
    let mut reporters = Reporters::default();
    reporters.add(Box::new(Human::new(
        std::io::stderr(),
        styles.clone(),
        cli.pgtest.verbose,
        test_args.show_output,
    )));
    if let Some(path) = &cli.pgtest.json {
        let out: Box<dyn std::io::Write> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::File::create(path).map_err(|source| Error::ReportFile {
                    path: path.clone(),
                    source,
                })?,
            )
        };
        reporters.add(Box::new(JsonLines::new(out)));
    }
    if let Some(path) = &cli.pgtest.junit {
        std::fs::File::create(path).map_err(|source| Error::ReportFile {
            path: path.clone(),
            source,
        })?;
        reporters.add(Box::new(Junit::new(path.clone())));
    }
    Ok(reporters)
}

/// Turns SIGINT and SIGTERM into a stop request: tests are stopped, the results so far reported.
async fn watch_signals(
    cancel: tokio::sync::watch::Sender<Option<&'static str>>,
    events: EventSender,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    let _ = events.send(Event::Interrupted {
        signal: name.to_owned(),
    });
    let _ = cancel.send(Some(name));
    // Further signals are absorbed: the cleanup under way is quick and must not be cut short.
    loop {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
}

/// Runs a stage unless the run is stopped first.
async fn unless_stopped<T, E: Into<Error>>(
    cancel: &Cancel,
    stage: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Error> {
    let mut cancel = cancel.clone();
    tokio::select! {
        result = stage => result.map_err(Into::into),
        signal = cancel.cancelled() => Err(Error::Interrupted(signal)),
    }
}

async fn which_postgres(cli: &Cli, styles: &Styles) -> u8 {
    // The `postgres` key is honoured when there is a project to read it from.
    let choice = match cargo::project(&cli.cargo).await {
        Ok(project) => config::resolve(&project.workspace, &Overrides::default(), 1)
            .map(|c| c.postgres)
            .unwrap_or(config::PostgresChoice::Newest),
        Err(_) => config::PostgresChoice::Newest,
    };
    match binaries::discover(&choice, &SearchPlaces::from_env()) {
        Ok(found) => {
            println!("{} in {}", found.version, found.bin_dir.display());
            exit_code::SUCCESS
        }
        Err(error) => fail(styles, &Error::Cluster(error.into())),
    }
}

async fn pipeline(
    cli: &Cli,
    styles: &Styles,
    test_args: TestArgs,
    cancel: &Cancel,
    events: EventSender,
) -> Result<(), Error> {
    let project = cargo::project(&cli.cargo).await?;
    let overrides = Overrides {
        no_tmpfs: cli.pgtest.no_tmpfs,
        jobs: cli.pgtest.jobs,
        isolation: cli.pgtest.isolation.map(|i| match i {
            cli::IsolationArg::Test => Isolation::Test,
            cli::IsolationArg::Shared => Isolation::Shared,
        }),
        timeout: cli.pgtest.timeout,
        test_threads: test_args.test_threads,
    };
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let config = config::resolve(&project.workspace, &overrides, cpus)?;
    config.check_paths(&project.workspace)?;
    template::check_migrations(&config.databases)?;
    let binaries = binaries::discover(&config.postgres, &SearchPlaces::from_env())
        .map_err(cluster::ClusterError::from)?;
    let server_user = privileges::server_user().map_err(cluster::ClusterError::from)?;
    let placement = storage::choose(
        config.tmpfs,
        std::env::var_os("PGTEST_TMPDIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        server_user.is_other_account,
    );
    if let Some(warning) = &placement.warning {
        let _ = events.send(Event::Warning {
            message: warning.clone(),
        });
    }
    let _ = events.send(Event::Info {
        message: format!("{} from {}", binaries.version, binaries.bin_dir.display()),
    });

    let started = Instant::now();
    let spec = ClusterSpec {
        binaries: &binaries,
        placement: &placement,
        server_user: &server_user,
        settings: &config.settings,
        jobs: config.jobs,
    };
    let package_dirs: Vec<PathBuf> = project
        .workspace
        .members
        .iter()
        .filter(|member| project.workspace.selected.contains(&member.name))
        .filter_map(|member| member.manifest_path.parent().map(PathBuf::from))
        .collect();
    let sqlx_test =
        template::sqlx_test_spec(&config.databases, &config.package_database, &package_dirs);
    if sqlx_test.is_some() {
        let message =
            "template1 gets the migrations too: #[sqlx::test] databases start migrated".into();
        let _ = events.send(Event::Info { message });
    }
    let mut cache = (!cli.pgtest.no_cache)
        .then(|| CachePlan::look_up(&project.target_dir, &binaries, &config, sqlx_test))
        .flatten();
    if let Some(plan) = &cache {
        let message = format!(
            "cluster cache {}: key {}",
            plan.cache.root().display(),
            plan.key
        );
        let _ = events.send(Event::Info { message });
    }
    let cached = cache.as_ref().and_then(|plan| plan.hit.as_ref());
    let booted = unless_stopped(cancel, Cluster::boot(&spec, cached.map(|(pack, _)| pack))).await;
    let mut cluster = match booted {
        Err(error) if cached.is_some() && !matches!(error, Error::Interrupted(_)) => {
            let message =
                format!("the cached cluster could not be used ({error}); building it afresh");
            let _ = events.send(Event::Warning { message });
            // A fresh cluster has no templates yet: prepare them, and store the result over the bad entry.
            if let Some(plan) = cache.as_mut() {
                plan.hit = None;
            }
            unless_stopped(cancel, Cluster::boot(&spec, None)).await?
        }
        booted => booted?,
    };
    let _ = events.send(Event::ClusterReady(ClusterFacts {
        version: cluster.info.version.to_string(),
        in_ram: cluster.info.storage == storage::StorageKind::Tmpfs,
        run_dir: cluster.info.run_dir.display().to_string(),
        log: cluster.info.log_path.display().to_string(),
        server_user: cluster.info.server_user.clone(),
    }));
    let _ = events.send(Event::PhaseFinished {
        phase: Phase::ClusterBoot,
        duration: started.elapsed(),
    });

    let result = with_cluster(
        cli,
        styles,
        test_args,
        &config,
        &project,
        &mut cluster,
        cache,
        sqlx_test,
        cancel,
        &events,
    )
    .await;

    let (teardown, problems) = cluster.shutdown();
    for message in problems {
        let _ = events.send(Event::Warning { message });
    }
    let _ = events.send(Event::PhaseFinished {
        phase: Phase::Teardown,
        duration: teardown,
    });
    result
}

/// The stages that need a running cluster; whatever they return, the caller shuts the cluster down.
#[allow(clippy::too_many_arguments)]
async fn with_cluster(
    cli: &Cli,
    styles: &Styles,
    test_args: TestArgs,
    config: &Config,
    project: &cargo::Project,
    cluster: &mut Cluster,
    cache: Option<CachePlan>,
    sqlx_test: Option<usize>,
    cancel: &Cancel,
    events: &EventSender,
) -> Result<(), Error> {
    // Debug builds only: lets the test suite prove that a crash inside cargo-pgtest still stops and removes
    // the cluster.
    if cfg!(debug_assertions) && std::env::var_os("CARGO_PGTEST_PANIC_FOR_TESTS").is_some() {
        panic!("CARGO_PGTEST_PANIC_FOR_TESTS is set");
    }
    let endpoint = cluster.endpoint().clone();
    let started = Instant::now();
    let templates = match cache {
        Some(CachePlan {
            hit: Some((_, manifest)),
            ..
        }) => {
            let _ = events.send(Event::TemplateCache {
                hit: true,
                stored: false,
            });
            manifest.templates
        }
        plan => {
            let templates = unless_stopped(
                cancel,
                template::prepare(
                    &endpoint,
                    &config.databases,
                    sqlx_test,
                    cluster.info.version.major,
                ),
            )
            .await?;
            let mut stored = false;
            if let Some(plan) = plan {
                let manifest = template::Manifest {
                    templates: templates.clone(),
                }
                .to_json();
                // template1 gets only migrations that one of the templates has too.
                let of = if templates.iter().any(|t| t.unlogged_tables) {
                    SnapshotOf::StoppedCluster
                } else {
                    SnapshotOf::RunningCluster
                };
                let snapshot = cluster.snapshot(&plan.cache, &plan.key, &manifest, of);
                stored = unless_stopped(cancel, snapshot).await?;
                if !stored {
                    let message =
                        "the migrated cluster changed while it was being cached (is autovacuum on in \
                         [package.metadata.pgtest.settings]?): not cached this time, the next run \
                         migrates again"
                        .to_owned();
                    let _ = events.send(Event::Warning { message });
                }
            }
            let _ = events.send(Event::TemplateCache { hit: false, stored });
            templates
        }
    };
    for template in &templates {
        let message = format!(
            "template {}: {} migrations, {} fixture files",
            template.name, template.migrations, template.fixtures
        );
        let _ = events.send(Event::Info { message });
    }
    let databases = unless_stopped(
        cancel,
        template::Databases::connect(
            &endpoint,
            cluster.info.version.major,
            config.jobs as u32 + 2,
        ),
    )
    .await?;
    let _ = events.send(Event::PhaseFinished {
        phase: Phase::Template,
        duration: started.elapsed(),
    });

    let package_templates: BTreeMap<String, String> = config
        .package_database
        .iter()
        .map(|(package, index)| (package.clone(), templates[*index].name.clone()))
        .collect();
    // The build gets a migrated database too, so sqlx's compile-time checked queries need no other server.
    let build_database = "pgtest_build";
    let first_template = templates
        .first()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    unless_stopped(cancel, async {
        databases
            .create_from(&first_template, build_database)
            .await
            .map_err(|e| template::TemplateError::Sql {
                name: build_database.to_owned(),
                source: e,
            })
    })
    .await?;
    let mut build_env = vec![("DATABASE_URL".to_owned(), endpoint.url(build_database))];
    if config.database_env != "DATABASE_URL" {
        build_env.push((config.database_env.clone(), endpoint.url(build_database)));
    }

    let mut cargo_args = cli.cargo.package_args();
    cargo_args.extend(cli.cargo.build_args());
    cargo_args.extend(["--color".to_owned(), styles.cargo_color().to_owned()]);
    let build = async {
        let started = Instant::now();
        let test_binaries = if cli.cargo.doc {
            Vec::new()
        } else {
            let mut args = cargo_args.clone();
            args.extend(cli.cargo.target_args());
            cargo::build_tests(&args, &build_env, project).await?
        };
        Ok::<_, Error>((test_binaries, started.elapsed()))
    };
    // The templates' relation caches are warmed while cargo builds: off the critical path, and done before
    // the first clone.
    let warm = async { Ok(template::warm_relation_caches(&endpoint, &templates).await?) };
    let ((test_binaries, build_time), ()) =
        unless_stopped(cancel, async { tokio::try_join!(build, warm) }).await?;
    let _ = events.send(Event::PhaseFinished {
        phase: Phase::Build,
        duration: build_time,
    });

    let doc_tests =
        (cli.cargo.runs_doc_tests() && !project.packages_with_lib.is_empty()).then(|| {
            runner::DocTests {
                // The runner sets the doc tests' own `--color`.
                cargo_args: cargo_args.clone(),
                packages: project.packages_with_lib.clone(),
            }
        });
    let plan = runner::Plan {
        binaries: test_binaries,
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
    };
    let started = Instant::now();
    let peak_memory = Arc::new(AtomicU64::new(0));
    let sampler = cluster
        .server_pid()
        .map(|pid| tokio::spawn(cluster::memory::track_peak(pid, Arc::clone(&peak_memory))));
    let result = runner::run(plan, cluster, &databases, cancel, events).await;
    if let Some(sampler) = sampler {
        sampler.abort();
        let peak_bytes = peak_memory.load(Ordering::Relaxed);
        if peak_bytes > 0 {
            let _ = events.send(Event::ClusterMemory { peak_bytes });
        }
    }
    let _ = events.send(Event::PhaseFinished {
        phase: Phase::Tests,
        duration: started.elapsed(),
    });
    databases.close().await;
    result.map_err(Error::from)
}
