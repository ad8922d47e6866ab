//! After a run: keeping the failed tests' databases (called by the run stage), and the commands that look
//! at a database outside a run, `cargo pgtest psql` and `cargo pgtest serve`. Both boot a cluster as a
//! run does (from the kept state, or from the cache of migrated clusters), and tear it down as a run does,
//! however they end.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use owo_colors::OwoColorize;

use super::context::{Run, Setup};
use super::error::Error;
use crate::cancel::Cancel;
use crate::cli::{Cli, Command};
use crate::cluster::{Cluster, Endpoint};
use crate::config::PostgresChoice;
use crate::events::{self, Event, EventReceiver};
use crate::exit_code;
use crate::inspect::state::{self, KeptState};
use crate::inspect::{tcp, InspectError, ProjectArgs, PsqlArgs};
use crate::report::styles::Styles;
use crate::template::KeptDatabase;
use crate::template::{Extras, Obtain, Template};

/// Saves the cluster holding the `kept` databases and tells, per test, the command that opens it; a
/// failure to save is a warning (the run's outcome stands).
pub(crate) async fn keep(
    run: &Run<'_>,
    cluster: &mut Cluster,
    target_dir: &Path,
    templates: &[Template],
    kept: &[KeptDatabase],
) {
    let started = std::time::Instant::now();
    match state::save(cluster, target_dir, templates, kept).await {
        Ok(()) => {
            run.info(format!(
                "kept {} failed tests' databases in {} ({:.3}s)",
                kept.len(),
                state::dir(target_dir).display(),
                started.elapsed().as_secs_f64()
            ));
            for kept in kept {
                run.send(Event::DatabaseKept {
                    test: kept.test.clone(),
                    command: state::psql_command(&kept.test.to_string()),
                });
            }
        }
        Err(error) => run.warn(format!("{error}; the failed tests' databases are not kept")),
    }
}

/// The environment of an opened database as reached through an endpoint.
type EnvAt = Box<dyn Fn(&Endpoint) -> Vec<(String, String)> + Send + Sync>;

/// A cluster booted for a command, and the database it opens.
struct Opened {
    cluster: Cluster,
    database: String,
    /// The environment that names `database` and the extra databases' copies that go with it, as reached
    /// through an endpoint (the socket, or `serve --port`'s TCP listener).
    env: EnvAt,
}

/// The environment of `database` and its `extras` copies, under the configured variable.
fn environment(config: &crate::config::Config, database: &str, extras: Extras) -> EnvAt {
    let (variable, database) = (config.database_env.clone(), database.to_owned());
    Box::new(move |endpoint| {
        let main = endpoint.env(&database, &variable);
        extras.with_env(main, endpoint, &database)
    })
}

/// Runs `cargo pgtest psql` or `serve`; returns the exit code.
pub(crate) async fn main(mut cli: Cli, styles: &Styles) -> u8 {
    let Some(command) = cli.command.take() else {
        return exit_code::INTERNAL_ERROR;
    };
    let project = match &command {
        Command::Psql(args) => &args.project,
        Command::Serve(args) => &args.project,
        Command::Nextest(_) | Command::Report(_) | Command::List(_) | Command::Completions(_) => {
            return exit_code::INTERNAL_ERROR
        }
    };
    use_project(&mut cli, project);
    let (events, receiver) = events::channel();
    let printer = tokio::spawn(print(receiver, styles.clone(), cli.pgtest.verbose));
    let (cancel_sender, cancel) = Cancel::new();
    let psql_running = Arc::new(AtomicBool::new(false));
    let signals = tokio::spawn(watch_signals(cancel_sender, Arc::clone(&psql_running)));
    let result = {
        let run = Run {
            cli: &cli,
            styles,
            cancel: &cancel,
            events: &events,
        };
        match command {
            Command::Psql(args) => psql(&run, args, &psql_running).await,
            Command::Serve(args) => serve(&run, args.port).await,
            Command::Nextest(_)
            | Command::Report(_)
            | Command::List(_)
            | Command::Completions(_) => Ok(exit_code::INTERNAL_ERROR),
        }
    };
    signals.abort();
    drop(events);
    let _ = printer.await;
    match result {
        Ok(code) => code,
        Err(error) => super::report::fail(styles, &error),
    }
}

