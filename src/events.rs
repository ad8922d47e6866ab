//! The events a run produces, in order. They are the only thing reporters see: the runner never prints.
//!
//! Each type derives `Serialize` in the shape of the `--json` report (see `report::json`): an event is an
//! object whose `type` is its snake_case name, durations are seconds as floating-point numbers, and a
//! finished test's outcome is a `status` word beside the fields of that outcome.
//!
//! Every event is stamped as it is sent with the time since the run started ([`Stamped`]), so a reporter
//! that reads it later still knows when it happened: the `--json` report's `at_seconds`, from which the
//! HTML report draws its timeline.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};
use tokio::sync::mpsc;

/// One test: the binary it lives in (nextest-style id) and its name inside it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub(crate) struct TestId {
    pub(crate) binary: String,
    pub(crate) name: String,
}

impl fmt::Display for TestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.binary, self.name)
    }
}

/// The stages of a run whose time the summary shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    ClusterBoot,
    Template,
    /// cargo's part and what goes with it: `cargo metadata`, the build's database, `cargo test --no-run`,
    /// the relation-cache warm-up beside it.
    Build,
    Tests,
    Teardown,
}

impl Phase {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Phase::ClusterBoot => "cluster boot",
            Phase::Template => "migrations+fixtures",
            Phase::Build => "build",
            Phase::Tests => "tests",
            Phase::Teardown => "teardown",
        }
    }
}

/// How a test that ran ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum Outcome {
    Passed,
    /// The test failed (libtest exits 101) or exited with another code.
    Failed {
        exit_code: Option<i32>,
    },
    /// The test process died of a signal (abort, segfault…).
    Crashed {
        signal: String,
    },
    /// Killed after the per-test timeout.
    TimedOut,
    /// Could not be run or finished (interrupted, the server died, its database could not be made).
    NotRun {
        reason: String,
    },
}

impl Outcome {
    pub(crate) fn is_success(&self) -> bool {
        matches!(self, Outcome::Passed)
    }

    /// The status word shown in the report.
    pub(crate) fn label(&self) -> String {
        match self {
            Outcome::Passed => "PASS".to_owned(),
            Outcome::Failed { .. } => "FAIL".to_owned(),
            Outcome::Crashed { signal } => signal.clone(),
            Outcome::TimedOut => "TIMEOUT".to_owned(),
            Outcome::NotRun { .. } => "NOT RUN".to_owned(),
        }
    }

    /// The status word of the JSON and JUnit reports (the same as the serialized `status`).
    pub(crate) fn status(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed { .. } => "failed",
            Outcome::Crashed { .. } => "crashed",
            Outcome::TimedOut => "timed_out",
            Outcome::NotRun { .. } => "not_run",
        }
    }
}

/// Facts about the cluster, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ClusterFacts {
    /// For example "PostgreSQL 15.18".
    pub(crate) version: String,
    pub(crate) in_ram: bool,
    pub(crate) run_dir: String,
    pub(crate) log: String,
    pub(crate) server_user: String,
}

/// The cluster's memory at the sample where the RAM it held peaked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct MemoryPeak {
    /// `processes_bytes + data_dir_bytes` on tmpfs; `processes_bytes` when the data is on disk.
    pub(crate) ram_peak_bytes: u64,
    /// The server processes' proportional set size then.
    pub(crate) processes_bytes: u64,
    /// The bytes the data directory's files held then (RAM when the data is on tmpfs).
    pub(crate) data_dir_bytes: u64,
}

/// One phase's memory peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct PhaseMemory {
    pub(crate) phase: Phase,
    #[serde(flatten)]
    pub(crate) peak: MemoryPeak,
}

/// What a test's database was, as its `test_started` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DatabaseKind {
    /// A new copy of its package's template, its own.
    Fresh,
    /// Its own, one an earlier test had left untouched (see the `reuse` key).
    Reused,
    /// A new copy of a named snapshot, its own.
    Snapshot,
    /// Its read-only group's, shared with the group's other tests.
    Group,
    /// Its binary's, shared with every test of it (`isolation = "shared"`).
    Shared,
    /// One `#[sqlx::test]` makes for itself.
    Sqlx,
}

