//! Issue 23: what cargo-pgtest's own work costs per test, on each path a test can take (alone, in a
//! read-only group or trial, as a `#[sqlx::test]` through the gateway), and the ceiling a single thread of
//! ours puts on a machine with many cores: the tests per second its busiest thread could serve if it did
//! nothing else (tests ÷ that thread's CPU in the tests phase). From the runs' `own_cpu` (the main thread,
//! and the busiest of the threads still there at the phase's end) and `thread_cpu` (the gateway's, which
//! end before it) events.

use super::pgtest::Report;
use super::stats::Stats;
use super::table::{Goal, Row, Unit};

/// The thread that samples the cluster's memory.
const MEMORY_SAMPLER: &str = "pgtest-memory";

/// The fewest tests per second a single thread of ours must be able to serve.
const CEILING_TARGET: f64 = 2_000.0;

#[derive(Default)]
pub struct OwnCpu {
    per_test: Vec<f64>,
    busiest_share: Vec<f64>,
    ceiling: Vec<f64>,
    busiest: String,
    /// The memory sampler's CPU over the tests phase's wall time.
    sampler_share: Vec<f64>,
}

impl OwnCpu {
    /// Takes a run of `tests` tests into account.
    pub fn see(&mut self, report: &Report, tests: usize) {
        let (Some(all), Some(main)) = (report.own_cpu, report.main_thread_cpu) else {
            return;
        };
        let tests = tests.max(1) as f64;
        let mut threads = vec![("main".to_owned(), main)];
        // The memory sampler's CPU is a cost per second of the run (a read of the server's memory every
        // 100 ms), whatever the tests per second: it sets no ceiling on them. Its share is a row of its own.
        let (sampler, per_test): (Vec<_>, Vec<_>) = report
            .threads
            .iter()
            .cloned()
            .partition(|(name, _)| name == MEMORY_SAMPLER);
        threads.extend(per_test);
        threads.extend(report.thread_cpu.iter().map(|(name, s)| (name.clone(), *s)));
        if let Some(phase) = report.phase("tests").filter(|&s| s > 0.0) {
            let sampling: f64 = sampler.iter().map(|(_, s)| s).sum();
            self.sampler_share.push(sampling / phase);
        }
        let Some((name, busiest)) = threads.into_iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
            return;
        };
        self.per_test.push(all / tests * 1000.0);
        if all > 0.0 {
            self.busiest_share.push(busiest / all);
        }
        if busiest > 0.0 {
            self.ceiling.push(tests / busiest);
        }
        self.busiest = name;
    }

    /// The rows for the path `path`.
    pub fn rows(&self, path: &str) -> Vec<Row> {
        vec![
            Row::target(
                "23",
                format!(
                    "{path}: one thread of ours serves at most (tests/s; busiest: {})",
                    self.busiest
                ),
                Unit::PerSecond,
                Stats::of(&self.ceiling),
                Goal::AtLeast(CEILING_TARGET),
            ),
            Row::info(
                format!("  {path}: cargo-pgtest's own CPU per test, every thread"),
                Unit::Millis,
                Stats::of(&self.per_test),
            ),
            Row::info(
                format!("  {path}: the busiest thread's share of it"),
                Unit::Times,
                Stats::of(&self.busiest_share),
            ),
            Row::info(
                format!("  {path}: the memory sampler's CPU, share of one core"),
                Unit::Times,
                Stats::of(&self.sampler_share),
            ),
        ]
    }
}
