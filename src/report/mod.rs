//! Reporters consume the run's events and never run anything: the human one for the terminal, JSON lines,
//! JUnit XML and the GitHub job summary for CI, one HTML page for people. [`Summary`] is the tally they all
//! share, and what the exit code is decided from.

pub(crate) mod html;
pub(crate) mod human;
pub(crate) mod json;
pub(crate) mod junit;
pub(crate) mod libtest;
pub(crate) mod notes;
mod progress;
pub(crate) mod step_summary;
pub(crate) mod styles;

use std::path::PathBuf;
use std::time::Duration;

use crate::events::{
    ClusterFacts, Event, MemoryPeak, Outcome, Phase, PhaseMemory, Stamped, TestId,
};

/// A report that could not be written; shown after "could not write a report:".
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("the summary on stderr: {source}")]
    Human { source: std::io::Error },
    #[error("the JSON lines (--json): {source}")]
    Json { source: std::io::Error },
    #[error("libtest's output on stdout: {source}")]
    Libtest { source: std::io::Error },
    #[error("the JUnit XML to {}: {source}; check that its directory exists and is writable", path.display())]
    Junit {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the job summary to {} (GITHUB_STEP_SUMMARY): {source}", path.display())]
    StepSummary {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the JUnit XML to {}: {source} (a bug; please report it)", path.display())]
    JunitXml {
        path: PathBuf,
        source: quick_junit::SerializeError,
    },
    #[error("the HTML report to {}: {source}; check that its directory exists and is writable", path.display())]
    Html {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A consumer of events.
pub(crate) trait Reporter {
    fn report(&mut self, event: &Event);
    /// `event`, sent `at` after the run started. Reporters that write times (JSON, HTML) take it here;
    /// the others need only [`Reporter::report`].
    fn report_at(&mut self, event: &Event, at: Duration) {
        let _ = at;
        self.report(event);
    }
    /// Called about once a second while the run goes on, for what changes with time alone (the progress
    /// line's clock).
    fn tick(&mut self) {}
    /// Called once after the last event (and after teardown), with the tally.
    fn finish(&mut self, summary: &Summary) -> Result<(), Error>;
}

/// What a run came to.
#[derive(Debug, Default, Clone)]
pub(crate) struct Summary {
    pub(crate) passed: usize,
    pub(crate) failed: usize,
    pub(crate) crashed: usize,
    pub(crate) timed_out: usize,
    pub(crate) not_run: usize,
    pub(crate) ignored: usize,
    pub(crate) filtered_out: usize,
    /// Every finished test with its outcome and time, in the order they finished.
    pub(crate) finished: Vec<(TestId, Outcome, Option<Duration>)>,
    pub(crate) phases: Vec<(Phase, Duration)>,
    pub(crate) cluster: Option<ClusterFacts>,
    pub(crate) interrupted: Option<String>,
    /// The server processes' peak PSS.
    pub(crate) peak_memory_bytes: Option<u64>,
    /// The RAM the cluster held at its peak (processes and, on tmpfs, data directory), and each phase's.
    pub(crate) memory: Option<MemoryPeak>,
    pub(crate) memory_phases: Vec<PhaseMemory>,
    /// Passing tests far slower than their history: the test, its time now and its median before.
    pub(crate) slower: Vec<(TestId, Duration, Duration)>,
    /// Whether the tests were reached at all (a build or setup error stops the run before them).
    pub(crate) started: bool,
    /// Tests that failed an attempt and were run again (`--retries`).
    pub(crate) retried: std::collections::BTreeSet<TestId>,
    /// Tests that passed only on a retry; they count among the passed.
    pub(crate) flaky: Vec<TestId>,
    /// When the last event had been sent (the run's wall time), once the channel has closed.
    pub(crate) ended_at: Option<Duration>,
}

impl Summary {
    /// Each phase's time, in the order the phases run (the build first: `cargo metadata` starts a run).
    pub(crate) fn phases_in_run_order(&self) -> Vec<(Phase, Duration)> {
        let mut phases = self.phases.clone();
        phases.sort_by_key(|(phase, _)| match phase {
            Phase::Build => 0,
            Phase::ClusterBoot => 1,
            Phase::Template => 2,
            Phase::Tests => 3,
            Phase::Teardown => 4,
        });
        phases
    }

    pub(crate) fn record(&mut self, event: &Event) {
        match event {
            Event::TestFinished {
                test,
                outcome,
                duration,
                ..
            } => {
                if outcome.is_success() && self.retried.contains(test) {
                    self.flaky.push(test.clone());
                }
                match outcome {
                    Outcome::Passed => self.passed += 1,
                    Outcome::Failed { .. } => self.failed += 1,
                    Outcome::Crashed { .. } => self.crashed += 1,
                    Outcome::TimedOut => self.timed_out += 1,
                    Outcome::NotRun { .. } => self.not_run += 1,
                }
                self.finished
                    .push((test.clone(), outcome.clone(), *duration));
            }
            Event::TestIgnored { .. } => self.ignored += 1,
            Event::TestRetry { test, .. } => {
                self.retried.insert(test.clone());
            }
            Event::RunStarted { filtered_out, .. } => {
                self.started = true;
                self.filtered_out += filtered_out
            }
            Event::FilteredOut { count } => self.filtered_out += count,
            Event::PhaseFinished { phase, duration } => self.phases.push((*phase, *duration)),
            Event::ClusterReady(facts) => self.cluster = Some(facts.clone()),
            Event::Interrupted { signal } => self.interrupted = Some(signal.clone()),
            Event::ClusterMemory {
                peak_bytes,
                ram,
                phases,
            } => {
                self.peak_memory_bytes = Some(*peak_bytes);
                self.memory = Some(*ram);
                self.memory_phases = phases.clone();
            }
            Event::TestSlower {
                test,
                duration,
                median,
            } => self.slower.push((test.clone(), *duration, *median)),
            Event::Warning { .. }
            | Event::DatabaseKept { .. }
            | Event::Info { .. }
            | Event::TestStarted { .. }
            | Event::TestSlow { .. }
            | Event::DatabaseCloned { .. }
            | Event::DatabasesReused { .. }
            | Event::DatabaseUntouched { .. }
            | Event::ReadOnlyGroups { .. }
            | Event::TrialGroups { .. }
            | Event::OwnCpu { .. }
            | Event::TestsCpu { .. }
            | Event::ThreadCpu { .. }
            | Event::SqlxDatabasesReused { .. }
            | Event::TemplateCache { .. }
            | Event::BatchStarted { .. }
            | Event::BatchFinished { .. }
            | Event::DatabaseChecked { .. }
            | Event::MemorySample { .. }
            | Event::TestHistory { .. } => {}
        }
    }

    /// Tests that count against the run.
    pub(crate) fn failures(&self) -> usize {
        self.failed + self.crashed + self.timed_out + self.not_run
    }

    pub(crate) fn ran(&self) -> usize {
        self.finished.len()
    }

    /// The slowest tests that ran, slowest first.
    pub(crate) fn slowest(&self, count: usize) -> Vec<(&TestId, Duration)> {
        let mut timed: Vec<(&TestId, Duration)> = self
            .finished
            .iter()
            .filter_map(|(test, _, duration)| duration.map(|d| (test, d)))
            .collect();
        timed.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        timed.truncate(count);
        timed
    }

    /// "19 passed, 1 failed, 2 ignored, 0 filtered out" (crashes, timeouts and tests not run when any).
    /// `3 passed, 2 failed, 0 ignored, 0 filtered out (of the failed: 1 crashed)`: crashes and timeouts
    /// count as failures, and are told apart after the counts.
    pub(crate) fn counts_line(&self) -> String {
        let failed = self.failed + self.crashed + self.timed_out;
        let passed = match self.flaky.len() {
            0 => format!("{} passed", self.passed),
            flaky => format!("{} passed ({flaky} flaky)", self.passed),
        };
        let mut parts = vec![passed, format!("{failed} failed")];
        if self.not_run > 0 {
            parts.push(format!("{} not run", self.not_run));
        }
        parts.push(format!("{} ignored", self.ignored));
        parts.push(format!("{} filtered out", self.filtered_out));
        let mut line = parts.join(", ");
        let kinds: Vec<String> = [(self.crashed, "crashed"), (self.timed_out, "timed out")]
            .into_iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, label)| format!("{count} {label}"))
            .collect();
        if !kinds.is_empty() {
            line.push_str(&format!(" (of the failed: {})", kinds.join(", ")));
        }
        line
    }
}

/// Several reporters fed the same events.
#[derive(Default)]
pub(crate) struct Reporters {
    reporters: Vec<Box<dyn Reporter>>,
    pub(crate) summary: Summary,
}

impl Reporters {
    pub(crate) fn add(&mut self, reporter: Box<dyn Reporter>) {
        self.reporters.push(reporter);
    }

    pub(crate) fn report(&mut self, stamped: &Stamped) {
        self.summary.record(&stamped.event);
        for reporter in &mut self.reporters {
            reporter.report_at(&stamped.event, stamped.at);
        }
    }

    pub(crate) fn tick(&mut self) {
        for reporter in &mut self.reporters {
            reporter.tick();
        }
    }

    /// Finishes every reporter; returns the first error writing a report, if any.
    pub(crate) fn finish(&mut self) -> Result<(), Error> {
        let mut result = Ok(());
        for reporter in &mut self.reporters {
            if let Err(error) = reporter.finish(&self.summary) {
                if result.is_ok() {
                    result = Err(error);
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(name: &str, outcome: Outcome, millis: u64) -> Event {
        Event::TestFinished {
            test: TestId {
                binary: "app".into(),
                name: name.into(),
            },
            outcome,
            duration: Some(Duration::from_millis(millis)),
            output: String::new(),
        }
    }

    #[test]
    fn the_summary_counts_and_ranks() {
        let mut summary = Summary::default();
        summary.record(&Event::RunStarted {
            to_run: 4,
            filtered_out: 2,
            jobs: 2,
            shared: false,
        });
        summary.record(&finished("a", Outcome::Passed, 30));
        summary.record(&finished(
            "b",
            Outcome::Failed {
                exit_code: Some(101),
            },
            10,
        ));
        summary.record(&finished("c", Outcome::TimedOut, 90));
        summary.record(&finished(
            "d",
            Outcome::Crashed {
                signal: "SIGSEGV".into(),
            },
            5,
        ));
        summary.record(&Event::TestIgnored {
            test: TestId {
                binary: "app".into(),
                name: "e".into(),
            },
        });
        assert_eq!(summary.failures(), 3);
        assert_eq!(
            summary.counts_line(),
            "1 passed, 3 failed, 1 ignored, 2 filtered out (of the failed: 1 crashed, 1 timed out)"
        );
        let slowest: Vec<&str> = summary
            .slowest(2)
            .iter()
            .map(|(t, _)| t.name.as_str())
            .collect();
        assert_eq!(slowest, ["c", "a"]);
    }
}
