//! Where everything lives, the knobs (`BENCH_RUNS`, `BENCH_JOBS`, `BENCH_ONLY`), the clean environment every
//! child process gets, and running a child with a time limit.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const BINARY: &str = env!("CARGO_BIN_EXE_cargo-pgtest");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Variables a child keeps from our environment; everything else (cargo's CARGO_* for the bench itself,
/// a stray DATABASE_URL…) is dropped.
const KEPT: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "PGTEST_PG_BIN",
    "PGTEST_SERVER_USER",
];

pub struct Context {
    pub repo: PathBuf,
    /// `target/bench-projects`: the generated projects' CARGO_TARGET_DIR, with their sources under `src/`.
    pub area: PathBuf,
    /// Every run's JSON events and output, for a look after the fact.
    pub logs: PathBuf,
    /// Rounds of every scenario (`BENCH_RUNS`, default 5).
    pub runs: usize,
    /// `--jobs` of the runs compared (`BENCH_JOBS`, default: the number of CPUs, as cargo-pgtest's default).
    pub jobs: usize,
    pub cpus: usize,
    /// `BENCH_ONLY=1,4`: only these scenarios (2 and 5 come from the runs of 3).
    only: Option<BTreeSet<u8>>,
}

impl Context {
    pub fn from_env() -> Context {
        let repo = PathBuf::from(REPO);
        let area = repo.join("target").join("bench-projects");
        let cpus = thread::available_parallelism().map_or(1, usize::from);
        let number = |name: &str, default: usize| match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| panic!("{name} must be a positive whole number, not {value:?}")),
            _ => default,
        };
        let only = std::env::var("BENCH_ONLY")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                v.split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<u8>()
                            .unwrap_or_else(|_| panic!("BENCH_ONLY: bad scenario {s:?}"))
                    })
                    .collect()
            });
        Context {
            logs: area.join("logs"),
            runs: number("BENCH_RUNS", 5),
            jobs: number("BENCH_JOBS", cpus),
            cpus,
            only,
            repo,
            area,
        }
    }

    pub fn wants(&self, scenario: u8) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.contains(&scenario))
    }

    pub fn project_dir(&self, name: &str) -> PathBuf {
        self.area.join("src").join(name)
    }

    /// A command with only the environment a user's shell would hand cargo-pgtest or cargo.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, cwd: &Path) -> Command {
        let mut command = Command::new(program);
        command.current_dir(cwd).env_clear().stdin(Stdio::null());
        for name in KEPT {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command
            .env("CARGO", cargo())
            .env("CARGO_TARGET_DIR", &self.area)
            .env("CARGO_TERM_COLOR", "never")
            .env("NO_COLOR", "1");
        command
    }
}

/// The cargo that runs this bench.
pub fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// How a child ended, and where its output went.
pub struct Finished {
    /// `None` when it ran out of time and was stopped.
    pub status: Option<ExitStatus>,
    pub wall: Duration,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The exit code or what stopped it, and the end of its output: enough to see why it failed.
    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(status) => status.to_string(),
            None => "timed out".to_owned(),
        };
        format!(
            "{status}\n--- {} (end) ---\n{}\n--- {} (end) ---\n{}",
            self.stdout.display(),
            tail(&self.stdout, 15),
            self.stderr.display(),
            tail(&self.stderr, 25)
        )
    }
}

/// Runs `command` to the end with its output in `<log>.out` / `<log>.err`; a child still running after
/// `limit` gets SIGTERM, then SIGKILL.
pub fn run(command: &mut Command, log: &Path, limit: Duration) -> io::Result<Finished> {
    if let Some(parent) = log.parent() {
        fs::create_dir_all(parent)?;
    }
    let stdout = log.with_extension("out");
    let stderr = log.with_extension("err");
    command
        .stdout(fs::File::create(&stdout)?)
        .stderr(fs::File::create(&stderr)?);
    let started = Instant::now();
    let mut child = command.spawn()?;
    let pid = Pid::from_raw(child.id() as i32);
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
    let status = match receiver.recv_timeout(limit) {
        Ok(status) => Some(status?),
        Err(_) => {
            let _ = kill(pid, Signal::SIGTERM);
            if receiver.recv_timeout(Duration::from_secs(15)).is_err() {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = receiver.recv();
            }
            None
        }
    };
    Ok(Finished {
        status,
        wall: started.elapsed(),
        stdout,
        stderr,
    })
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
