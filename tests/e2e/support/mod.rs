//! The one set of helpers of the end-to-end tests: whether a test can run here (PostgreSQL, root, CI), a
//! private copy of a fixture project and the command to run cargo-pgtest on it, what a run printed, and the
//! checks that a run left nothing behind.

pub mod ports;
pub mod serve;
pub mod terminal;

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use cargo_pgtest::ci::in_ci;

pub const BINARY: &str = env!("CARGO_BIN_EXE_cargo-pgtest");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

thread_local! {
    /// Why the test running on this thread did not run, once it called [`skip`].
    static SKIPPED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A test that cannot run on this machine: outside CI it says why on stderr and is reported ignored (the
/// caller then returns); in CI it fails with the reason.
pub fn skip(why: &str) {
    assert!(!in_ci(), "CI must run every test, but {why}");
    eprintln!("skipped: {why}");
    SKIPPED.with(|skipped| *skipped.borrow_mut() = Some(why.to_owned()));
}

/// Why the test that just ran on this thread skipped itself, if it did; forgets it for the next test.
pub fn take_skipped() -> Option<String> {
    SKIPPED.with(|skipped| skipped.borrow_mut().take())
}

/// Why the tests that need `fixtures/` cannot run from this copy of the sources, if they cannot: it is
/// missing, as in the crate `cargo package` makes (Cargo.toml leaves the fixture projects out). Only the
/// directory decides, in CI too: a clone of the repository always has it.
pub fn without_fixtures() -> Option<String> {
    let dir = Path::new(REPO).join("fixtures");
    (!dir.is_dir()).then(|| {
        format!(
            "{} is missing (the packaged crate leaves the fixture projects out): this test needs a clone \
             of the repository",
            dir.display()
        )
    })
}

/// What a test that needs `fixtures/` ends with where it is missing: a panic with this payload (and no
/// message), which the harness reports as the test ignored, with the reason (see `trial` in main.rs).
pub struct NoFixtures(pub String);

/// Whether PostgreSQL is there to test with (asked once, with `--which-postgres`). Without it a test
/// returns early, except in CI, where that is a failure.
pub fn postgres_available() -> bool {
    static FOUND: OnceLock<Result<(), String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let which = Command::new(BINARY)
            .args(["pgtest", "--which-postgres"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {BINARY}: {e}"))?;
        match which.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&which.stderr).trim().to_owned()),
        }
    });
    if let Err(why) = found {
        skip(&format!("PostgreSQL is missing: {why}"));
    }
    found.is_ok()
}

/// Whether this test runs as root, which `what` needs. Otherwise it is skipped with a note (see `skip`).
/// The tests that need root are Linux's (mounts, /proc).
#[cfg(target_os = "linux")]
pub fn root_for(what: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    skip(&format!(
        "{what} needs root, and this suite runs as an ordinary user"
    ));
    false
}

/// `PostgreSQL <version> in <bin dir>`, as `--which-postgres` prints it: the version (`15.18`) and the
/// bin directory.
pub fn parse_which(stdout: &str) -> Option<(String, PathBuf)> {
    let (version, bin) = stdout
        .trim()
        .strip_prefix("PostgreSQL ")?
        .split_once(" in ")?;
    Some((version.to_owned(), PathBuf::from(bin)))
}

/// Whether `path` is on a tmpfs; there is none outside Linux (macOS runs use a RAM disk of their own).
pub fn is_tmpfs(path: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::statfs::{statfs, TMPFS_MAGIC};
        statfs(path).is_ok_and(|fs| fs.filesystem_type() == TMPFS_MAGIC)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        false
    }
}

/// A fresh directory for a cluster's run directory, in RAM (/dev/shm) when there is one, as a user's run
/// would be.
pub fn ram_dir(prefix: &str) -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&root)
        .unwrap_or_else(|e| panic!("cannot make a directory in {}: {e}", root.display()))
}

/// A fresh directory on disk (not a tmpfs) that the server's account can enter, or `None` on a machine
/// without one.
pub fn disk_dir(prefix: &str) -> Option<tempfile::TempDir> {
    let bases = [
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        PathBuf::from("/var/tmp"),
        std::env::temp_dir(),
    ];
    let base = bases
        .into_iter()
        .find(|base| base.is_dir() && !is_tmpfs(base))?;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .ok()?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).ok()?;
    Some(dir)
}

/// The target directory the fixtures build into unless a test gives them one of their own: shared, so
/// sqlx and the other dependencies are built once for the whole suite.
fn shared_target() -> PathBuf {
    Path::new(REPO).join("target/fixtures")
}

/// A private copy of `fixtures/<name>`, a directory the cluster's run directory goes in (`PGTEST_TMPDIR`,
/// in RAM when it can be), and one for the fixture's tests to talk through (`PROBE_DIR`).
pub struct Project {
    _root: tempfile::TempDir,
    pub dir: PathBuf,
    pub cluster_parent: tempfile::TempDir,
    pub probe_dir: PathBuf,
    /// `None`: the suite's shared `target/fixtures`, so builds are shared (and the test history is not
    /// read: see [`tool_command`]).
    pub target_dir: Option<PathBuf>,
    /// With a target directory of its own: cargo's build directory, when the builds are shared anyway.
    build_dir: Option<PathBuf>,
}

