//! End-to-end tests: the real `cargo-pgtest` binary run on every project under `fixtures/`, as a user
//! runs it, each checked against the outcome the project declares in its `expect.toml`.
//!
//! One trial per fixture, plus two for the cargo subcommand protocol (`--help`, `--version`). Every
//! `[[run]]` of a fixture gets a fresh copy of the project, a scrubbed environment, an empty `PROBE_DIR`
//! its tests may write what they saw into, and a parent directory of its own for the throwaway cluster,
//! which must be empty, with no process still using it, once the run is over. That directory is given
//! as `PGTEST_TMPDIR` (on a tmpfs), except to runs with `--no-tmpfs`: `PGTEST_TMPDIR` would decide
//! where the data goes instead of the flag, so those get it as `TMPDIR` (on disk), where the tool's
//! own choice puts the cluster. The runs build into the suite's shared `target/fixtures`, without the
//! test history (see `support::tool_command`). Without PostgreSQL the fixtures that need it are ignored,
//! except in CI, where they fail. Each trial is named `fixtures::<fixture>`.

use libtest_mimic::{Completion, Failed, Trial};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use std::{fs, thread};

use crate::support::{self, nothing_left_in, poll, BINARY, REPO};
use crate::Turn;

/// Longest a single run may take; a cold build of the fixtures' dependencies takes minutes on 2 cores.
const RUN_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How long the tool may take, after it exits or is told to stop, to let go of everything it started.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A trial per fixture with an expect.toml, and the cargo subcommand protocol's.
pub(crate) fn trials() -> Vec<Trial> {
    let mut trials = protocol_trials();
    if let Some(why) = support::without_fixtures() {
        let ignored = move || Ok(Completion::ignored_with(why));
        trials.push(Trial::ignorable_test("fixtures::found", ignored));
        return trials;
    }
    let fixtures = find_fixtures(&repo().join("fixtures"));
    if fixtures.is_empty() {
        let message = format!("no fixture with an expect.toml under {REPO}/fixtures");
        trials.push(Trial::test("fixtures::found", move || Err(message.into())));
    }
    trials.extend(fixtures.into_iter().map(Fixture::into_trial));
    trials
}

fn repo() -> &'static Path {
    Path::new(REPO)
}

/// `fixtures/<name>/expect.toml`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    description: Option<String>,
    #[serde(default = "needs_postgres_by_default")]
    needs_postgres: bool,
    run: Vec<Run>,
}

fn needs_postgres_by_default() -> bool {
    true
}

/// One invocation of `cargo-pgtest pgtest <args>` and what it must produce.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Run {
    #[serde(default)]
    args: Vec<String>,
    exit: i32,
    #[serde(default)]
    contains: Vec<String>,
    #[serde(default)]
    not_contains: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Files the fixture's tests must have written in `$PROBE_DIR`, each with exactly this text (trimmed).
    #[serde(default)]
    probe: BTreeMap<String, String>,
}

struct Fixture {
    name: String,
    dir: PathBuf,
    /// Parsed lazily into the trial's outcome: a broken expect.toml fails that trial, not the suite.
    expect: Result<Expect, String>,
}

fn find_fixtures(root: &Path) -> Vec<Fixture> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut fixtures: Vec<Fixture> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|dir| dir.join("expect.toml").is_file())
        .map(|dir| Fixture {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            expect: read_expect(&dir.join("expect.toml")),
            dir,
        })
        .collect();
    fixtures.sort_by(|a, b| a.name.cmp(&b.name));
    fixtures
}

fn read_expect(path: &Path) -> Result<Expect, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let expect: Expect =
        toml::from_str(&text).map_err(|e| format!("invalid {}: {e}", path.display()))?;
    if expect.run.is_empty() {
        return Err(format!("{} has no [[run]]", path.display()));
    }
    Ok(expect)
}

impl Fixture {
    /// The fixture's trial; without PostgreSQL, one that needs it is ignored, except in CI, where it fails
    /// (see `support::skip`).
    fn into_trial(self) -> Trial {
        let needs_postgres = self.expect.as_ref().is_ok_and(|e| e.needs_postgres);
        Trial::ignorable_test(format!("fixtures::{}", self.name), move || {
            let _turn = Turn::take(false);
            support::take_skipped();
            if needs_postgres && !support::postgres_available() {
                return Ok(Completion::ignored_with(
                    support::take_skipped().unwrap_or_default(),
                ));
            }
            self.check().map(|()| Completion::Completed)
        })
    }