/// Where a test (one attempt of it) started, and on what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Start {
    /// How long it waited for its database before it started (None when it waited for none of its own).
    #[serde(rename = "database_wait_seconds", serialize_with = "optional_seconds")]
    pub(crate) database_wait: Option<Duration>,
    /// The job slot it holds, from 0 to `jobs` - 1: a test alone takes the lowest free one; the tests of a
    /// batch hold the slot of the libtest thread running them (the lowest free among the batch's).
    pub(crate) slot: usize,
    pub(crate) database: DatabaseKind,
    /// The batch (a process running several tests, see `batch_started`) it runs in; None when alone.
    pub(crate) batch: Option<usize>,
}

impl Start {
    /// A test alone in its process, in `slot`, on a database of `database` kind.
    pub(crate) fn alone(slot: usize, database: DatabaseKind, wait: Option<Duration>) -> Start {
        Start {
            database_wait: wait,
            slot,
            database,
            batch: None,
        }
    }
}

/// A thread's name and the CPU time it used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ThreadUse {
    pub(crate) name: String,
    #[serde(rename = "seconds", serialize_with = "seconds")]
    pub(crate) cpu: Duration,
}

/// What a batch, a process running several tests at once, runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BatchKind {
    /// A binary's tests under `isolation = "shared"`, on its shared database.
    Shared,
    /// A binary's `#[sqlx::test]`s, each making its own database.
    Sqlx,
    /// A read-only group (see `read_only_groups`).
    Group,
    /// `cargo test --doc`.
    Doc,
}

