//! Target 3: what a database per test costs beyond the clone. The 200-test project (every test writes)
//! runs with `--isolation test` and `--isolation shared` at the same `--jobs`, warm (its prepare run
//! filled its cache; every run must show a cache hit and exactly 200 passed); per round,
//! (tests phase, test − tests phase, shared) × jobs ÷ 200. Issue 15's row divides that by the clone + drop
//! cost measured on an idle cluster in the same round (see `idle_clone`), and a floor row bounds that ratio
//! from below with the same run's CPU, cargo-pgtest's own left out. The test-isolation runs also give
//! targets 2 (clone and wait times) and 5 (peak memory, when jobs is 2; otherwise extra runs with
//! `--jobs 2`).

use super::breakdown::Breakdown;
use super::generate::{Project, MANY_TESTS};
use super::idle_clone;
use super::own_cpu::OwnCpu;
use super::pgtest::{self, Report, BUILD_LIMIT};
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
    /// Milliseconds of clone + drop on an idle cluster, one per round.
    idle: Vec<f64>,
    /// `added` ÷ `idle`, per round where both were measured.
    over_idle: Vec<f64>,
    /// The lowest `over_idle` the round's CPU other than cargo-pgtest's allows (see [`floor_without_us`]).
    floor_over_idle: Vec<f64>,
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
            idle: Vec::new(),
            over_idle: Vec::new(),
            floor_over_idle: Vec::new(),
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
            let report = problems.keep(pgtest::warm_round(
                ctx,
                &self.project.dir,
                &label,
                &Self::args(isolation, jobs),
                MANY_TESTS,
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
        let idle = problems.keep(idle_clone::measure(
            ctx,
            &self.project.dir,
            &format!("r{round}-3-idle-clone"),
        ));
        if let Some(idle) = idle {
            eprintln!("  3 clone + drop on an idle cluster {idle:.1} ms");
        }
        self.idle.extend(idle);
        if let (Some(Some(t)), Some(Some(s))) = (
            per_test.as_ref().map(|r| r.phase("tests")),
            shared.as_ref().map(|r| r.phase("tests")),
        ) {
            let added = (t - s) * self.jobs as f64 / MANY_TESTS as f64 * 1000.0;
            self.added.push(added);
            self.over_idle.extend(idle.map(|idle| added / idle));
            let others = per_test.as_ref().and_then(Report::cpu_not_ours);
            if let (Some(others), Some(idle)) = (others, idle) {
                let floor = floor_without_us(others, s, ctx.cpus, self.jobs);
                self.floor_over_idle.push(floor / idle);
            }
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
        let mut cpu = OwnCpu::default();
        let mut breakdown = Breakdown::default();
        for report in &self.per_test {
            cpu.see(report, MANY_TESTS);
            breakdown.see(report, MANY_TESTS);
        }
        let mut rows = vec![
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
            Row::target(
                "15",
                "writing suite: isolation cost per test ÷ clone+drop on an idle cluster",
                Unit::Times,
                Stats::of(&self.over_idle),
                Goal::AtMost(1.3),
            ),
            Row::info(
                "  its floor without cargo-pgtest's CPU: (server + test processes) ÷ cores, then as above",
                Unit::Times,
                Stats::of(&self.floor_over_idle),
            ),
            Row::info(
                "  clone + drop on an idle cluster (cargo pgtest serve, psql \\timing)",
                Unit::Millis,
                Stats::of(&self.idle),
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
        ];
        rows.extend(cpu.rows("tests alone"));
        rows.extend(breakdown.rows("writing suite"));
        rows
    }
}

/// The lowest isolation cost per test (ms, as `added` is measured) a test-isolation run could show whose
/// server and test processes used `others` seconds of CPU in its tests phase, were cargo-pgtest's own CPU
/// nothing: that phase can be no shorter than `others` spread over all `cpus`; the shared run's tests phase
/// (`shared`, seconds) as measured.
fn floor_without_us(others: f64, shared: f64, cpus: usize, jobs: usize) -> f64 {
    (others / cpus.max(1) as f64 - shared) * jobs as f64 / MANY_TESTS as f64 * 1000.0
}