    /// Runs every `[[run]]` in order, each on a fresh copy of the project; stops at the first failure.
    fn check(self) -> Result<(), Failed> {
        let expect = self.expect?;
        for (index, run) in expect.run.iter().enumerate() {
            let copy = tempfile::Builder::new()
                .prefix("pgtest-fixture-")
                .tempdir()?;
            let project = copy.path().join(&self.name);
            support::copy_dir(&self.dir, &project);
            invoke(run, &project).map_err(|report| {
                let description = expect.description.as_deref().unwrap_or("").trim();
                format!(
                    "fixture `{}`, run {} of {}: {description}\n{report}",
                    self.name,
                    index + 1,
                    expect.run.len()
                )
            })?;
        }
        Ok(())
    }
}

/// The trials that are not fixtures: cargo runs `cargo-pgtest pgtest <args>` for `cargo pgtest <args>`.
fn protocol_trials() -> Vec<Trial> {
    let trial = |name: &str, args: &[&str], contains: &[&str]| {
        let run = Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            exit: 0,
            contains: contains.iter().map(|c| c.to_string()).collect(),
            not_contains: Vec::new(),
            env: BTreeMap::new(),
            probe: BTreeMap::new(),
        };
        Trial::test(format!("fixtures::{name}"), move || {
            let _turn = Turn::take(false);
            invoke(&run, repo()).map_err(Failed::from)
        })
    };
    vec![
        trial("cargo_subcommand_protocol", &["--help"], &["--no-tmpfs"]),
        trial("version", &["--version"], &[env!("CARGO_PKG_VERSION")]),
    ]
}

/// Runs the tool once in `cwd` and checks the outcome and that nothing was left behind. The error
/// is a report for a person: the command, the differences, the whole output.
fn invoke(run: &Run, cwd: &Path) -> Result<(), String> {
    let on_disk = run.args.iter().any(|arg| arg == "--no-tmpfs");
    let cluster_parent = cluster_parent(on_disk)
        .map_err(|e| format!("cannot make the cluster's parent directory: {e}"))?;
    let probe = tempfile::Builder::new()
        .prefix("pgtest-probe-")
        .tempdir()
        .map_err(|e| format!("cannot make PROBE_DIR: {e}"))?;
    let mut command = tool_command(&run.args, cwd);
    let parent_variable = if on_disk { "TMPDIR" } else { "PGTEST_TMPDIR" };
    command
        .env(parent_variable, cluster_parent.path())
        .env("PROBE_DIR", probe.path())
        .envs(&run.env);
    let outcome = run_to_end(&mut command).map_err(|e| format!("cannot run {BINARY}: {e}"))?;

    let mut problems = outcome.problems(run);
    problems.extend(probe_problems(run, probe.path()));
    if let Err(leftovers) = poll(CLEANUP_TIMEOUT, || nothing_left_in(cluster_parent.path())) {
        problems.push(format!("left behind after the run: {leftovers}"));
    }
    let cluster_parent_path = cluster_parent.path().to_owned();
    if let Err(e) = cluster_parent.close() {
        problems.push(format!("cannot remove {parent_variable}: {e}"));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "command: {BINARY} pgtest {}\ncwd:     {}\nenv:     {:?}, {parent_variable}={}\n{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.args.join(" "),
        cwd.display(),
        run.env,
        cluster_parent_path.display(),
        problems.join("\n"),
        outcome.stdout,
        outcome.stderr,
    ))
}

/// Every file `run.probe` names that the fixture's tests did not write in `probe_dir` as expected.
fn probe_problems(run: &Run, probe_dir: &Path) -> Vec<String> {
    run.probe
        .iter()
        .filter_map(|(file, wanted)| {
            let path = probe_dir.join(file);
            match fs::read_to_string(&path) {
                Ok(text) if text.trim() == wanted => None,
                Ok(text) => Some(format!(
                    "PROBE_DIR/{file}: expected {wanted:?}, the tests wrote {:?}",
                    text.trim()
                )),
                Err(e) => Some(format!(
                    "PROBE_DIR/{file} was not written by the fixture's tests: {e}"
                )),
            }
        })
        .collect()
}

