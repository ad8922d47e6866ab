//! `--server`: cargo-pgtest on an existing PostgreSQL server that each test starts itself (initdb and pg_ctl
//! from the system's PostgreSQL, as `postgres` when root, on 127.0.0.1 with passwords): a fixture runs
//! there, no database of the run is left after it — nor after Ctrl-C — and a SIGKILLed run's databases are
//! removed by the next run, never those of a run that is still alive.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{self, poll, ports, Project};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, Uid, User};

const SUPERUSER_PASSWORD: &str = "super-secret";
/// The role the runs use: it may create databases, and is no superuser.
const APP_ROLE: &str = "app";
const APP_PASSWORD: &str = "app p@ss";
/// A role that may log in and nothing more.
const PLAIN_ROLE: &str = "plain";

/// A server of the test's own, stopped and removed when dropped.
struct TestServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl TestServer {
    /// Starts a server, or says why it cannot (see [`support::skip`]).
    fn start() -> Option<TestServer> {
        TestServer::start_with(false)
    }

    /// `start`; with `tls`, the server has a self-signed certificate and refuses `app` without TLS.
    fn start_with(tls: bool) -> Option<TestServer> {
        if !support::postgres_available() {
            return None;
        }
        let which = Command::new(support::BINARY)
            .args(["pgtest", "--which-postgres"])
            .output()
            .unwrap();
        let (_, bin) = support::parse_which(&String::from_utf8_lossy(&which.stdout)).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("pgtest-server-")
            .tempdir()
            .unwrap();
        let mut server = TestServer { dir, bin, port: 0 };
        server.init(tls);
        // The server binds its port itself: one found free may be taken before it starts, then it is
        // started again on another.
        ports::on_a_free_port(|port| {
            server.port = port;
            server.start_on_port()
        });
        server.psql_as_superuser(&format!(
            "CREATE ROLE {APP_ROLE} LOGIN CREATEDB PASSWORD '{APP_PASSWORD}'; \
             CREATE ROLE {PLAIN_ROLE} LOGIN PASSWORD 'plain'"
        ));
        Some(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// initdb, and the server's settings but its port.
    fn init(&self, tls: bool) {
        let base = self.dir.path();
        fs::set_permissions(base, fs::Permissions::from_mode(0o700)).unwrap();
        let password_file = base.join("password");
        fs::write(&password_file, SUPERUSER_PASSWORD).unwrap();
        let mut server_files = vec![base.to_owned(), password_file.clone()];
        if tls {
            server_files.extend(make_certificate(base));
        }
        if Uid::effective().is_root() {
            let user = User::from_name("postgres")
                .unwrap()
                .expect("running as root needs a `postgres` account to run the server as");
            for path in &server_files {
                nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
            }
        }
        let data = self.data_dir();
        self.as_server_user(&[
            self.tool("initdb"),
            "-D".into(),
            data.display().to_string(),
            "-U".into(),
            "postgres".into(),
            "--auth=scram-sha-256".into(),
            format!("--pwfile={}", password_file.display()),
        ])
        .unwrap();
        let mut settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n",
            base.display()
        );
        if tls {
            settings.push_str(&format!(
                "ssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'\n",
                base.display()
            ));
            // The first matching line wins: `app` without TLS is turned away.
            let hba = data.join("pg_hba.conf");
            let text = format!(
                "hostnossl all {APP_ROLE} 127.0.0.1/32 reject\n{}",
                fs::read_to_string(&hba).unwrap()
            );
            fs::write(&hba, text).unwrap();
        }
        let conf = data.join("postgresql.conf");
        let text = fs::read_to_string(&conf).unwrap() + &settings;
        fs::write(&conf, text).unwrap();
    }

    /// Starts the server on `self.port`; `Err` when another process has that port.
    fn start_on_port(&self) -> Result<(), String> {
        let started = self.as_server_user(&[
            self.tool("pg_ctl"),
            "-D".into(),
            self.data_dir().display().to_string(),
            "-l".into(),
            self.dir.path().join("log").display().to_string(),
            "-o".into(),
            format!("-p {}", self.port),
            "-w".into(),
            "start".into(),
        ]);
        match started {
            Err(why) if ports::says_port_taken(&why) => Err(why),
            Err(why) => panic!("the test server did not start: {why}"),
            Ok(()) => Ok(()),
        }
    }

    fn tool(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }

    /// Runs `args` as the server's account; `Err` with its output and the server's log if it failed.
    fn as_server_user(&self, args: &[String]) -> Result<(), String> {
        let mut command = if Uid::effective().is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]);
            command
        } else {
            Command::new(&args[0])
        };
        let args = if Uid::effective().is_root() {
            args
        } else {
            &args[1..]
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if output.status.success() {
            return Ok(());
        }
        let log = fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        Err(format!(
            "{args:?}: {}\n{}\n{log}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }

    /// The URL a run gets: the `app` role over TCP, password percent-encoded.
    fn url(&self) -> String {
        self.url_as(
            APP_ROLE,
            &APP_PASSWORD.replace(' ', "%20").replace('@', "%40"),
        )
    }

    fn url_with_tls_off(&self) -> String {
        format!("{}?sslmode=disable", self.url())
    }

    fn url_as(&self, role: &str, password: &str) -> String {
        format!(
            "postgres://{role}:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    fn psql_as_superuser(&self, sql: &str) -> String {
        let output = Command::new("psql")
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(self.url_as("postgres", SUPERUSER_PASSWORD))
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// The databases on the server that cargo-pgtest made (or sqlx made for a `#[sqlx::test]`).
    fn run_databases(&self) -> Vec<String> {
        self.psql_as_superuser(
            "SELECT datname FROM pg_database WHERE datname LIKE 'pgtest%' \
             OR datname LIKE '\\_sqlx\\_test%' ORDER BY 1",
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        if data.join("postmaster.pid").exists() {
            let args = [
                self.tool("pg_ctl"),
                "-D".into(),
                data.display().to_string(),
                "-m".into(),
                "immediate".into(),
                "-w".into(),
                "stop".into(),
            ];
            // A failure to stop must not hide the test's own failure.
            let _ = self.as_server_user(&args);
        }
    }
}

/// A self-signed certificate and its key in `dir`, made with the `openssl` command; returns their paths.
fn make_certificate(dir: &Path) -> [PathBuf; 2] {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let output = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command runs (Debian: apt-get install openssl)");
    assert!(
        output.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    [cert, key]
}

/// Starts the fault probe's blocking test against `server` and waits until it runs.
fn start_blocked(project: &Project, server: &TestServer) -> Child {
    project.start_blocked(&["--server", &server.url(), "blocks_until_released"])
}

fn assert_no_database_left(server: &TestServer) {
    poll(Duration::from_secs(10), || {
        let left = server.run_databases();
        left.is_empty()
            .then_some(())
            .ok_or_else(|| format!("left on the server: {left:?}"))
    })
    .unwrap();
}

fn assert_empty(dir: &Path) {
    support::nothing_left_in(dir).unwrap();
}

fn a_fixture_runs_on_an_existing_server_and_leaves_no_database_there() {
    let Some(server) = TestServer::start() else {
        return;
    };
    let project = Project::copy_of("sqlx-app");
    // The fixture's work_mem setting is the one thing a server not ours does not take.
    let run = project.run_with(
        &[
            "--server",
            &server.url(),
            "-v",
            "--",
            "--skip",
            "server_uses_the_configured_work_mem",
        ],
        &[("CARGO_PGTEST_REDACT", "1")],
    );
    run.expect(
        0,
        &[
            "PASS [   0.000s] sqlx-app::isolation each_test_is_alone",
            "PASS [   0.000s] sqlx-app::schema migrate_macro_finds_nothing_to_apply",
            "PASS [   0.000s] sqlx-app::sqlx_test fixtures_can_reuse_the_seed",
            "27 passed, 0 failed, 1 ignored, 1 filtered out",
            "warning: settings ignored: the server is not cargo-pgtest's own",
            "PostgreSQL 15",
            "#[sqlx::test]s connect to the server directly",
        ],
    );
    assert!(!run.stdout.contains("data in RAM"), "{}", run.stdout);
    assert_no_database_left(&server);
    // No cluster of our own was made.
    assert_empty(project.cluster_parent.path());
}

fn the_server_key_and_the_environment_variable_name_the_server_too() {
    let Some(server) = TestServer::start() else {
        return;
    };
    let project = Project::copy_of("fault-probe");
    project
        .run_with(&["passes"], &[("PGTEST_SERVER_URL", &server.url())])
        .expect(0, &["1 passed, 0 failed"]);
    assert_no_database_left(&server);
    project.append_to_manifest(&format!(
        "\n[package.metadata.pgtest]\nserver = \"{}\"\ntmpfs = false\n",
        server.url()
    ));
    project
        .run(&["passes"])
        .expect(0, &["1 passed, 0 failed", "warning: tmpfs ignored"]);
    assert_no_database_left(&server);
    assert_empty(project.cluster_parent.path());
}

fn ctrl_c_drops_every_database_the_run_made() {
    let Some(server) = TestServer::start() else {
        return;
    };
    let project = Project::copy_of("fault-probe");
    let run = start_blocked(&project, &server);
    let during = server.run_databases();
    assert!(
        during.iter().any(|name| name.ends_with("_template")),
        "the run's template is on the server while it runs: {during:?}"
    );
    kill(Pid::from_raw(run.id() as i32), Signal::SIGINT).unwrap();
    let output = support::Run::from(run.wait_with_output().unwrap());
    output.expect(130, &["warning: stopped by SIGINT", "NOT RUN"]);
    assert_no_database_left(&server);
}

fn a_killed_runs_databases_are_removed_by_the_next_run_and_a_live_runs_are_not() {
    let Some(server) = TestServer::start() else {
        return;
    };
    let project = Project::copy_of("fault-probe");
    let mut blocked = start_blocked(&project, &server);
    let blocked_databases = server.run_databases();
    assert!(blocked_databases.len() >= 2, "{blocked_databases:?}");

    // Another run while the first is alive: it leaves the first one's databases alone.
    let other = Project::copy_of("fault-probe");
    other
        .run(&["--server", &server.url(), "passes"])
        .expect(0, &["1 passed, 0 failed"]);
    assert_eq!(server.run_databases(), blocked_databases);

    kill(Pid::from_raw(blocked.id() as i32), Signal::SIGKILL).unwrap();
    blocked.wait().unwrap();
    project.release_probe();
    assert_eq!(
        server.run_databases(),
        blocked_databases,
        "a SIGKILLed run cannot drop its databases itself"
    );
    let next = other.run(&["--server", &server.url(), "-v", "passes"]);
    next.expect(
        0,
        &[
            "1 passed, 0 failed",
            "of earlier runs that are gone",
            &blocked_databases[0],
        ],
    );
    assert_no_database_left(&server);
}

fn a_role_that_may_not_create_databases_is_refused_with_what_to_do() {
    let Some(server) = TestServer::start() else {
        return;
    };
    let project = Project::copy_of("fault-probe");
    project
        .run(&["--server", &server.url_as(PLAIN_ROLE, "plain"), "passes"])
        .expect(
            2,
            &[
                "the role `plain` may not create databases on the server at 127.0.0.1:",
                "ALTER ROLE plain CREATEDB",
            ],
        );
    assert_no_database_left(&server);
}

fn a_server_that_cannot_be_reached_is_a_setup_error_without_the_password() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    // Held for the run, so no other process can listen there meanwhile.
    let (_held, port) = ports::closed_port();
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/postgres");
    let run = project.run(&["--server", &url, "passes"]);
    run.expect(
        2,
        &["could not connect to the server at 127.0.0.1:", "/postgres"],
    );
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
}

fn tls_is_used_when_the_url_asks_for_it() {
    let Some(server) = TestServer::start_with(true) else {
        return;
    };
    let project = Project::copy_of("fault-probe");
    // The server refuses `app` without TLS: cargo-pgtest and the test's psql (PGSSLMODE) both use it.
    let url = format!("{}?sslmode=require", server.url());
    project
        .run(&["--server", &url, "passes"])
        .expect(0, &["1 passed, 0 failed"]);
    let without = project.run(&["--server", &server.url_with_tls_off(), "passes"]);
    without.expect(2, &["could not connect to the server at 127.0.0.1:"]);
    assert_no_database_left(&server);
}

crate::tests! {
    a_fixture_runs_on_an_existing_server_and_leaves_no_database_there,
    the_server_key_and_the_environment_variable_name_the_server_too,
    ctrl_c_drops_every_database_the_run_made,
    a_killed_runs_databases_are_removed_by_the_next_run_and_a_live_runs_are_not,
    a_role_that_may_not_create_databases_is_refused_with_what_to_do,
    a_server_that_cannot_be_reached_is_a_setup_error_without_the_password,
    tls_is_used_when_the_url_asks_for_it,
}
