//! The gateway against a stand-in server that speaks just enough of the protocol: it opens sessions,
//! answers simple queries and records them. The gateway is given no test databases to make copies through,
//! so no copies are made ahead and every create is made inline, which keeps the expectations exact. The
//! `owner` tests at the end run the gateway on a real cluster, through the run's test databases.

use super::*;
use protocol::{backend, frontend, message, simple_query};
use relay::{read_message, read_startup_packet};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

#[derive(Debug, Default)]
struct Seen {
    /// Sessions opened by clients.
    sessions: usize,
    /// (session, query) in the order they came.
    queries: Vec<(usize, String)>,
}

fn startup(database: &str, application: &str) -> Vec<u8> {
    protocol::startup_message(&[
        ("user", "postgres"),
        ("database", database),
        ("application_name", application),
    ])
}

/// Serves one session of the stand-in server.
async fn fake_session(mut stream: UnixStream, seen: Arc<Mutex<Seen>>) {
    let Some(packet) = read_startup_packet(&mut stream).await else {
        return;
    };
    if packet.windows(6).any(|w| w == b"silent") {
        // Never greets: the gateway must give up on it.
        let _ = stream.read(&mut [0u8; 1]).await;
        return;
    }
    let session = {
        let mut seen = seen.lock().unwrap();
        seen.sessions += 1;
        seen.sessions
    };
    let mut greeting = message(backend::AUTHENTICATION, &[0, 0, 0, 0]);
    greeting.extend(message(
        backend::PARAMETER_STATUS,
        b"server_version\x0015\0",
    ));
    greeting.extend(message(
        backend::BACKEND_KEY_DATA,
        &(session as u64).to_be_bytes(),
    ));
    greeting.extend(message(backend::READY_FOR_QUERY, &[backend::IDLE]));
    if stream.write_all(&greeting).await.is_err() {
        return;
    }
    while let Some((kind, body)) = read_message(&mut stream, 1 << 20).await {
        match kind {
            frontend::QUERY => {
                let sql = String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(&body));
                let sql = sql.into_owned();
                let tag = sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                seen.lock().unwrap().queries.push((session, sql.clone()));
                let mut answer = message(backend::COMMAND_COMPLETE, format!("{tag}\0").as_bytes());
                answer.extend(message(backend::READY_FOR_QUERY, &[backend::IDLE]));
                if sql == "half" {
                    // The start of a row whose rest never comes.
                    answer = message(backend::DATA_ROW, &[0; 1000])[..50].to_vec();
                }
                if stream.write_all(&answer).await.is_err() {
                    return;
                }
            }
            frontend::TERMINATE => {
                let ended = (session, TERMINATED.to_owned());
                seen.lock().unwrap().queries.push(ended);
                return;
            }
            _ => {}
        }
    }
}

/// What the stand-in server records when a session's client sends Terminate.
const TERMINATED: &str = "<terminate>";