impl Project {
    pub fn copy_of(fixture: &str) -> Project {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(fixture);
        copy_dir(&Path::new(REPO).join("fixtures").join(fixture), &dir);
        let probe_dir = root.path().join("probe");
        fs::create_dir(&probe_dir).unwrap();
        Project {
            _root: root,
            dir,
            cluster_parent: ram_dir("pgtest-e2e-"),
            probe_dir,
            target_dir: None,
            build_dir: None,
        }
    }

    /// A copy of a fixture without dependencies, building into a target directory of its own (so with a
    /// cache, kept databases and a test history of its own; it builds in seconds); `None` (skipped)
    /// without PostgreSQL.
    pub fn with_own_target(fixture: &str) -> Option<Project> {
        if !postgres_available() {
            return None;
        }
        let mut project = Project::copy_of(fixture);
        project.target_dir = Some(project.dir.join("target"));
        Some(project)
    }

    /// A copy of a fixture whose runs keep what cargo-pgtest keeps under the target directory (the
    /// cluster cache, kept databases, the test history) apart from every other run's, while building
    /// into the shared `target/fixtures` all the same: a target directory of its own, and the shared one
    /// as cargo's build directory (`build.build-dir`, cargo 1.91 and later; an older cargo builds
    /// everything anew in the project's own).
    pub fn with_state_apart(fixture: &str) -> Project {
        let mut project = Project::copy_of(fixture);
        project.target_dir = Some(project.dir.join("target"));
        project.build_dir = Some(shared_target());
        project
    }

    /// `cargo-pgtest pgtest <args>` in the project, with a scrubbed environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = command_in(args, &self.dir, self.target_dir.as_deref());
        if let Some(dir) = &self.build_dir {
            command.env("CARGO_BUILD_BUILD_DIR", dir);
        }
        command
            .env("PGTEST_TMPDIR", self.cluster_parent.path())
            .env("PROBE_DIR", &self.probe_dir)
            .stdin(Stdio::null());
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    /// `run`, with variables added to the environment (the probe fixture's faults are asked for so).
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        Run::from(command.output().expect("cargo-pgtest runs"))
    }

    /// Appends `text` to the project's `file`.
    pub fn append(&self, file: &str, text: &str) {
        let path = self.dir.join(file);
        let contents = fs::read_to_string(&path).unwrap() + text;
        fs::write(path, contents).unwrap();
    }

    /// Appends `text` to the project's Cargo.toml.
    pub fn append_to_manifest(&self, text: &str) {
        self.append("Cargo.toml", text);
    }

    /// Starts `cargo pgtest <args>` on `fixtures/fault-probe`, whose arguments pick its blocking test, and
    /// waits until that test is running.
    pub fn start_blocked(&self, args: &[&str]) -> Child {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.wait_for_probe("started");
        child
    }

    /// The process id the blocking test wrote once it started.
    pub fn blocked_test_pid(&self) -> i32 {
        fs::read_to_string(self.probe_dir.join("started"))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Waits (with a deadline) for the fixture's blocking test to say it started: the file written, not
    /// only created (the fixture writes its pid into it).
    pub fn wait_for_probe(&self, file: &str) {
        let path = self.probe_dir.join(file);
        poll(Duration::from_secs(300), || {
            fs::read_to_string(&path)
                .is_ok_and(|text| !text.is_empty())
                .then_some(())
                .ok_or_else(|| format!("{} never appeared with its content", path.display()))
        })
        .unwrap();
    }

    pub fn release_probe(&self) {
        fs::write(self.probe_dir.join("release"), "").unwrap();
    }

    /// Fails unless, within a deadline, the run directory's parent is empty and no process mentions it.
    pub fn assert_nothing_left(&self) {
        let parent = self.cluster_parent.path();
        poll(Duration::from_secs(10), || nothing_left_in(parent)).unwrap();
    }
}

/// `cargo-pgtest pgtest <args>` in `cwd` with only the environment a test may rely on, building into the
/// suite's shared `target/fixtures`, without the test history (`--no-history`).
pub fn tool_command<S: AsRef<OsStr>>(args: &[S], cwd: &Path) -> Command {
    command_in(args, cwd, None)
}

/// [`tool_command`], building into `target_dir` when given. Only a run on a target directory of its own
/// reads and adds to the test history there: on the shared one every earlier run of the suite (and of
/// the suite before) has left its history, from which a run would form read-only groups an earlier run
/// did not, so its outcome would depend on what ran before it.
fn command_in<S: AsRef<OsStr>>(args: &[S], cwd: &Path, target_dir: Option<&Path>) -> Command {
    let mut command = scrubbed_pgtest();
    command.current_dir(cwd);
    match target_dir {
        Some(dir) => command.args(args).env("CARGO_TARGET_DIR", dir),
        None => command
            .args(without_history(args))
            .env("CARGO_TARGET_DIR", shared_target()),
    };
    command
}

