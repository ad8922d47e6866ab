//! Shared by the end-to-end tests that drive the real binary by hand (faults, security, cache): a private
//! copy of a fixture project, the command to run cargo-pgtest on it, and checks that a run left nothing.
#![allow(dead_code)]

pub mod terminal;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_cargo-pgtest");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Whether this is a CI run: `CI` is `true` or `1` (in any case). There a test that cannot run here is
/// a failure, not a skip: CI must not pass by running nothing.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| means_ci(&value))
}

/// `CI`'s values that mean CI; empty, `false`, `0` and anything else do not.
pub fn means_ci(value: &str) -> bool {
    value == "1" || value.eq_ignore_ascii_case("true")
}

/// A test that cannot run on this machine: outside CI it says why on stderr (the caller then returns);
/// in CI it fails with the reason.
pub fn skip(why: &str) {
    assert!(!in_ci(), "CI must run every test, but {why}");
    eprintln!("skipped: {why}");
}

/// Whether PostgreSQL is there to test with. Without it a test returns early, except in CI, where that is
/// a failure.
pub fn postgres_available() -> bool {
    let which = Command::new(BINARY)
        .args(["pgtest", "--which-postgres"])
        .output()
        .expect("cargo-pgtest runs");
    if which.status.success() {
        return true;
    }
    let why = String::from_utf8_lossy(&which.stderr);
    skip(&format!("PostgreSQL is missing: {}", why.trim()));
    false
}

/// Whether this test runs as root, which `what` needs. Otherwise it is skipped with a note (see `skip`).
pub fn root_for(what: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    skip(&format!(
        "{what} needs root, and this suite runs as an ordinary user"
    ));
    false
}

/// A private copy of `fixtures/<name>`, a directory the cluster's run directory goes in (`PGTEST_TMPDIR`,
/// in RAM when it can be), and one for the fixture's tests to talk through (`PROBE_DIR`).
pub struct Project {
    _root: tempfile::TempDir,
    pub dir: PathBuf,
    pub cluster_parent: tempfile::TempDir,
    pub probe_dir: PathBuf,
    /// `None`: the suite's shared `target/fixtures`, so builds are shared.
    pub target_dir: Option<PathBuf>,
}

impl Project {
    pub fn copy_of(fixture: &str) -> Project {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(fixture);
        copy_dir(&Path::new(REPO).join("fixtures").join(fixture), &dir);
        let probe_dir = root.path().join("probe");
        fs::create_dir(&probe_dir).unwrap();
        let shm = Path::new("/dev/shm");
        let cluster_parent = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("pgtest-e2e-")
                .tempdir_in(shm)
                .unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        Project {
            _root: root,
            dir,
            cluster_parent,
            probe_dir,
            target_dir: None,
        }
    }

    /// `cargo-pgtest pgtest <args>` in the project, with a scrubbed environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = tool_command(args, &self.dir);
        let target = self
            .target_dir
            .clone()
            .unwrap_or_else(|| Path::new(REPO).join("target/fixtures"));
        command
            .env("CARGO_TARGET_DIR", target)
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

    /// Appends `text` to the project's Cargo.toml.
    pub fn append_to_manifest(&self, text: &str) {
        let manifest = self.dir.join("Cargo.toml");
        let contents = fs::read_to_string(&manifest).unwrap() + text;
        fs::write(manifest, contents).unwrap();
    }

    /// Starts a run of `fixtures/fault-probe`'s blocking test and waits until that test is running.
    pub fn start_blocked(&self) -> std::process::Child {
        let child = self
            .command(&["blocks_until_released"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.wait_for_probe("started");
        child
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
/// suite's shared `target/fixtures` unless told otherwise.
pub fn tool_command<S: AsRef<std::ffi::OsStr>>(args: &[S], cwd: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg("pgtest")
        .args(args)
        .current_dir(cwd)
        .env_clear();
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
        .env("CARGO_TARGET_DIR", Path::new(REPO).join("target/fixtures"))
        .env("CARGO_TERM_COLOR", "never")
        .env("NO_COLOR", "1");
    command
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
    pub fn expect(&self, code: i32, lines: &[&str]) -> &Run {
        let all = format!("{}\n{}", self.stdout, self.stderr);
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

/// Ok if `dir` is empty and no process has it on its command line (a postmaster's `-D <data dir>`).
pub fn nothing_left_in(dir: &Path) -> Result<(), String> {
    let entries: Vec<String> = fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|entry| {
            entry
                .ok()
                .map(|e| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
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

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().map(Result::unwrap) {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}