struct Harness {
    dir: tempfile::TempDir,
    gateway: Option<Gateway>,
    seen: Arc<Mutex<Seen>>,
    runtime: tokio::runtime::Runtime,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_jobs(2)
    }

    /// A gateway for `jobs` jobs: more than [`JOBS_PER_RELAY_THREAD`] relay on threads of their own.
    fn with_jobs(jobs: usize) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let socket_dir = dir.path().join("socket");
        std::fs::create_dir(&socket_dir).unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        // The stand-in server runs on a thread of its own, as PostgreSQL would in its processes.
        let listener =
            std::os::unix::net::UnixListener::bind(socket_dir.join(".s.PGSQL.5432")).unwrap();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn({
            let seen = Arc::clone(&seen);
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = UnixListener::from_std(listener).unwrap();
                    while let Ok((stream, _)) = listener.accept().await {
                        tokio::spawn(fake_session(stream, Arc::clone(&seen)));
                    }
                });
            }
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let upstream = Endpoint {
            socket_dir,
            port: 5432,
            user: "postgres".into(),
            password: String::new(),
            remote: None,
        };
        let gateway = Gateway::start(&upstream, dir.path(), 15, jobs, None).unwrap();
        Harness {
            dir,
            gateway: Some(gateway),
            seen,
            runtime,
        }
    }

    fn socket(&self) -> PathBuf {
        let gateway = self.gateway.as_ref().unwrap();
        gateway.endpoint().socket_dir.join(".s.PGSQL.5432")
    }

    /// Opens a session through the gateway; returns the stream and the greeting it got.
    fn open(&self, database: &str) -> (UnixStream, Vec<u8>) {
        let socket = self.socket();
        self.runtime.block_on(async {
            let mut client = UnixStream::connect(socket).await.unwrap();
            client.write_all(&startup(database, "test")).await.unwrap();
            let mut greeting = Vec::new();
            loop {
                let (kind, body) = read_message(&mut client, 1 << 20).await.unwrap();
                greeting.extend(message(kind, &body));
                if kind == backend::READY_FOR_QUERY {
                    return (client, greeting);
                }
            }
        })
    }

    /// Sends a simple query and reads the answer, which must come within a deadline.
    fn query(&self, client: &mut UnixStream, sql: &str) {
        self.send(client, &simple_query(sql));
        let answer = async {
            while read_message(client, 1 << 20).await.unwrap().0 != backend::READY_FOR_QUERY {}
        };
        let deadline = std::time::Duration::from_secs(10);
        let answered = self
            .runtime
            .block_on(async { tokio::time::timeout(deadline, answer).await });
        assert!(answered.is_ok(), "no answer to {sql:?}");
    }

    fn send(&self, client: &mut UnixStream, bytes: &[u8]) {
        self.runtime
            .block_on(async { client.write_all(bytes).await.unwrap() });
    }

    /// Whether the gateway closes `client` within a deadline (what it sends first is read past).
    fn closes(&self, client: &mut UnixStream) -> bool {
        let closed = async {
            let mut scratch = [0u8; 256];
            while client.read(&mut scratch).await.is_ok_and(|read| read > 0) {}
        };
        let deadline = std::time::Duration::from_secs(10);
        self.runtime
            .block_on(async { tokio::time::timeout(deadline, closed).await })
            .is_ok()
    }

    fn connect(&self) -> UnixStream {
        let socket = self.socket();
        self.runtime
            .block_on(async { UnixStream::connect(socket).await.unwrap() })
    }

    fn terminate(&self, mut client: UnixStream) {
        self.runtime.block_on(async {
            client.write_all(&protocol::terminate()).await.unwrap();
        });
    }

    /// Waits (with a deadline) until the stand-in server saw `count` queries.
    fn queries(&self, count: usize) -> Vec<(usize, String)> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let queries = self.seen.lock().unwrap().queries.clone();
            if queries.len() >= count || std::time::Instant::now() > deadline {
                return queries;
            }
            std::thread::yield_now();
        }
    }

    /// Waits (with a deadline) until the gateway keeps `count` idle sessions, so that what a test
    /// checks next does not depend on how fast a reset was.
    fn until_idle_sessions(&self, count: usize) {
        let gateway = self.gateway.as_ref().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while gateway.sessions.idle_count() != count {
            assert!(
                std::time::Instant::now() < deadline,
                "never {count} idle sessions"
            );
            std::thread::yield_now();
        }
    }

    fn sessions(&self) -> usize {
        self.seen.lock().unwrap().sessions
    }
}

#[test]
fn a_session_its_client_ended_is_reset_and_handed_to_the_next() {
    for jobs in [2, 4 * JOBS_PER_RELAY_THREAD] {
        a_session_is_handed_on(Harness::with_jobs(jobs));
    }
}

