//! One PostgreSQL server: `postgres` started directly on a prepared data directory (see `data_dir`), ready
//! when postmaster.pid says so, and a stop by signal that also runs when the [`Server`] is dropped.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::binaries::Binaries;
use super::privileges::{self, ServerUser};
use crate::config::Setting;
use crate::platform::parent_death::{self, Guardian};

pub(crate) const DATA_DIR: &str = "data";
pub(crate) const SOCKET_DIR: &str = "socket";
const LOG_FILE: &str = "server.log";
/// The database superuser the tests connect as.
pub(crate) const SUPERUSER: &str = "postgres";
/// With a private socket directory the port number only names the socket file, so it never clashes.
pub(crate) const PORT: u16 = 5432;
const START_DEADLINE: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Settings for a throwaway test server: no durability, no background work a short run does not need.
/// Every one still exists in PostgreSQL 13–18 (unlike the seed's `checkpoint_segments`, removed in 9.5).
pub(crate) const FAST_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("wal_level", "minimal"),
    ("max_wal_senders", "0"),
    ("archive_mode", "off"),
    ("checkpoint_timeout", "1d"),
    ("max_wal_size", "1GB"),
    ("min_wal_size", "2MB"),
    ("wal_recycle", "off"),
    ("random_page_cost", "1.0"),
    ("autovacuum", "off"),
    ("jit", "off"),
    ("huge_pages", "off"),
    ("log_checkpoints", "off"),
    ("log_min_messages", "warning"),
    ("logging_collector", "off"),
    ("listen_addresses", ""),
    // Shared-memory segments as files in the data directory, not /dev/shm: gone with the run directory even
    // when the server was killed before it could unlink them.
    ("dynamic_shared_memory_type", "mmap"),
];

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("could not run {program}: {source}")]
    Spawn { program: PathBuf, source: io::Error },
    #[error(
        "could not start the watcher (`sh`) that stops the server if cargo-pgtest is killed: {0}; check that \
         /bin/sh runs"
    )]
    Guardian(#[source] io::Error),
    #[error("initdb failed ({status}):\n{output}")]
    Initdb { status: String, output: String },
    #[error(
        "PostgreSQL rejected the setting `{name} = \"{value}\"` from {origin}: {server_message}; \
         fix or remove it (PostgreSQL's list: https://www.postgresql.org/docs/current/runtime-config.html)"
    )]
    RejectedSetting {
        name: String,
        value: String,
        origin: String,
        server_message: String,
    },
    #[error(
        "the directory holding the cluster ({dir}) is full: {detail}; free some space, give the tmpfs more room \
         (`sudo mount -o remount,size=2G /dev/shm`), point PGTEST_TMPDIR elsewhere, or use --no-tmpfs"
    )]
    NoSpace { dir: PathBuf, detail: String },
    #[error("the PostgreSQL server did not start; the end of its log ({log}):\n{tail}")]
    StartFailed { log: PathBuf, tail: String },
    #[error("the PostgreSQL server was not ready after {seconds} s; the end of its log ({log}):\n{tail}")]
    StartTimeout {
        seconds: u64,
        log: PathBuf,
        tail: String,
    },
    #[error("could not write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Privileges(#[from] privileges::PrivilegesError),
}

/// Where the server listens and who may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub(crate) socket_dir: PathBuf,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: String,
    /// An existing server's address (`--server`), which replaces the socket, port and user above.
    pub(crate) remote: Option<super::endpoint::Remote>,
}

/// A running server. Dropping it stops it.
#[derive(Debug)]
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) endpoint: Endpoint,
    pub(crate) data_dir: PathBuf,
    pub(crate) log_path: PathBuf,
    /// Where the kernel does not stop the server when cargo-pgtest dies: the process that does. Fields drop
    /// after `Drop::drop` has stopped the server, so it is released only then.
    guardian: Option<Guardian>,
}

/// Everything `initdb` and `postgres` need to know.
pub(crate) struct ServerSpec<'a> {
    pub(crate) binaries: &'a Binaries,
    pub(crate) run_dir: &'a Path,
    pub(crate) server_user: &'a ServerUser,
    /// User settings, applied over [`FAST_SETTINGS`].
    pub(crate) settings: &'a [Setting],
    pub(crate) max_connections: u32,
    pub(crate) shared_buffers_kib: u32,
}