/// The subcommand's project flags stand for the run's.
fn use_project(cli: &mut Cli, project: &ProjectArgs) {
    let ProjectArgs {
        manifest_path,
        package,
        target_dir,
    } = project.clone();
    cli.cargo.manifest_path = manifest_path.or(cli.cargo.manifest_path.take());
    cli.cargo.package.extend(package);
    cli.cargo.target_dir = target_dir.or(cli.cargo.target_dir.take());
}

/// Warnings, and with --verbose the progress: these commands have no tests to report.
async fn print(mut events: EventReceiver, styles: Styles, verbose: bool) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Warning { message } => {
                eprintln!("{} {message}", "warning:".style(styles.warning))
            }
            Event::Info { message } if verbose => eprintln!("{message}"),
            _ => {}
        }
    }
}

/// SIGTERM always stops; SIGINT too, except while psql runs (it is psql's, to cancel a query).
async fn watch_signals(
    cancel: tokio::sync::watch::Sender<Option<&'static str>>,
    psql_running: Arc<AtomicBool>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = interrupt.recv() => if !psql_running.load(Ordering::SeqCst) {
                let _ = cancel.send(Some("SIGINT"));
            },
            _ = terminate.recv() => {
                let _ = cancel.send(Some("SIGTERM"));
            }
        }
    }
}

/// `cargo pgtest psql`: psql on a kept database, or on a fresh copy of the template; psql's exit code.
async fn psql(run: &Run<'_>, args: PsqlArgs, psql_running: &AtomicBool) -> Result<u8, Error> {
    let project = super::project::load(run).await?;
    let config = super::config::resolve(run, &project, None)?;
    let name = args.name.join(" ");
    let opened = if name.is_empty() {
        open_template(run, project, config, "pgtest_psql").await?
    } else {
        open_kept(run, &project.target_dir, config, &name).await?
    };
    let result = run_psql(run, &opened, &args.psql_args, psql_running).await;
    super::cluster::shut_down(run, opened.cluster).await;
    result
}

/// `cargo pgtest serve`: the migrated cluster, until Ctrl-C or SIGTERM (or the server's death).
async fn serve(run: &Run<'_>, port: Option<u16>) -> Result<u8, Error> {
    let project = super::project::load(run).await?;
    let mut config = super::config::resolve(run, &project, None)?;
    if let Some(port) = port {
        config.settings.extend(tcp::settings(port));
    }
    let mut opened = open_template(run, project, config, "pgtest_serve").await?;
    let listening = match port {
        Some(_) => tcp::open(&opened.cluster, &opened.database).await,
        None => Ok(()),
    };
    let result = match listening {
        Ok(()) => serve_until_stopped(run, &mut opened, port.is_some()).await,
        Err(error) => Err(error.into()),
    };
    super::cluster::shut_down(run, opened.cluster).await;
    result
}

/// Prints how to connect (over TCP with `tcp`), then waits for Ctrl-C, SIGTERM or the server's death.
async fn serve_until_stopped(run: &Run<'_>, opened: &mut Opened, tcp: bool) -> Result<u8, Error> {
    let socket = opened.cluster.endpoint().clone();
    let endpoint = if tcp { tcp::endpoint(&socket) } else { socket };
    print_connection(&endpoint, opened);
    let mut cancel = run.cancel.clone();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(exit_code::SUCCESS),
            _ = tick.tick() => if !opened.cluster.is_running() {
                run.warn(format!(
                    "the PostgreSQL server stopped; the end of its log:\n{}",
                    opened.cluster.log_tail(15)
                ));
                return Ok(exit_code::SETUP_FAILED);
            },
        }
    }
}

/// Boots the cluster from the kept state and finds `name`'s database in it.
async fn open_kept(
    run: &Run<'_>,
    target_dir: &Path,
    mut config: crate::config::Config,
    name: &str,
) -> Result<Opened, Error> {
    let Some((kept, pack)) = KeptState::load(target_dir) else {
        return Err(InspectError::NothingKept {
            dir: state::dir(target_dir),
        }
        .into());
    };
    let database = kept.find(name)?.database.clone();
    // A kept database's extra copies were kept with it, under the names a run gives them.
    let extras = Extras::named(&config.extra_databases);
    config.postgres = PostgresChoice::BinDir(kept.bin_dir.clone());
    let found = super::cluster::find(run, &config).await?;
    let cluster = super::cluster::boot_from(run, &config, &found, pack).await?;
    Ok(Opened {
        cluster,
        env: environment(&config, &database, extras),
        database,
    })
}