/// Field names are those of the `--json` report where they differ (`seconds`, `isolation`…), so that the
/// derived `Serialize` writes the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Event {
    /// Something the user should know that is not an error (for example: no tmpfs, data on disk).
    Warning {
        message: String,
    },
    /// A failed test's database was kept after the run; `command` opens it.
    DatabaseKept {
        test: TestId,
        command: String,
    },
    /// Progress detail, shown with --verbose.
    Info {
        message: String,
    },
    ClusterReady(ClusterFacts),
    PhaseFinished {
        phase: Phase,
        #[serde(rename = "seconds", serialize_with = "seconds")]
        duration: Duration,
    },
    /// The tests are known; `to_run` of them will run, each in a fresh database unless `shared`.
    RunStarted {
        to_run: usize,
        filtered_out: usize,
        jobs: usize,
        #[serde(rename = "isolation", serialize_with = "isolation")]
        shared: bool,
    },
    /// A test (an attempt of it) starts, where and on what (a read-only group's tests are told once the
    /// group counts, each stamped with the time it started).
    TestStarted {
        test: TestId,
        #[serde(flatten)]
        start: Start,
    },
    /// A process that runs several tests at once starts: number `batch` of the run, holding `slots` job
    /// slots (libtest's threads), the ones `lanes` names, until its `batch_finished`. `tests` is how many it
    /// runs (0 when unknown beforehand: doc tests).
    BatchStarted {
        batch: usize,
        kind: BatchKind,
        binary: String,
        tests: usize,
        slots: usize,
        lanes: Vec<usize>,
    },
    BatchFinished {
        batch: usize,
        #[serde(rename = "seconds", serialize_with = "seconds")]
        duration: Duration,
    },
    /// A test database was cloned from its template, taking `duration`.
    DatabaseCloned {
        #[serde(rename = "seconds", serialize_with = "seconds")]
        duration: Duration,
    },
    /// At the end of the per-test runs: how many tests got a database an earlier test had left untouched
    /// instead of a fresh clone (see the `reuse` key), of how many that ran in a database of their own.
    DatabasesReused {
        #[serde(rename = "tests")]
        reused: usize,
        of: usize,
    },
    /// A test's database was found untouched after it (see the `reuse` key): the test only read. The test
    /// history remembers it, and later runs put such tests in read-only groups.
    DatabaseUntouched {
        test: TestId,
    },
    /// After a test alone, with reuse on: its database was checked (`untouched`: handed on to a later test,
    /// else dropped), taking `duration` off the test's job slot.
    DatabaseChecked {
        test: TestId,
        untouched: bool,
        #[serde(rename = "seconds", serialize_with = "seconds")]
        duration: Duration,
    },
    /// Before the per-test runs: `tests` that earlier runs found to read only ran together in `groups`
    /// processes, one database per group, checked untouched afterwards; `ran_alone` of them ran again on
    /// their own, each in a fresh database, because their group's database was written to or because
    /// they did not pass there.
    ReadOnlyGroups {
        tests: usize,
        groups: usize,
        ran_alone: usize,
    },
    /// At the end of the tests phase: the CPU time cargo-pgtest itself used in it, every thread together
    /// (`process`), its main thread's (`main_thread`), which runs every test's scheduling, and each thread's.
    OwnCpu {
        #[serde(rename = "process_seconds", serialize_with = "seconds")]
        process: Duration,
        #[serde(rename = "main_thread_seconds", serialize_with = "seconds")]
        main_thread: Duration,
        /// The threads still running at the end that used some of it, busiest first (Linux only).
        threads: Vec<ThreadUse>,
    },
    /// At the end of the tests phase: the CPU time the rest of the run used in it, beside cargo-pgtest's own
    /// (`own_cpu`): the server's processes (`server`; None where the system does not let it be read, as on
    /// macOS) and the processes cargo-pgtest started that ended in it (`test_processes`: the test
    /// binaries, and cargo building doc tests).
    TestsCpu {
        #[serde(rename = "server_seconds", serialize_with = "optional_seconds")]
        server: Option<Duration>,
        #[serde(rename = "test_processes_seconds", serialize_with = "seconds")]
        test_processes: Duration,
    },
    /// A thread of cargo-pgtest's own that served the tests ended (the `#[sqlx::test]` gateway's):
    /// the CPU time it used.
    ThreadCpu {
        thread: String,
        #[serde(rename = "seconds", serialize_with = "seconds")]
        duration: Duration,
    },
    /// Before the per-test runs' end: `tests` the history did not know were tried in `groups` read-only
    /// groups, of which `counted` passed in a database found untouched; the others ran alone.
    TrialGroups {
        tests: usize,
        groups: usize,
        counted: usize,
    },
    /// When the `#[sqlx::test]` gateway stops: how many of the databases it handed to tests (`of`) were
    /// ones an earlier test had left untouched instead of fresh copies (see the `reuse` key).
    SqlxDatabasesReused {
        #[serde(rename = "databases")]
        reused: u64,
        of: u64,
    },
    /// Whether the migrated cluster came from the cache under the target directory (`hit`), or was built
    /// and stored there (`stored`).
    TemplateCache {
        hit: bool,
        stored: bool,
    },
    /// A test has been running longer than the slow threshold (sent once per test).
    TestSlow {
        test: TestId,
        #[serde(rename = "seconds", serialize_with = "seconds")]
        elapsed: Duration,
    },
    /// `duration` is None where the harness does not report one (doc tests).
    TestFinished {
        test: TestId,
        #[serde(flatten)]
        outcome: Outcome,
        #[serde(rename = "seconds", serialize_with = "optional_seconds")]
        duration: Option<Duration>,
        output: String,
    },
    /// An attempt of a test failed and the test runs again (`--retries`); `attempt` counts from 1. The
    /// test's `test_finished` follows once it passes (FLAKY) or has no retries left.
    TestRetry {
        test: TestId,
        attempt: usize,
        #[serde(flatten)]
        outcome: Outcome,
        #[serde(rename = "seconds", serialize_with = "optional_seconds")]
        duration: Option<Duration>,
        output: String,
    },
    /// An ignored test that was not asked for.
    TestIgnored {
        test: TestId,
    },
    /// Tests that were filtered out, counted once known (shared mode and doc tests report them late).
    FilteredOut {
        count: usize,
    },
    /// The run was interrupted by a signal (SIGINT or SIGTERM).
    Interrupted {
        signal: String,
    },
    /// The cluster's peak memory use: its processes' own peak (proportional set size, `peak_bytes`), the
    /// peak of the RAM it held (processes plus, on tmpfs, its data directory) with both parts, and that
    /// peak in each phase it was sampled in.
    ClusterMemory {
        peak_bytes: u64,
        #[serde(flatten)]
        ram: MemoryPeak,
        phases: Vec<PhaseMemory>,
    },
    /// The cluster's memory now (about once a second while it runs, and at the end of each phase): its
    /// processes' proportional set size and its data directory's bytes (RAM too on tmpfs), each the
    /// largest sampled since the last such event.
    MemorySample {
        processes_bytes: u64,
        data_dir_bytes: u64,
    },
    /// A passing test's times in its last passing runs before this one, oldest first (the test history,
    /// at most [`crate::history::store::REPORTED`] of them).
    TestHistory {
        test: TestId,
        #[serde(rename = "seconds", serialize_with = "seconds_each")]
        earlier: Vec<Duration>,
    },
    /// A passing test took far longer than the median of its recent passing runs (the test history).
    TestSlower {
        test: TestId,
        #[serde(rename = "seconds", serialize_with = "seconds")]
        duration: Duration,
        #[serde(rename = "median_seconds", serialize_with = "seconds")]
        median: Duration,
    },
}

