//! Target 3: what a database per test costs beyond the clone. The 200-test project runs with
//! `--isolation test` and `--isolation shared` at the same `--jobs`; per round,
//! (tests phase, test − tests phase, shared) × jobs ÷ 200. The test-isolation runs also give targets 2
//! (clone and wait times) and 5 (peak memory, when jobs is 2; otherwise extra runs with `--jobs 2`).

use super::generate::{Project, MANY_TESTS};
use super::pgtest::{self, Report, BUILD_LIMIT, RUN_LIMIT};
use super::stats::Stats;
use super::table::{Goal, Row, Unit};
use super::{context::Context, secs, Problems};

/// Target 5 is stated for two tests in flight.
pub const MEMORY_JOBS: usize = 2;

pub struct Isolation {
    project: Project,
    jobs: usize,
    /// Test-isolation runs at `jobs`.
    pub per_test: Vec<Report>,
    pub shared: Vec<Report>,
    /// Test-isolation runs at `--jobs 2`: the `per_test` runs when jobs is 2.
    extra_memory: Vec<Report>,
    /// Milliseconds per test, one per round where both runs counted.
    added: Vec<f64>,
}

impl Isolation {
    pub fn new(project: Project, jobs: usize) -> Isolation {
        Isolation {
            project,
            jobs,
            per_test: Vec::new(),
            shared: Vec::new(),
            extra_memory: Vec::new(),
            added: Vec::new(),
        }
    }

    fn args(isolation: &str, jobs: usize) -> Vec<String> {
        vec![
            "--isolation".into(),
            isolation.into(),
            "--jobs".into(),
            jobs.to_string(),
        ]
    }

    pub fn prepare(&self, ctx: &Context, problems: &mut Problems) {
        problems.keep(pgtest::run(
            ctx,
            &self.project.dir,
            "prepare-3",
            &Self::args("test", self.jobs),
            BUILD_LIMIT,
        ));
    }

    pub fn round(&mut self, ctx: &Context, round: usize, problems: &mut Problems) {
        let run = |isolation: &str, jobs: usize, problems: &mut Problems| {
            let label = format!("r{round}-3-{isolation}-j{jobs}");
            let report = problems.keep(pgtest::run(
                ctx,
                &self.project.dir,
                &label,
                &Self::args(isolation, jobs),
                RUN_LIMIT,
            ));
            if let Some(report) = &report {
                eprintln!(
                    "  3 {isolation:<6} tests phase {} (jobs {jobs})",
                    secs(report.phase("tests"))
                );
            }
            report
        };
        let per_test = run("test", self.jobs, problems);
        let shared = run("shared", self.jobs, problems);
        if let (Some(Some(t)), Some(Some(s))) = (
            per_test.as_ref().map(|r| r.phase("tests")),
            shared.as_ref().map(|r| r.phase("tests")),
        ) {
            self.added
                .push((t - s) * self.jobs as f64 / MANY_TESTS as f64 * 1000.0);
        }
        self.per_test.extend(per_test);
        self.shared.extend(shared);
        if self.jobs != MEMORY_JOBS && ctx.wants(5) {
            self.extra_memory.extend(run("test", MEMORY_JOBS, problems));
        }
    }

    /// The runs whose cluster had two tests in flight.
    pub fn memory_runs(&self) -> &[Report] {
        if self.jobs == MEMORY_JOBS {
            &self.per_test
        } else {
            &self.extra_memory
        }
    }

    pub fn rows(&self) -> Vec<Row> {
        let phase = |reports: &[Report]| {
            Stats::of(
                &reports
                    .iter()
                    .filter_map(|r| r.phase("tests"))
                    .collect::<Vec<_>>(),
            )
        };
        vec![
            Row::target(
                "3",
                format!(
                    "isolation cost per test: (test − shared) × {} jobs ÷ {MANY_TESTS}",
                    self.jobs
                ),
                Unit::Millis,
                Stats::of(&self.added),
                Goal::AtMost(15.0),
            ),
            Row::info(
                format!("  tests phase, --isolation test ({MANY_TESTS} tests)"),
                Unit::Seconds,
                phase(&self.per_test),
            ),
            Row::info(
                format!("  tests phase, --isolation shared ({MANY_TESTS} tests)"),
                Unit::Seconds,
                phase(&self.shared),
            ),
        ]
    }
}