fn a_session_is_handed_on(harness: Harness) {
    let (mut first, first_greeting) = harness.open("app");
    // A database sqlx makes test databases from: its sessions may be kept.
    harness.query(&mut first, "create database \"_sqlx_test_t\"");
    harness.terminate(first);
    assert_eq!(harness.queries(2)[1], (1, "DISCARD ALL".to_owned()));
    harness.until_idle_sessions(1);

    let (mut second, second_greeting) = harness.open("app");
    harness.query(&mut second, "select 2");
    assert_eq!(
        second_greeting, first_greeting,
        "the server's greeting, replayed"
    );
    assert_eq!(harness.sessions(), 1, "no second server session");
    assert_eq!(harness.queries(3)[2], (1, "select 2".to_owned()));

    let (mut other, _) = harness.open("_sqlx_test_t");
    harness.query(&mut other, "select 3");
    assert_eq!(harness.sessions(), 2, "another database, another session");
    assert_eq!(harness.queries(4)[3], (2, "select 3".to_owned()));
}

#[test]
fn relay_threads_are_added_with_jobs_and_report_their_cpu() {
    assert_eq!(
        relay_threads(JOBS_PER_RELAY_THREAD, 64),
        0,
        "the gateway's own"
    );
    assert_eq!(relay_threads(JOBS_PER_RELAY_THREAD + 1, 64), 2);
    assert_eq!(relay_threads(64, 64), 64 / JOBS_PER_RELAY_THREAD);
    assert_eq!(relay_threads(64, 3), 3, "at most one per core");
    for jobs in [2, 4 * JOBS_PER_RELAY_THREAD] {
        let mut harness = Harness::with_jobs(jobs);
        let (mut client, _) = harness.open("app");
        harness.query(&mut client, "select 1");
        harness.terminate(client);
        let gateway = harness.gateway.take().unwrap();
        let report = harness.runtime.block_on(gateway.stop());
        let cores = crate::platform::cpus();
        assert_eq!(
            report.thread_cpu.len(),
            1 + relay_threads(jobs, cores),
            "{jobs} jobs: {:?}",
            report.thread_cpu
        );
    }
}

/// A test may drop, rename or copy any other database it connected to: sessions there are not kept.
#[test]
fn sessions_on_other_databases_end_with_their_client() {
    let harness = Harness::new();
    let (mut first, _) = harness.open("mine");
    harness.query(&mut first, "select 1");
    harness.terminate(first);
    assert_eq!(harness.queries(2)[1], (1, TERMINATED.to_owned()));
    let (mut second, _) = harness.open("mine");
    harness.query(&mut second, "drop database if exists other");
    assert_eq!(harness.sessions(), 2);
    assert_eq!(harness.gateway.as_ref().unwrap().sessions.idle_count(), 0);
}

/// A session kept on a database ends (and the server's end of it is waited for) before a statement
/// that drops it passes on: the statement would otherwise wait 5 s and fail.
#[test]
fn kept_sessions_end_before_their_database_is_dropped() {
    let harness = Harness::new();
    let (mut master, _) = harness.open("app");
    harness.query(&mut master, "create database \"_sqlx_test_t\"");
    harness.terminate(master);
    harness.until_idle_sessions(1);
    let (mut other, _) = harness.open("postgres");
    harness.query(&mut other, "DROP DATABASE app");
    let queries = harness.queries(4);
    let drop_at = queries
        .iter()
        .position(|(_, sql)| sql == "DROP DATABASE app");
    let ended_at = queries
        .iter()
        .position(|q| *q == (1, TERMINATED.to_owned()));
    assert!(
        ended_at.is_some() && ended_at < drop_at,
        "the kept session did not end first: {queries:?}"
    );
    assert_eq!(harness.gateway.as_ref().unwrap().sessions.idle_count(), 0);
}