/// `cargo-pgtest pgtest` with only the environment a test may rely on: the toolchain's variables, `CI`,
/// no colour, and [`lean_builds`].
pub fn scrubbed_pgtest() -> Command {
    let mut command = Command::new(BINARY);
    command.arg("pgtest").env_clear();
    for name in [
        "PATH",
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "CI",
    ] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
        .env(
            "CARGO",
            std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
        )
        .env("CARGO_TERM_COLOR", "never")
        .env("NO_COLOR", "1");
    lean_builds(&mut command);
    command
}

/// Fixture builds without incremental state or debug info: neither is used by a test, and together they
/// are most of a build's size on disk (a CI machine's disk can be small). Every build into the shared
/// `target/fixtures` must use the same settings, or cargo keeps a second copy of each dependency.
pub fn lean_builds(command: &mut Command) -> &mut Command {
    command
        .env("CARGO_INCREMENTAL", "0")
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env("CARGO_PROFILE_TEST_DEBUG", "false")
}

/// `args` with `--no-history` added, unless they have it: first, or after a leading `list` (which must
/// come first).
fn without_history<S: AsRef<OsStr>>(args: &[S]) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    if !args.iter().any(|arg| arg == "--no-history") {
        let at = usize::from(args.first().is_some_and(|arg| arg == "list"));
        args.insert(at, "--no-history".into());
    }
    args
}

/// What one run printed, and how it ended.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// stdout and stderr together, to look for a line in either.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    pub fn expect(&self, code: i32, lines: &[&str]) -> &Run {
        let all = self.all();
        assert_eq!(self.code, Some(code), "exit code\n{all}");
        for line in lines {
            assert!(all.contains(line), "missing {line:?} in\n{all}");
        }
        self
    }

    /// The JSON events of a run made with `--json -`.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

/// Runs `commands` at the same time, each to its end: what each printed, in order.
pub fn run_at_once(commands: impl IntoIterator<Item = Command>) -> Vec<Run> {
    let children: Vec<Child> = commands
        .into_iter()
        .map(|mut command| {
            command
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("cargo-pgtest starts")
        })
        .collect();
    children
        .into_iter()
        .map(|child| Run::from(child.wait_with_output().unwrap()))
        .collect()
}

/// Calls `check` until it succeeds or `timeout` has passed, then returns its last error.
pub fn poll(
    timeout: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Fails unless process `pid` is gone within `timeout`; `what` says whose it was.
pub fn assert_gone(pid: i32, timeout: Duration, what: &str) {
    poll(timeout, || {
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
            Err(_) => Ok(()),
            Ok(()) => Err(format!("{what} {pid} is still running")),
        }
    })
    .unwrap();
}

/// The names in `dir`, sorted (none when it is not there).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|read| {
            read.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Ok if `dir` is empty and no process has it on its command line (a postmaster's `-D <data dir>`).
pub fn nothing_left_in(dir: &Path) -> Result<(), String> {
    fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let entries = entries(dir);
    let processes = processes_mentioning(dir);
    if entries.is_empty() && processes.is_empty() {
        return Ok(());
    }
    Err(format!(
        "files {entries:?} in {}, processes {processes:?}",
        dir.display()
    ))
}

/// Waits, up to `deadline`, until no process mentions `path` (a run's processes dying with it).
pub fn no_process_mentions(path: &Path, deadline: Duration) -> Result<(), String> {
    poll(deadline, || {
        let left = processes_mentioning(path);
        left.is_empty()
            .then_some(())
            .ok_or_else(|| format!("still running: {left:?}"))
    })
}

/// `<pid>: <command line>` of every process whose command line contains `path`.
pub fn processes_mentioning(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|entry| {
            let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle.as_ref()).then(|| {
                format!(
                    "{}: {}",
                    entry.file_name().to_string_lossy(),
                    cmdline.trim_end()
                )
            })
        })
        .collect()
}

/// `psql URL -XAtc SQL` from another process, with nothing of the test's environment.
pub fn psql(url: &str, sql: &str) -> Output {
    Command::new("psql")
        .args([url, "-XAtc", sql])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("psql runs")
}

/// [`psql`]'s answer, trimmed; fails unless it succeeded.
pub fn psql_answer(url: &str, sql: &str) -> String {
    let output = psql(url, sql);
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn copy_dir(from: &Path, to: &Path) {
    if let Some(why) = without_fixtures().filter(|_| !from.exists()) {
        std::panic::resume_unwind(Box::new(NoFixtures(why)));
    }
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().map(Result::unwrap) {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            fs::copy(entry.path(), &target).unwrap();
            // The original's modification time: copies of one fixture build into the shared target
            // directory under one name (cargo hashes a package's path relative to its workspace), so a copy
            // whose files looked newer would rebuild and replace the test binary another copy's run is
            // starting ("could not start …: No such file").
            let modified = entry.metadata().and_then(|m| m.modified()).unwrap();
            let copied = fs::File::options().write(true).open(&target).unwrap();
            copied.set_modified(modified).unwrap();
        }
    }
}
