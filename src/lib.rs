//! cargo-pgtest: `cargo test` against a throwaway PostgreSQL. This file is the entry point and the stages
//! in the order data flows (each one a module of [`stages`]): project → config → cluster → snapshot →
//! template → build → run → report → exit code.

pub mod cache;
mod cancel;
pub(crate) mod cargo;
pub mod ci;
pub(crate) mod cli;
pub mod cluster;
pub mod config;
pub(crate) mod events;
pub(crate) mod exit_code;
pub(crate) mod history;
pub(crate) mod inspect;
pub(crate) mod nextest;
mod own_cpu;
mod platform;
mod refused;
pub(crate) mod report;
pub(crate) mod runner;
pub(crate) mod sqlx;
mod stages;
mod target_runner;
pub mod template;

use std::process::ExitCode;

use cancel::Cancel;
use cli::{Cli, Command};
use events::EventSender;
use report::styles::Styles;
use runner::selection::TestArgs;
use stages::context::{Run, Setup};
pub(crate) use stages::error::Error;
use stages::report::fail;
use target_runner::Invocation;

/// The whole program: parse the arguments, run, and turn the outcome into an exit code. The cluster is
/// always stopped and removed before this returns, a panic included.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    if nextest::is_wrapper_mode(&args) {
        return nextest::wrapper_main(args);
    }
    platform::exec_shim::enable();
    let cli = match target_runner::invocation(&args) {
        Some(Invocation::Tests(cli)) => *cli,
        Some(Invocation::Unchanged { program, args }) => {
            return Invocation::exec_unchanged(&program, &args)
        }
        Some(Invocation::Usage) => return Invocation::usage(),
        None => match cli::parse_from(args) {
            Ok(cli) => cli,
            Err(error) => {
                let _ = error.print();
                return ExitCode::from(if error.use_stderr() {
                    exit_code::SETUP_FAILED
                } else {
                    exit_code::SUCCESS
                });
            }
        },
    };
    let target_runner = cli.given_binary.is_some();
    // The stages run on the main thread (`block_on`), which starts the server; the tasks they spawn (each
    // test alone, its clone, check and drop, the gateway's copies) run on a worker per core, so that no one
    // thread's share of the per-test work caps a machine with many cores. A child's parent-death signal
    // is tied to the thread that started it: workers live as long as the runtime, the whole run.
    let workers = crate::platform::cpus();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("pgtest-worker")
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
        Ok(code) if target_runner => ExitCode::from(target_runner::exit_code(code)),
        Ok(code) => ExitCode::from(code),
        Err(_) => {
            eprintln!("error: cargo-pgtest crashed (a bug; please report it). The cluster was stopped and removed.");
            ExitCode::from(exit_code::INTERNAL_ERROR)
        }
    }
}

/// Runs the stages while the reporters consume their events; returns the exit code.
async fn run(cli: Cli) -> u8 {
    if let Some(Command::Completions(args)) = &cli.command {
        cli::completions::write(args.shell, &mut std::io::stdout());
        return exit_code::SUCCESS;
    }
    let styles = Styles::decide(cli.pgtest.color);
    if matches!(cli.command, Some(Command::Psql(_) | Command::Serve(_))) {
        return stages::inspect::main(cli, &styles).await;
    }
    if let Some(Command::Report(args)) = &cli.command {
        return stages::report::render(args, &styles);
    }
    let test_args = match TestArgs::parse(cli.filter.as_deref(), &cli.test_args) {
        Ok(args) => args,
        Err(message) => return fail(&styles, &Error::TestArgs(message)),
    };
    if cli.pgtest.which_postgres {
        return match stages::cluster::which_postgres(&cli).await {
            Ok(found) => {
                println!("{found}");
                exit_code::SUCCESS
            }
            Err(error) => fail(&styles, &error),
        };
    }
    let html = report::html::Destination::from_flag(cli.pgtest.html.clone());
    let mut reporters = match stages::report::reporters(&cli, &styles, &test_args, &html) {
        Ok(reporters) => reporters,
        Err(error) => return fail(&styles, &error),
    };
    let (events, receiver) = events::channel();
    let (cancel_sender, cancel) = Cancel::new();
    let signals = tokio::spawn(stages::context::watch_signals(
        cancel_sender,
        events.clone(),
    ));
    let pipeline = async {
        let result = pipeline(&cli, &styles, &cancel, events, test_args, &html).await;
        signals.abort();
        result
    };
    let consume = stages::report::consume(&mut reporters, receiver);
    let (result, ()) = tokio::join!(pipeline, consume);
    // As cargo's target runner, cargo-pgtest is one test binary, and cargo runs every binary with the
    // filter: one that selects none ends as libtest ends it, successfully.
    let no_tests = match cli.given_binary {
        Some(_) => cli::NoTests::Pass,
        None => cli.pgtest.no_tests,
    };
    stages::report::finish(&mut reporters, &styles, no_tests, result)
}