#[test]
fn a_client_gone_mid_message_leaves_its_session_unkept() {
    let harness = Harness::new();
    let (mut client, _) = harness.open("_sqlx_test_t");
    harness.query(&mut client, "select 1");
    harness.runtime.block_on(async {
        client
            .write_all(&simple_query("select 2")[..4])
            .await
            .unwrap();
    });
    drop(client);
    let (mut next, _) = harness.open("_sqlx_test_t");
    harness.query(&mut next, "select 3");
    assert_eq!(harness.sessions(), 2);
    let queries = harness.queries(2);
    assert!(
        !queries.iter().any(|(_, sql)| sql == "DISCARD ALL"),
        "{queries:?}"
    );
}

#[test]
fn sqlx_statements_are_answered_by_the_pool() {
    let mut harness = Harness::new();
    let (mut master, _) = harness.open("app");
    harness.query(&mut master, "create database \"_sqlx_test_t\"");
    harness.query(&mut master, "drop database if exists \"_sqlx_test_t\";");
    harness.query(&mut master, "drop database if exists \"_sqlx_test_u\";");
    // Asked for again: with no worker to drop it later, nothing waits for one.
    harness.query(&mut master, "create database \"_sqlx_test_t\"");
    let queries: Vec<String> = harness.queries(4).into_iter().map(|(_, q)| q).collect();
    let inline = "CREATE DATABASE \"_sqlx_test_t\" TEMPLATE \"template1\" STRATEGY FILE_COPY";
    assert_eq!(
        queries,
        [
            // No test databases to make copies through: no copies ahead, so the copy is made inline,
            // and dropped as sqlx asked.
            inline,
            "drop database if exists \"_sqlx_test_t\";",
            "drop database if exists \"_sqlx_test_u\";",
            inline,
        ]
    );
    let gateway = harness.gateway.take().unwrap();
    let report = harness.runtime.block_on(gateway.stop());
    assert_eq!(report.counts.inline, 2);
    assert_eq!(report.counts.deferred_drops, 0);
}

#[test]
fn the_socket_is_private_to_the_user_who_ran_it() {
    use std::os::unix::fs::PermissionsExt;
    let harness = Harness::new();
    let dir = harness.socket().parent().unwrap().to_owned();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

/// As root (only root can be another user): even with the directory opened to everyone, another
/// user's connection is closed unanswered, from the socket's peer credentials.
#[test]
fn another_user_is_turned_away_even_with_the_directory_open() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !nix::unistd::Uid::effective().is_root() {
        skip("only root can connect as another user");
        return;
    }
    let harness = Harness::new();
    let socket = harness.socket();
    // Opened up: the harness's own directories (the temporary directory above them must let others
    // through, as /tmp does), the socket, and a copy of this test executable.
    let everyone = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    everyone(harness.dir.path(), 0o755);
    everyone(socket.parent().unwrap(), 0o755);
    everyone(&socket, 0o777);
    let exe_dir = tempfile::tempdir().unwrap();
    everyone(exe_dir.path(), 0o755);
    let exe = exe_dir.path().join("gateway-tests");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a `nobody` account");
    // libtest names a test by its module path without the crate's name.
    let module = module_path!().split_once("::").map_or("", |(_, path)| path);
    let output = std::process::Command::new(&exe)
        .args(["--exact", &format!("{module}::connect_as_another_user")])
        .args(["--ignored", "--nocapture", "--test-threads", "1"])
        .env("PGTEST_GATEWAY_SOCKET", &socket)
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && printed.contains("1 passed"),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(harness.sessions(), 0, "no server session was opened for it");
}

/// Notes why a test did not run; under CI (`CI=true` or `CI=1`) a test that cannot run fails instead.
fn skip(why: &str) {
    let ci = crate::ci::in_ci();
    assert!(!ci, "under CI this test must run, but {why}");
    eprintln!("skipped: {why}");
}