/// A duration as seconds (`0.348`), the unit of every time in the JSON report.
fn seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

fn optional_seconds<S: Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => seconds(duration, serializer),
        None => serializer.serialize_none(),
    }
}

fn seconds_each<S: Serializer>(durations: &[Duration], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(durations.iter().map(Duration::as_secs_f64))
}

/// `shared` as the report names it: the isolation unit, `"shared"` or `"test"`.
fn isolation<S: Serializer>(shared: &bool, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(if *shared { "shared" } else { "test" })
}

/// An event and when it was sent, counted from the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stamped {
    pub(crate) at: Duration,
    pub(crate) event: Event,
}

/// Where the runner sends its events. Each is stamped as it is sent, on the clock of the run's channel,
/// which every channel made [`beside`](EventSender::channel_beside) it shares.
#[derive(Debug, Clone)]
pub(crate) struct EventSender {
    sender: mpsc::UnboundedSender<Stamped>,
    start: Instant,
}

/// The receiving end; [`EventReceiver::recv`] drops the stamps for those that need only the event.
#[derive(Debug)]
pub(crate) struct EventReceiver {
    receiver: mpsc::UnboundedReceiver<Stamped>,
    start: Instant,
}

/// The receiver is gone: reporting is over.
#[derive(Debug)]
pub(crate) struct Closed;

impl EventSender {
    pub(crate) fn send(&self, event: Event) -> Result<(), Closed> {
        let at = self.start.elapsed();
        self.send_stamped(Stamped { at, event })
    }

    /// Passes on an event stamped on this channel's clock, keeping its time.
    pub(crate) fn send_stamped(&self, stamped: Stamped) -> Result<(), Closed> {
        self.sender.send(stamped).map_err(|_| Closed)
    }

    /// A new channel on this one's clock: for events gathered apart and passed on (with their stamps).
    pub(crate) fn channel_beside(&self) -> (EventSender, EventReceiver) {
        channel_from(self.start)
    }
}

impl EventReceiver {
    pub(crate) async fn recv(&mut self) -> Option<Event> {
        self.receiver.recv().await.map(|stamped| stamped.event)
    }

    pub(crate) async fn recv_stamped(&mut self) -> Option<Stamped> {
        self.receiver.recv().await
    }

    #[cfg(test)]
    pub(crate) fn try_recv(&mut self) -> Result<Event, mpsc::error::TryRecvError> {
        self.receiver.try_recv().map(|stamped| stamped.event)
    }

    pub(crate) fn try_recv_stamped(&mut self) -> Result<Stamped, mpsc::error::TryRecvError> {
        self.receiver.try_recv()
    }