/// Boots the migrated cluster as a run does (from the cache when it can) and makes `database`, a copy of
/// the selected package's template.
async fn open_template(
    run: &Run<'_>,
    project: crate::cargo::Project,
    config: crate::config::Config,
    database: &str,
) -> Result<Opened, Error> {
    let found = super::cluster::find(run, &config).await?;
    let (sqlx_test, mut cache) = super::cache::look_up(run, &project, &config, &found.binaries);
    let mut cluster = super::cluster::boot(run, &config, &found, &mut cache).await?;
    let setup = Setup {
        project,
        config,
        sqlx_test,
    };
    match copy_template(run, &setup, &mut cluster, cache, database).await {
        Ok(extras) => Ok(Opened {
            cluster,
            database: database.to_owned(),
            env: environment(&setup.config, database, extras),
        }),
        Err(error) => {
            super::cluster::shut_down(run, cluster).await;
            Err(error)
        }
    }
}

async fn copy_template(
    run: &Run<'_>,
    setup: &Setup,
    cluster: &mut Cluster,
    cache: Option<crate::cache::Cache>,
    database: &str,
) -> Result<Extras, Error> {
    let ready = super::template::prepare(run, setup, cluster, cache).await?;
    // The first selected package's template (each package may have its own).
    let index = setup
        .project
        .workspace
        .selected
        .iter()
        .find_map(|package| setup.config.package_database.get(package))
        .copied()
        .unwrap_or(0);
    let template = ready
        .templates
        .get(index)
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let made = ready
        .databases
        .lease(&template, database, Obtain::Fresh)
        .await;
    ready.databases.close().await;
    made.map(|_| ready.databases.extras().clone())
        .map_err(|error| {
            InspectError::Create {
                database: database.to_owned(),
                message: crate::template::server_message(&error),
            }
            .into()
        })
}

/// Runs psql (the one beside the server's binaries, else PATH's) on the opened database, as the invoking
/// user over the cluster's socket; returns its exit code. Stopped by SIGTERM, it is stopped too.
async fn run_psql(
    run: &Run<'_>,
    opened: &Opened,
    psql_args: &[String],
    psql_running: &AtomicBool,
) -> Result<u8, Error> {
    let beside = opened
        .cluster
        .binaries()
        .map(|binaries| binaries.bin_dir.join("psql"));
    let program = if let Some(beside) = beside.filter(|path| path.is_file()) {
        beside
    } else {
        "psql".into()
    };
    let endpoint = opened.cluster.endpoint();
    let mut command = tokio::process::Command::new(&program);
    command
        .args(psql_args)
        .envs((opened.env)(endpoint))
        .kill_on_drop(true);
    // SAFETY: the hook only makes async-signal-safe system calls. psql must not outlive cargo-pgtest
    // (killed by SIGKILL, say) and the server it talks to.
    unsafe { command.pre_exec(crate::cluster::server::die_with_parent(libc::SIGTERM)) };
    let mut child = command.spawn().map_err(|source| InspectError::Psql {
        program: program.clone(),
        source,
    })?;
    psql_running.store(true, Ordering::SeqCst);
    let mut cancel = run.cancel.clone();
    let ended = tokio::select! {
        status = child.wait() => Ok(status),
        signal = cancel.cancelled() => Err(signal),
    };
    psql_running.store(false, Ordering::SeqCst);
    let status = match ended {
        Ok(status) => status.map_err(|source| InspectError::Psql { program, source })?,
        Err(signal) => {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let _ = child.wait().await;
            return Err(Error::Interrupted(signal));
        }
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(exit_code::INTERNAL_ERROR),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(exit_code::INTERNAL_ERROR),
        (None, None) => exit_code::INTERNAL_ERROR,
    })
}

/// What `serve` prints on stdout: the URL alone on the first line (for scripts), then the same as `export`
/// lines for a shell to eval, the extra databases' variables last. A reader that went away is no reason
/// to stop serving.
fn print_connection(endpoint: &Endpoint, opened: &Opened) {
    use std::io::Write;
    let database = &opened.database;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", endpoint.url(database));
    for (name, value) in (opened.env)(endpoint) {
        let _ = writeln!(out, "export {name}='{}'", value.replace('\'', r"'\''"));
    }
    let _ = out.flush();
    drop(out);
    eprintln!("serving the migrated database {database} until Ctrl-C or SIGTERM");
}