/// A fresh parent directory for the tool's cluster: in RAM like a normal run, or on disk (not a tmpfs,
/// where the tool would not put a `--no-tmpfs` cluster).
fn cluster_parent(on_disk: bool) -> io::Result<tempfile::TempDir> {
    match on_disk {
        false => Ok(support::ram_dir("pgtest-e2e-")),
        true => support::disk_dir("pgtest-e2e-")
            .ok_or_else(|| io::Error::other("no directory on disk (not a tmpfs) was found")),
    }
}

/// `cargo-pgtest pgtest <args>`, its durations and paths redacted so expectations do not flake.
fn tool_command(args: &[String], cwd: &Path) -> Command {
    let mut command = support::tool_command(args, cwd);
    command.env("CARGO_PGTEST_REDACT", "1");
    command
}

struct Outcome {
    /// `None` if the run timed out and had to be stopped.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Every way this outcome differs from what `run` expects.
    fn problems(&self, run: &Run) -> Vec<String> {
        let mut problems = Vec::new();
        match self.status {
            None => problems.push(format!(
                "timed out after {RUN_TIMEOUT:?} (expected exit {})",
                run.exit
            )),
            Some(status) if status.code() != Some(run.exit) => {
                problems.push(format!(
                    "exit: expected {}, got {}",
                    run.exit,
                    describe(status)
                ));
            }
            Some(_) => {}
        }
        let output = self.all_output();
        for wanted in run.contains.iter().filter(|s| !output.contains(s.as_str())) {
            problems.push(format!("missing from the output: {wanted:?}"));
        }
        for unwanted in run
            .not_contains
            .iter()
            .filter(|s| output.contains(s.as_str()))
        {
            problems.push(format!("must not be in the output: {unwanted:?}"));
        }
        problems
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code.to_string(),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// Runs `command` with stdin closed, collecting its output, within RUN_TIMEOUT.
fn run_to_end(command: &mut Command) -> io::Result<Outcome> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = Capture::start(child.stdout.take().unwrap());
    let stderr = Capture::start(child.stderr.take().unwrap());
    let status = wait_or_stop(&mut child)?;
    let deadline = Instant::now() + CLEANUP_TIMEOUT;
    Ok(Outcome {
        status,
        stdout: stdout.finish(deadline),
        stderr: stderr.finish(deadline),
    })
}

/// The output of a pipe, read on a thread of its own so that the tool never blocks on a full pipe.
struct Capture {
    bytes: Arc<Mutex<Vec<u8>>>,
    closed: mpsc::Receiver<()>,
}

impl Capture {
    fn start(mut pipe: impl Read + Send + 'static) -> Capture {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (close, closed) = mpsc::channel();
        let sink = Arc::clone(&bytes);
        thread::spawn(move || {
            let mut chunk = [0; 8192];
            while let Ok(read @ 1..) = pipe.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..read]);
            }
            let _ = close.send(());
        });
        Capture { bytes, closed }
    }

    /// Everything read once the pipe closed, or by `deadline`: a process the tool left running may
    /// hold it open forever.
    fn finish(self, deadline: Instant) -> String {
        let closed = self
            .closed
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok();
        let mut text = String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned();
        if !closed {
            text.push_str(
                "\n<still open after the tool exited: held by a process it left running?>",
            );
        }
        text
    }
}

/// Waits for the child; past RUN_TIMEOUT interrupts it like Ctrl-C, so it can stop its cluster,
/// then kills it if it is still there after CLEANUP_TIMEOUT. `None` means it timed out.
fn wait_or_stop(child: &mut Child) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + RUN_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        thread::sleep(POLL_INTERVAL);
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
    let stopped = poll(CLEANUP_TIMEOUT, || match child.try_wait() {
        Ok(Some(_)) => Ok(()),
        _ => Err(String::new()),
    });
    if stopped.is_err() {
        child.kill()?;
    }
    child.wait()?;
    Ok(None)
}