    /// The time since the run started, on this channel's clock.
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A new run's channel: its clock starts now.
pub(crate) fn channel() -> (EventSender, EventReceiver) {
    channel_from(Instant::now())
}

fn channel_from(start: Instant) -> (EventSender, EventReceiver) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (
        EventSender { sender, start },
        EventReceiver { receiver, start },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn value(event: Event) -> Value {
        serde_json::to_value(event).unwrap()
    }

    fn test_id() -> TestId {
        TestId {
            binary: "app::it".into(),
            name: "alone".into(),
        }
    }

    fn finished(outcome: Outcome, duration: Option<Duration>) -> Event {
        Event::TestFinished {
            test: test_id(),
            outcome,
            duration,
            output: "out".into(),
        }
    }

    #[test]
    fn messages_and_cluster_facts_keep_their_field_names() {
        assert_eq!(
            value(Event::Warning {
                message: "no tmpfs".into()
            }),
            json!({ "type": "warning", "message": "no tmpfs" })
        );
        assert_eq!(
            value(Event::Info {
                message: "hi".into()
            }),
            json!({ "type": "info", "message": "hi" })
        );
        let facts = ClusterFacts {
            version: "PostgreSQL 15.18".into(),
            in_ram: true,
            run_dir: "/dev/shm/x".into(),
            log: "/dev/shm/x/log".into(),
            server_user: "postgres".into(),
        };
        assert_eq!(
            value(Event::ClusterReady(facts)),
            json!({
                "type": "cluster_ready", "version": "PostgreSQL 15.18", "in_ram": true,
                "run_dir": "/dev/shm/x", "log": "/dev/shm/x/log", "server_user": "postgres",
            })
        );
    }

    #[test]
    fn durations_are_seconds_and_phases_snake_case() {
        let phases = [
            (Phase::ClusterBoot, "cluster_boot"),
            (Phase::Template, "template"),
            (Phase::Build, "build"),
            (Phase::Tests, "tests"),
            (Phase::Teardown, "teardown"),
        ];
        for (phase, key) in phases {
            assert_eq!(
                value(Event::PhaseFinished {
                    phase,
                    duration: Duration::from_millis(1500),
                }),
                json!({ "type": "phase_finished", "phase": key, "seconds": 1.5 })
            );
        }
        assert_eq!(
            value(Event::DatabaseCloned {
                duration: Duration::from_millis(250)
            }),
            json!({ "type": "database_cloned", "seconds": 0.25 })
        );
        assert_eq!(
            value(Event::DatabasesReused { reused: 3, of: 5 }),
            json!({ "type": "databases_reused", "tests": 3, "of": 5 })
        );
        assert_eq!(
            value(Event::SqlxDatabasesReused { reused: 2, of: 4 }),
            json!({ "type": "sqlx_databases_reused", "databases": 2, "of": 4 })
        );
        assert_eq!(
            value(Event::TestSlow {
                test: test_id(),
                elapsed: Duration::from_secs(60)
            }),
            json!({ "type": "test_slow", "test": { "binary": "app::it", "name": "alone" }, "seconds": 60.0 })
        );
    }

    #[test]
    fn run_and_test_start_keep_their_field_names() {
        for (shared, isolation) in [(false, "test"), (true, "shared")] {
            assert_eq!(
                value(Event::RunStarted {
                    to_run: 3,
                    filtered_out: 1,
                    jobs: 2,
                    shared,
                }),
                json!({
                    "type": "run_started", "to_run": 3, "filtered_out": 1, "jobs": 2,
                    "isolation": isolation,
                })
            );
        }
        let started = |database_wait, database, batch| {
            value(Event::TestStarted {
                test: test_id(),
                start: Start {
                    database_wait,
                    slot: 1,
                    database,
                    batch,
                },
            })
        };
        assert_eq!(
            started(Some(Duration::from_millis(125)), DatabaseKind::Reused, None),
            json!({
                "type": "test_started", "test": { "binary": "app::it", "name": "alone" },
                "database_wait_seconds": 0.125, "slot": 1, "database": "reused", "batch": null,
            })
        );
        let grouped = started(None, DatabaseKind::Group, Some(3));
        assert_eq!(grouped["database_wait_seconds"], Value::Null);
        assert_eq!(
            (&grouped["database"], &grouped["batch"]),
            (&json!("group"), &json!(3))
        );
    }

    #[test]
    fn batches_samples_checks_and_history_keep_their_field_names() {
        assert_eq!(
            value(Event::BatchStarted {
                batch: 2,
                kind: BatchKind::Sqlx,
                binary: "app::it".into(),
                tests: 5,
                slots: 2,
                lanes: vec![1, 3],
            }),
            json!({ "type": "batch_started", "batch": 2, "kind": "sqlx", "binary": "app::it", "tests": 5, "slots": 2, "lanes": [1, 3] })
        );
        assert_eq!(
            value(Event::BatchFinished {
                batch: 2,
                duration: Duration::from_millis(750),
            }),
            json!({ "type": "batch_finished", "batch": 2, "seconds": 0.75 })
        );
        assert_eq!(
            value(Event::DatabaseChecked {
                test: test_id(),
                untouched: true,
                duration: Duration::from_millis(4),
            }),
            json!({
                "type": "database_checked", "test": { "binary": "app::it", "name": "alone" },
                "untouched": true, "seconds": 0.004,
            })
        );
        assert_eq!(
            value(Event::MemorySample {
                processes_bytes: 10,
                data_dir_bytes: 20,
            }),
            json!({ "type": "memory_sample", "processes_bytes": 10, "data_dir_bytes": 20 })
        );
        assert_eq!(
            value(Event::TestHistory {
                test: test_id(),
                earlier: vec![Duration::from_millis(500), Duration::from_millis(250)],
            }),
            json!({
                "type": "test_history", "test": { "binary": "app::it", "name": "alone" },
                "seconds": [0.5, 0.25],
            })
        );
    }

    #[test]
    fn events_are_stamped_when_sent_and_channels_beside_share_the_clock() {
        let (sender, mut receiver) = channel();
        std::thread::sleep(Duration::from_millis(20));
        sender.send(Event::FilteredOut { count: 1 }).unwrap();
        let (beside, mut gathered) = sender.channel_beside();
        beside.send(Event::FilteredOut { count: 2 }).unwrap();
        let first = receiver.try_recv_stamped().unwrap();
        let second = gathered.try_recv_stamped().unwrap();
        assert!(first.at >= Duration::from_millis(20), "{first:?}");
        assert!(second.at >= first.at, "{second:?} is on the run's clock");
        // Passed on later, it keeps the time it was sent.
        std::thread::sleep(Duration::from_millis(20));
        sender.send_stamped(second.clone()).unwrap();
        assert_eq!(receiver.try_recv_stamped().unwrap(), second);
        assert!(receiver.elapsed() >= second.at + Duration::from_millis(20));
    }

    #[test]
    fn a_finished_test_has_its_status_and_the_fields_of_its_outcome() {
        let base = |status: &str, seconds: Value| {
            json!({
                "type": "test_finished", "test": { "binary": "app::it", "name": "alone" },
                "status": status, "seconds": seconds, "output": "out",
            })
        };
        let half = Some(Duration::from_millis(500));
        assert_eq!(
            value(finished(Outcome::Passed, half)),
            base("passed", json!(0.5))
        );
        assert_eq!(
            value(finished(Outcome::TimedOut, None)),
            base("timed_out", Value::Null)
        );
        let mut failed = base("failed", json!(0.5));
        failed["exit_code"] = json!(101);
        let outcome = Outcome::Failed {
            exit_code: Some(101),
        };
        assert_eq!(value(finished(outcome, half)), failed);
        let mut crashed = base("crashed", json!(0.5));
        crashed["signal"] = json!("SIGSEGV");
        let outcome = Outcome::Crashed {
            signal: "SIGSEGV".into(),
        };
        assert_eq!(value(finished(outcome, half)), crashed);
        let mut not_run = base("not_run", Value::Null);
        not_run["reason"] = json!("the server stopped");
        let outcome = Outcome::NotRun {
            reason: "the server stopped".into(),
        };
        assert_eq!(value(finished(outcome, None)), not_run);
    }

    #[test]
    fn the_serialized_status_is_the_status_word() {
        let outcomes = [
            Outcome::Passed,
            Outcome::Failed { exit_code: None },
            Outcome::Crashed {
                signal: "SIGABRT".into(),
            },
            Outcome::TimedOut,
            Outcome::NotRun { reason: "x".into() },
        ];
        for outcome in outcomes {
            assert_eq!(
                serde_json::to_value(&outcome).unwrap()["status"],
                outcome.status()
            );
        }
    }

    #[test]
    fn the_remaining_events_keep_their_field_names() {
        assert_eq!(
            value(Event::TemplateCache {
                hit: false,
                stored: true
            }),
            json!({ "type": "template_cache", "hit": false, "stored": true })
        );
        assert_eq!(
            value(Event::TestIgnored { test: test_id() }),
            json!({ "type": "test_ignored", "test": { "binary": "app::it", "name": "alone" } })
        );
        assert_eq!(
            value(Event::FilteredOut { count: 4 }),
            json!({ "type": "filtered_out", "count": 4 })
        );
        assert_eq!(
            value(Event::Interrupted {
                signal: "SIGINT".into()
            }),
            json!({ "type": "interrupted", "signal": "SIGINT" })
        );
        assert_eq!(
            value(Event::ClusterMemory {
                peak_bytes: 1 << 20,
                ram: MemoryPeak {
                    ram_peak_bytes: 3 << 20,
                    processes_bytes: 1 << 20,
                    data_dir_bytes: 2 << 20,
                },
                phases: vec![PhaseMemory {
                    phase: Phase::Tests,
                    peak: MemoryPeak {
                        ram_peak_bytes: 3,
                        processes_bytes: 1,
                        data_dir_bytes: 2,
                    },
                }],
            }),
            json!({
                "type": "cluster_memory", "peak_bytes": 1u64 << 20, "ram_peak_bytes": 3u64 << 20,
                "processes_bytes": 1u64 << 20, "data_dir_bytes": 2u64 << 20,
                "phases": [{ "phase": "tests", "ram_peak_bytes": 3, "processes_bytes": 1, "data_dir_bytes": 2 }]
            })
        );
        assert_eq!(
            value(Event::TestSlower {
                test: test_id(),
                duration: Duration::from_millis(1500),
                median: Duration::from_millis(250),
            }),
            json!({
                "type": "test_slower", "test": { "binary": "app::it", "name": "alone" },
                "seconds": 1.5, "median_seconds": 0.25
            })
        );
    }
}