/// Starts `postgres` on an initialised data directory and waits until it accepts connections.
pub(crate) async fn start(spec: &ServerSpec<'_>) -> Result<Server, ServerError> {
    let data_dir = spec.run_dir.join(DATA_DIR);
    let socket_dir = spec.run_dir.join(SOCKET_DIR);
    let log_path = spec.run_dir.join(LOG_FILE);
    let log = fs::File::create(&log_path).map_err(|source| ServerError::Write {
        path: log_path.clone(),
        source,
    })?;
    let log_err = log.try_clone().map_err(|source| ServerError::Write {
        path: log_path.clone(),
        source,
    })?;

    // A `port` setting (`cargo pgtest serve --port`) names the socket too.
    let port = spec
        .settings
        .iter()
        .rev()
        .find(|setting| setting.name == "port")
        .and_then(|setting| setting.value.parse().ok())
        .unwrap_or(PORT);
    let program = spec.binaries.postgres();
    let mut command = server_command(&program, spec);
    command
        .arg("-D")
        .arg(&data_dir)
        .arg("-k")
        .arg(&socket_dir)
        .args(["-p", &port.to_string()])
        .args(["-c", &format!("max_connections={}", spec.max_connections)])
        .args([
            "-c",
            &format!("shared_buffers={}kB", spec.shared_buffers_kib),
        ]);
    for (name, value) in FAST_SETTINGS {
        command.arg("-c").arg(format!("{name}={value}"));
    }
    for setting in spec.settings {
        command
            .arg("-c")
            .arg(format!("{}={}", setting.name, setting.value));
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        // Its own process group: a Ctrl-C at the terminal reaches cargo-pgtest, which stops the server in order.
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: the closure only makes async-signal-safe system calls.
    // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its children down with it.
    unsafe { command.pre_exec(die_with_parent(libc::SIGQUIT)) };
    let child = command.spawn().map_err(|source| ServerError::Spawn {
        program: program.clone(),
        source,
    })?;

    let mut server = Server {
        child: Some(child),
        endpoint: Endpoint {
            socket_dir,
            port,
            user: SUPERUSER.to_owned(),
            password: String::new(),
            remote: None,
        },
        data_dir,
        log_path,
        guardian: None,
    };
    // The server leads its own process group, whose id is its process id (none if it already exited).
    if let Some(group) = server
        .pid()
        .filter(|_| !parent_death::KERNEL_STOPS_CHILDREN)
    {
        server.guardian = Some(Guardian::watch("QUIT", group).map_err(ServerError::Guardian)?);
    }
    server.wait_until_ready(spec).await?;
    Ok(server)
}

pub(crate) fn server_command(program: &Path, spec: &ServerSpec<'_>) -> Command {
    let mut command = Command::new(program);
    command.env_clear().current_dir(spec.run_dir);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    if spec.server_user.is_other_account {
        command.uid(spec.server_user.uid).gid(spec.server_user.gid);
    }
    command
}

/// The hook that ties a child's life to cargo-pgtest's; see [`parent_death`].
pub(crate) use crate::platform::parent_death::die_with_parent;

impl Server {
    async fn wait_until_ready(&mut self, spec: &ServerSpec<'_>) -> Result<(), ServerError> {
        let pid_file = self.data_dir.join("postmaster.pid");
        let started = Instant::now();
        loop {
            // Line 8 of postmaster.pid is the postmaster's status; "ready" means it accepts connections.
            if let Ok(text) = fs::read_to_string(&pid_file) {
                if text
                    .lines()
                    .nth(7)
                    .is_some_and(|status| status.trim() == "ready")
                {
                    return Ok(());
                }
            }
            let exited = self
                .child
                .as_mut()
                .is_none_or(|child| matches!(child.try_wait(), Ok(Some(_))));
            if exited {
                self.child = None;
                return Err(self.start_failure(spec));
            }
            if started.elapsed() > START_DEADLINE {
                return Err(ServerError::StartTimeout {
                    seconds: START_DEADLINE.as_secs(),
                    log: self.log_path.clone(),
                    tail: self.log_tail(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Explains a server that exited while starting, naming the user setting it rejected when it did.
    fn start_failure(&self, spec: &ServerSpec<'_>) -> ServerError {
        let log = fs::read_to_string(&self.log_path).unwrap_or_default();
        if let Some(error) = rejected_setting(&log, spec.settings) {
            return error;
        }
        if log.contains("No space left on device") {
            let line = log
                .lines()
                .find(|l| l.contains("No space left on device"))
                .unwrap_or_default();
            return ServerError::NoSpace {
                dir: spec.run_dir.to_owned(),
                detail: line.trim().to_owned(),
            };
        }
        ServerError::StartFailed {
            log: self.log_path.clone(),
            tail: last_lines(&log, 20),
        }
    }

    /// The last lines of the server log, for error messages.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        last_lines(
            &fs::read_to_string(&self.log_path).unwrap_or_default(),
            lines,
        )
    }

    /// Whether the postmaster is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Stops the server cleanly, leaving a data directory that starts again without recovery: fast shutdown
    /// (SIGINT), then immediate (SIGQUIT), then SIGKILL, each given a grace period.
    pub(crate) async fn stop(&mut self) {
        self.stop_with(
            &[Signal::SIGINT, Signal::SIGQUIT, Signal::SIGKILL],
            STOP_GRACE,
        )
        .await;
    }

    /// Stops a server whose data is about to be thrown away: immediate shutdown (SIGQUIT) skips the shutdown
    /// checkpoint, then SIGKILL.
    pub(crate) async fn stop_for_good(&mut self) {
        self.stop_with(&[Signal::SIGQUIT, Signal::SIGKILL], STOP_GRACE)
            .await;
    }

    /// Sends each signal in turn until the server has exited, waiting up to `grace` after each; the
    /// runtime goes on meanwhile (reports are printed, signals handled).
    async fn stop_with(&mut self, signals: &[Signal], grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let Some(pid) = child.id() else { return };
        for &signal in signals {
            if kill(Pid::from_raw(pid as i32), signal).is_err() {
                break;
            }
            if tokio::time::timeout(grace, child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = child.try_wait();
    }

    /// [`Self::stop_for_good`] for `Drop`, which cannot wait asynchronously (during a panic, say): polls
    /// the child every millisecond up to the grace period per signal.
    fn stop_blocking(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let Some(pid) = child.id() else { return };
        for signal in [Signal::SIGQUIT, Signal::SIGKILL] {
            if kill(Pid::from_raw(pid as i32), signal).is_err() {
                break;
            }
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let _ = child.try_wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_blocking();
    }
}

/// Finds the user setting a failed start complained about, in PostgreSQL's own words.
fn rejected_setting(log: &str, settings: &[Setting]) -> Option<ServerError> {
    for line in log.lines() {
        let Some(message) = line
            .split_once("FATAL:")
            .or_else(|| line.split_once("LOG:"))
            .map(|(_, m)| m.trim())
        else {
            continue;
        };
        for setting in settings {
            if message.contains(&format!("parameter \"{}\"", setting.name)) {
                return Some(ServerError::RejectedSetting {
                    name: setting.name.clone(),
                    value: setting.value.clone(),
                    origin: setting.origin.to_string(),
                    server_message: message.to_owned(),
                });
            }
        }
    }
    None
}

pub(crate) fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;

    fn setting(name: &str, value: &str) -> Setting {
        Setting {
            name: name.into(),
            value: value.into(),
            origin: Origin {
                table: "[package.metadata.pgtest.settings]".into(),
                manifest: "/p/Cargo.toml".into(),
                line: Some(9),
            },
        }
    }

    #[test]
    fn a_rejected_user_setting_is_named_with_its_origin() {
        let log = "2026-01-01 LOG:  starting\n2026-01-01 FATAL:  unrecognized configuration parameter \"checkpoint_segments\"\n";
        let settings = [
            setting("work_mem", "8MB"),
            setting("checkpoint_segments", "32"),
        ];
        let message = rejected_setting(log, &settings).unwrap().to_string();
        assert!(
            message.contains("`checkpoint_segments = \"32\"`"),
            "{message}"
        );
        assert!(message.contains("/p/Cargo.toml:9"), "{message}");
        assert!(
            message.contains("unrecognized configuration parameter"),
            "{message}"
        );
        let invalid = "FATAL:  invalid value for parameter \"work_mem\": \"lots\"";
        assert!(rejected_setting(invalid, &settings)
            .unwrap()
            .to_string()
            .contains("work_mem"));
        assert!(rejected_setting("FATAL:  something else", &settings).is_none());
    }

    /// A server that stays up through its grace period, on the run's one thread: other tasks (reporting,
    /// signal handling) must go on meanwhile.
    #[test]
    fn stopping_a_server_waits_without_blocking_the_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let child = Command::new("sleep").arg("30").spawn().unwrap();
            let mut server = Server {
                child: Some(child),
                endpoint: Endpoint {
                    socket_dir: PathBuf::new(),
                    port: PORT,
                    user: SUPERUSER.to_owned(),
                    password: String::new(),
                    remote: None,
                },
                data_dir: PathBuf::new(),
                log_path: PathBuf::new(),
                guardian: None,
            };
            let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let ticker = tokio::spawn({
                let ticks = ticks.clone();
                async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
            // SIGCONT leaves `sleep` running, so the whole grace period passes before SIGKILL.
            let grace = Duration::from_millis(300);
            let started = Instant::now();
            server
                .stop_with(&[Signal::SIGCONT, Signal::SIGKILL], grace)
                .await;
            ticker.abort();
            assert!(
                started.elapsed() >= grace,
                "the grace period was waited out"
            );
            assert!(!server.is_running());
            let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed);
            assert!(
                ticks >= 5,
                "other tasks ran {ticks} times while the server stopped"
            );
        });
    }

    #[test]
    fn last_lines_skips_blank_lines() {
        assert_eq!(last_lines("a\n\nb\nc\n\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
    }
}