/// The stages up to a booted cluster; whatever the later ones return, the cluster is shut down. The event
/// sender is owned here so that the reporters' channel closes when the stages are done. `html` learns the
/// configuration's `html` key.
async fn pipeline(
    cli: &Cli,
    styles: &Styles,
    cancel: &Cancel,
    events: EventSender,
    test_args: TestArgs,
    html: &report::html::Destination,
) -> Result<(), Error> {
    let run = Run {
        cli,
        styles,
        cancel,
        events: &events,
    };
    stages::nextest::check(&run).await?;
    let project = stages::project::load(&run).await?;
    let config = stages::config::resolve(&run, &project, test_args.test_threads)?;
    html.configured(config.html.as_deref());
    let (mut cluster, sqlx_test, cache) = match stages::server::url(&run, &config) {
        Some(url) => stages::server::connect(&run, &project, &config, &url).await?,
        None => {
            let found = stages::cluster::find(&run, &config).await?;
            let (sqlx_test, mut cache) =
                stages::cache::look_up(&run, &project, &config, &found.binaries);
            let cluster = stages::cluster::boot(&run, &config, &found, &mut cache).await?;
            (cluster, sqlx_test, cache)
        }
    };
    let setup = Setup {
        project,
        config,
        sqlx_test,
    };
    let result = with_cluster(&run, setup, &mut cluster, cache, test_args).await;
    stages::cluster::shut_down(&run, cluster).await;
    result
}

/// The stages that need a running cluster.
async fn with_cluster(
    run: &Run<'_>,
    setup: Setup,
    cluster: &mut cluster::Cluster,
    cache: Option<cache::Cache>,
    test_args: TestArgs,
) -> Result<(), Error> {
    // Debug builds only: lets the test suite prove that a crash inside cargo-pgtest still stops and removes
    // the cluster.
    if cfg!(debug_assertions) && std::env::var_os("CARGO_PGTEST_PANIC_FOR_TESTS").is_some() {
        panic!("CARGO_PGTEST_PANIC_FOR_TESTS is set");
    }
    let memory = stages::memory::watch(run, cluster);
    let result = async {
        let ready = stages::template::prepare(run, &setup, cluster, cache).await;
        memory.phase_done(events::Phase::Template);
        let ready = ready?;
        if let Some(nextest) = run.cli.nextest() {
            stages::nextest::run_tests(run, &setup, cluster, ready, &nextest.args).await?;
            return Ok(None);
        }
        let built = match &run.cli.given_binary {
            Some(binary) => Ok(stages::build::given(run, binary.clone())),
            None => stages::build::build(run, &setup, cluster.endpoint(), &ready).await,
        };
        memory.phase_done(events::Phase::Build);
        let built = built?;
        if run.cli.pgtest.no_run && !run.cli.list {
            ready.databases.close().await;
            return Ok(None);
        }
        let settings = stages::run::settings(run, &setup, cluster, &built, test_args);
        if run.cli.list {
            let listed = stages::list::print(run, &ready, built, &settings).await;
            ready.databases.close().await;
            listed?;
            return Ok(None);
        }
        stages::run::run_tests(run, setup, cluster, ready, built, &settings).await
    };
    let result = result.await;
    memory.phase_done(events::Phase::Tests);
    stages::memory::report(run, memory);
    if let Some(to_keep) = result? {
        stages::run::keep(run, cluster, to_keep).await;
    }
    Ok(())
}