/// Run as `nobody` by the test above: the gateway must close the connection without a word.
#[test]
#[ignore = "run by another_user_is_turned_away_even_with_the_directory_open"]
fn connect_as_another_user() {
    use std::io::{Read, Write};
    let socket = std::env::var_os("PGTEST_GATEWAY_SOCKET").expect("run by the test above");
    let mut client = std::os::unix::net::UnixStream::connect(socket)
        .expect("the socket is open to everyone for this test");
    // An answer would come at once; a session left open must fail the test, not hang it.
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let _ = client.write_all(&startup("app", "intruder"));
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer);
    assert!(answer.is_empty(), "the gateway answered: {answer:?}");
}

/// A simple query whose length field is 4 (too short for its SQL) once panicked the relay: it passes on
/// for the server to judge, and the session goes on.
#[test]
fn a_query_too_short_for_its_sql_does_not_end_the_session() {
    let harness = Harness::new();
    let (mut client, _) = harness.open("app");
    harness.send(&mut client, &[frontend::QUERY, 0, 0, 0, 4]);
    harness.query(&mut client, "select 2");
    assert_eq!(harness.queries(2)[1], (1, "select 2".to_owned()));
}

/// A client cut off mid-way through the server's answer leaves a session that is not between two
/// messages: reading on from there would read a length out of the middle of a row.
#[test]
fn a_session_left_mid_answer_is_not_reset() {
    let harness = Harness::new();
    let (mut client, _) = harness.open("_sqlx_test_t");
    harness.send(&mut client, &simple_query("half"));
    let mut start = [0u8; 50];
    harness
        .runtime
        .block_on(client.read_exact(&mut start))
        .unwrap();
    harness.terminate(client);
    let (mut next, _) = harness.open("_sqlx_test_t");
    harness.query(&mut next, "select 1");
    let queries = harness.queries(2);
    assert_eq!(queries[1], (2, "select 1".to_owned()), "{queries:?}");
}

/// A client that never sends its startup packet, and a server that never greets, are given up on.
#[test]
fn silent_peers_are_given_up_on() {
    let harness = Harness::new();
    let mut mute = harness.connect();
    assert!(
        harness.closes(&mut mute),
        "a mute client kept its connection"
    );
    let mut waiting = harness.connect();
    harness.send(&mut waiting, &startup("silent", "test"));
    assert!(harness.closes(&mut waiting), "still waiting for a greeting");
}

/// A length out of the middle of a stream (up to 4 GiB) is refused before anything is allocated for it.
#[test]
fn a_message_longer_than_the_bound_is_refused_unread() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        theirs
            .write_all(&[backend::DATA_ROW, 0xff, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        assert_eq!(read_message(&mut ours, 1 << 20).await, None);
        let answer = message(backend::READY_FOR_QUERY, &[backend::IDLE]);
        theirs.write_all(&answer).await.unwrap();
        assert_eq!(
            read_message(&mut ours, 6).await,
            Some((backend::READY_FOR_QUERY, vec![backend::IDLE]))
        );
    });
}

/// The gateway on a real cluster, making its copies through the run's one owner of test databases.
mod owner {
    use std::time::{Duration, Instant};

    use sqlx::{Connection, PgConnection};

    use super::*;
    use crate::template::reuse::tests::lab::{Lab, World};
    use crate::template::{MaintenancePool, TestDatabases};

    /// Polls `done` until it holds, failing after ten seconds.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// What `#[sqlx::test]` sends for one test, through the gateway: its database made, read, dropped.
    async fn one_test(master: &mut PgConnection, gateway: &Gateway, name: &str) {
        let create = format!("create database \"{name}\"");
        sqlx::raw_sql(&create).execute(&mut *master).await.unwrap();
        let options = gateway.endpoint().connect_options(name);
        let mut test = PgConnection::connect_with(&options).await.unwrap();
        sqlx::raw_sql("SELECT * FROM items")
            .execute(&mut test)
            .await
            .unwrap();
        test.close().await.unwrap();
        let drop = format!("drop database if exists \"{name}\";");
        sqlx::raw_sql(&drop).execute(&mut *master).await.unwrap();
    }

