//! The events a run produces, in order. They are the only thing reporters see: the runner never prints.

use std::fmt;
use std::time::Duration;

use tokio::sync::mpsc;

/// One test: the binary it lives in (nextest-style id) and its name inside it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TestId {
    pub binary: String,
    pub name: String,
}

impl fmt::Display for TestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.binary, self.name)
    }
}

/// The stages of a run whose time the summary shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    ClusterBoot,
    Template,
    Build,
    Tests,
    Teardown,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::ClusterBoot => "cluster boot",
            Phase::Template => "migrations+fixtures",
            Phase::Build => "build",
            Phase::Tests => "tests",
            Phase::Teardown => "teardown",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Phase::ClusterBoot => "cluster_boot",
            Phase::Template => "template",
            Phase::Build => "build",
            Phase::Tests => "tests",
            Phase::Teardown => "teardown",
        }
    }
}

/// How a test that ran ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
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
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Passed)
    }

    /// The status word shown in the report.
    pub fn label(&self) -> String {
        match self {
            Outcome::Passed => "PASS".to_owned(),
            Outcome::Failed { .. } => "FAIL".to_owned(),
            Outcome::Crashed { signal } => signal.clone(),
            Outcome::TimedOut => "TIMEOUT".to_owned(),
            Outcome::NotRun { .. } => "NOT RUN".to_owned(),
        }
    }
}

/// Facts about the cluster, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFacts {
    /// For example "PostgreSQL 15.18".
    pub version: String,
    pub in_ram: bool,
    pub run_dir: String,
    pub log: String,
    pub server_user: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Something the user should know that is not an error (for example: no tmpfs, data on disk).
    Warning {
        message: String,
    },
    /// Progress detail, shown with --verbose.
    Info {
        message: String,
    },
    ClusterReady(ClusterFacts),
    PhaseFinished {
        phase: Phase,
        duration: Duration,
    },
    /// The tests are known; `to_run` of them will run, each in a fresh database unless `shared`.
    RunStarted {
        to_run: usize,
        filtered_out: usize,
        jobs: usize,
        shared: bool,
    },
    /// A test starts; `database_wait` is how long it waited for its database (None in shared isolation).
    TestStarted {
        test: TestId,
        database_wait: Option<Duration>,
    },
    /// A test database was cloned from its template, taking `duration`.
    DatabaseCloned {
        duration: Duration,
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
        elapsed: Duration,
    },
    /// `duration` is None where the harness does not report one (doc tests).
    TestFinished {
        test: TestId,
        outcome: Outcome,
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
    /// The cluster's peak memory use, summed over its processes (proportional set size).
    ClusterMemory {
        peak_bytes: u64,
    },
}

/// Where the runner sends its events.
pub type EventSender = mpsc::UnboundedSender<Event>;
pub type EventReceiver = mpsc::UnboundedReceiver<Event>;

pub fn channel() -> (EventSender, EventReceiver) {
    mpsc::unbounded_channel()
}
