//! Issue 23: where a test's time and CPU go, per test, from a run's events: on its job slot (the wait for
//! its database, its process from start to exit) and off it (its database's clone, made ahead; its check
//! and drop after it, `database_checked`), and the CPU of the tests phase split between the server's
//! processes, the test processes and cargo-pgtest itself (`tests_cpu`, `own_cpu`). Each figure is the
//! median over rounds of a round's mean per test.

use super::pgtest::Report;
use super::stats::Stats;
use super::table::{Row, Unit};

#[derive(Default)]
pub struct Breakdown {
    clone: Vec<f64>,
    wait: Vec<f64>,
    process: Vec<f64>,
    check: Vec<f64>,
    server_cpu: Vec<f64>,
    tests_cpu: Vec<f64>,
    own_cpu: Vec<f64>,
}

/// The mean of `values` (seconds), in milliseconds.
fn mean_ms(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64 * 1000.0)
}

impl Breakdown {
    /// Takes a run of `tests` tests into account.
    pub fn see(&mut self, report: &Report, tests: usize) {
        let per_test = |seconds: Option<f64>| seconds.map(|s| s / tests.max(1) as f64 * 1000.0);
        self.clone.extend(mean_ms(&report.clones));
        self.wait.extend(mean_ms(&report.waits));
        self.process.extend(mean_ms(&report.durations));
        self.check.extend(mean_ms(&report.checks));
        self.server_cpu.extend(per_test(report.server_cpu));
        self.tests_cpu.extend(per_test(report.test_processes_cpu));
        self.own_cpu.extend(per_test(report.own_cpu));
    }

    /// The rows for the suite `suite`; a piece no run reported is left out.
    pub fn rows(&self, suite: &str) -> Vec<Row> {
        let pieces = [
            ("its database's clone, made ahead (wall)", &self.clone),
            ("its wait for that database (wall)", &self.wait),
            ("its process, start to exit (wall)", &self.process),
            (
                "its database's check and drop, off its job slot (wall)",
                &self.check,
            ),
            ("CPU: the server's processes", &self.server_cpu),
            ("CPU: the test processes", &self.tests_cpu),
            ("CPU: cargo-pgtest itself", &self.own_cpu),
        ];
        pieces
            .into_iter()
            .filter(|(_, values)| !values.is_empty())
            .map(|(piece, values)| {
                let metric = format!("  {suite}, per test: {piece}");
                Row::info(metric, Unit::Millis, Stats::of(values))
            })
            .collect()
    }
}