    /// A gateway for `jobs` jobs, making its copies through `owner`.
    fn through(
        owner: TestDatabases,
        jobs: usize,
        world: &World,
        run_dir: &tempfile::TempDir,
    ) -> Gateway {
        Gateway::start(
            &world.endpoint,
            run_dir.path(),
            world.major,
            jobs,
            Some(owner),
        )
        .unwrap()
    }

    /// Jobs enough for several workers: they make the copies between them, and all of them stop.
    #[test]
    fn several_workers_keep_the_copies_ready_and_all_stop() {
        let Some(lab) = Lab::boot(&[]) else {
            return;
        };
        let world = lab.world.clone();
        let run_dir = tempfile::tempdir().unwrap();
        lab.block_on(async move {
            let owner = TestDatabases::over(world.databases.clone(), world.endpoint.clone(), None);
            let jobs = 2 * pool::JOBS_PER_WORKER;
            let gateway = through(owner, jobs, &world, &run_dir);
            until("every copy is ready", || gateway.pool.ready_count() == jobs).await;
            let options = gateway.endpoint().connect_options("postgres");
            let mut master = PgConnection::connect_with(&options).await.unwrap();
            one_test(&mut master, &gateway, "_sqlx_test_many").await;
            master.close().await.unwrap();
            let stopped = tokio::time::timeout(Duration::from_secs(10), gateway.stop()).await;
            let report = stopped.expect("every worker stops");
            assert_eq!((report.counts.ready, report.counts.inline), (1, 0));
        });
        lab.shut_down();
    }

    #[test]
    fn copies_are_made_and_handed_on_through_the_runs_test_databases() {
        let Some(lab) = Lab::boot(&[]) else {
            return;
        };
        let world = lab.world.clone();
        let run_dir = tempfile::tempdir().unwrap();
        lab.block_on(async move {
            // The owner's reuse is the only one: the gateway has none of its own to hand databases on with.
            let owner = TestDatabases::over(
                world.databases.clone(),
                world.endpoint.clone(),
                Some(world.reuse.clone()),
            );
            let gateway = through(owner, 1, &world, &run_dir);
            let options = gateway.endpoint().connect_options("postgres");
            let mut master = PgConnection::connect_with(&options).await.unwrap();
            until("a copy is ready", || gateway.pool.ready_count() == 1).await;
            one_test(&mut master, &gateway, "_sqlx_test_first").await;
            until("the first test's database is handed on", || {
                gateway.pool.ready_count() == 2
            })
            .await;
            one_test(&mut master, &gateway, "_sqlx_test_second").await;
            master.close().await.unwrap();
            let report = gateway.stop().await;
            assert_eq!(report.counts.reused, 1, "{:?}", report.counts);
            assert_eq!(report.broken, None);
        });
        lab.shut_down();
    }

    #[test]
    fn without_the_owners_connections_no_copy_is_made_ahead() {
        let Some(lab) = Lab::boot(&[]) else {
            return;
        };
        let world = lab.world.clone();
        let run_dir = tempfile::tempdir().unwrap();
        lab.block_on(async move {
            // The owner's connections, closed: a gateway with a connection of its own would still make
            // copies.
            let pool = MaintenancePool::connect(&world.endpoint, world.major, 1)
                .await
                .unwrap();
            pool.close().await;
            let owner = TestDatabases::over(pool, world.endpoint.clone(), None);
            let gateway = through(owner, 1, &world, &run_dir);
            until("copies stop being made", || gateway.pool.broken().is_some()).await;
            let options = gateway.endpoint().connect_options("postgres");
            let mut master = PgConnection::connect_with(&options).await.unwrap();
            one_test(&mut master, &gateway, "_sqlx_test_inline").await;
            master.close().await.unwrap();
            let report = gateway.stop().await;
            assert_eq!((report.counts.ready, report.counts.inline), (0, 1));
        });
        lab.shut_down();
    }
}
