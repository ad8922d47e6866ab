//! Target 4's reference servers, started with pg_ctl the way a user would: a hand-tuned one with its data in
//! RAM, and a stock one on disk. A guard stops each and removes its directory when dropped, on a panic too;
//! the directories of a bench that was killed are cleaned up by the next one.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::unistd::{chown, Uid, User};

use super::context::{self, Context};

/// Name prefix of every directory a server of ours lives in.
const PREFIX: &str = "pgtest-bench-";
/// The account a server runs as when we are root (PostgreSQL refuses root).
const SERVER_USER: &str = "postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// Data on tmpfs, fsync, synchronous_commit and full_page_writes off.
    HandTuned,
    /// Data on disk, postgresql.conf as initdb wrote it.
    Stock,
}

impl Tuning {
    fn key(self) -> &'static str {
        match self {
            Tuning::HandTuned => "tuned",
            Tuning::Stock => "stock",
        }
    }
}

pub struct Server {
    pub tuning: Tuning,
    /// `postgres://postgres@<socket dir, percent-encoded>:5432/postgres`.
    pub url: String,
    base: PathBuf,
    bin: PathBuf,
    started: bool,
}

/// The parent of a server's directory: tmpfs for the hand-tuned server, disk (under target/) for the stock one.
fn parent(ctx: &Context, tuning: Tuning) -> PathBuf {
    match tuning {
        Tuning::HandTuned => PathBuf::from("/dev/shm"),
        Tuning::Stock => ctx.area.join("servers"),
    }
}

impl Server {
    /// initdb, write the settings, `pg_ctl start -w`. Whatever fails, the guard already owns the directory.
    pub fn start(ctx: &Context, tuning: Tuning, bin: &Path) -> Result<Server, String> {
        Server::start_named(ctx, tuning, bin, tuning.key())
    }

    /// [`Server::start`], for a scenario that needs a server of its own beside another one of the same
    /// tuning: `name` tells their directories apart.
    pub fn start_named(
        ctx: &Context,
        tuning: Tuning,
        bin: &Path,
        name: &str,
    ) -> Result<Server, String> {
        let parent = parent(ctx, tuning);
        fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let base = parent.join(format!("{PREFIX}{}-{name}", std::process::id()));
        let mut server = Server {
            tuning,
            url: String::new(),
            base,
            bin: bin.to_owned(),
            started: false,
        };
        server
            .setup(ctx)
            .map_err(|e| format!("the {} server: {e}", tuning.key()))?;
        Ok(server)
    }

    fn setup(&mut self, ctx: &Context) -> Result<(), String> {
        let io = |what: &str, e: io::Error| format!("{what}: {e}");
        let _ = fs::remove_dir_all(&self.base);
        fs::create_dir(&self.base).map_err(|e| io("create", e))?;
        fs::set_permissions(&self.base, fs::Permissions::from_mode(0o700))
            .map_err(|e| io("chmod", e))?;
        if Uid::effective().is_root() {
            let user = User::from_name(SERVER_USER).ok().flatten().ok_or_else(|| {
                format!("running as root needs a `{SERVER_USER}` account to run the server as")
            })?;
            chown(&self.base, Some(user.uid), Some(user.gid)).map_err(|e| format!("chown: {e}"))?;
        }
        let socket_dir = self.base.join("sock");
        if socket_dir.as_os_str().len() > 90 {
            return Err(format!(
                "{} is too long for a Unix socket path",
                socket_dir.display()
            ));
        }
        self.as_server(ctx, "mkdir", &[socket_dir.as_os_str()], "mkdir")?;
        let data = self.data();
        self.as_server(
            ctx,
            &self.tool("initdb"),
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
            ],
            "initdb",
        )?;
        // Only where to listen: a Unix socket in our own directory, no TCP.
        let mut settings = format!(
            "\n# benches/speed.rs\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = 5432\n",
            socket_dir.display()
        );
        if self.tuning == Tuning::HandTuned {
            settings.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let conf = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).map_err(|e| io("read postgresql.conf", e))?;
        text.push_str(&settings);
        fs::write(&conf, text).map_err(|e| io("write postgresql.conf", e))?;
        let log = self.base.join("server.log");
        self.started = true;
        self.as_server(
            ctx,
            &self.tool("pg_ctl"),
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
            "pg_ctl start",
        )
        .map_err(|e| format!("{e}\n--- server log ---\n{}", context::tail(&log, 20)))?;
        self.url = format!(
            "postgres://postgres@{}:5432/postgres",
            percent_encode(&socket_dir.to_string_lossy())
        );
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.base.join("data")
    }

    fn tool(&self, name: &str) -> String {
        self.bin.join(name).to_string_lossy().into_owned()
    }

    /// Runs a program as the server's account (via runuser when we are root).
    fn as_server(
        &self,
        ctx: &Context,
        program: &str,
        args: &[&std::ffi::OsStr],
        what: &str,
    ) -> Result<(), String> {
        let mut command = if Uid::effective().is_root() {
            let mut command = ctx.command("runuser", &self.base);
            command.args(["-u", SERVER_USER, "--", program]);
            command
        } else {
            ctx.command(program, &self.base)
        };
        command.args(args);
        let log = ctx.logs.join(format!(
            "server-{}-{}",
            self.base.file_name().unwrap_or_default().to_string_lossy(),
            what.replace(' ', "-")
        ));
        let finished = context::run(&mut command, &log, Duration::from_secs(120))
            .map_err(|e| format!("{what}: {e}"))?;
        if finished.success() {
            Ok(())
        } else {
            Err(format!("{what} failed: {}", finished.describe()))
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.started {
            stop(&self.bin, &self.data());
        }
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// `pg_ctl stop` (fast, then immediate), as the server's account.
fn stop(bin: &Path, data: &Path) {
    if !data.join("postmaster.pid").exists() {
        return;
    }
    for mode in ["fast", "immediate"] {
        let pg_ctl = bin.join("pg_ctl");
        let mut command = if Uid::effective().is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", SERVER_USER, "--"]).arg(&pg_ctl);
            command
        } else {
            Command::new(&pg_ctl)
        };
        let status = command
            .arg("-D")
            .arg(data)
            .args(["-m", mode, "-w", "-t", "30", "stop"])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if status.is_ok_and(|s| s.success()) {
            return;
        }
    }
}

/// Stops the servers and removes the directories of earlier benches that did not get to clean up
/// (killed); only directories named after a process that no longer runs.
pub fn clean_stale(ctx: &Context, bin: &Path) {
    for tuning in [Tuning::HandTuned, Tuning::Stock] {
        let Ok(entries) = fs::read_dir(parent(ctx, tuning)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            eprintln!(
                "note: removing {} left by an earlier bench",
                entry.path().display()
            );
            stop(bin, &entry.path().join("data"));
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A socket directory as the host of a URL (sqlx and tokio-postgres decode it).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
