//! Target 4: against what users run today. The realistic `#[sqlx::test]` project's test phase under
//! (a) plain `cargo test` against a hand-tuned PostgreSQL (tmpfs, fsync, synchronous_commit and
//! full_page_writes off), (b) `cargo pgtest`, unchanged, and (c) plain `cargo test` against a stock server
//! on disk. For (a) and (c) the test executables, built beforehand, run one after another as cargo test
//! runs them (each with its tests in `jobs` threads), timed from the first spawn to the last exit; for (b)
//! the tests phase cargo-pgtest reports; a ceiling row bounds the speed-up from (b)'s CPU, cargo-pgtest's own
//! left out. One more cargo-pgtest run per round, at a many-core machine's
//! `--jobs`, only feeds the CPU rows (the gateway's relaying spread over its relay threads).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::breakdown::Breakdown;
use super::context::{self, cargo, Context};
use super::generate::Project;
use super::own_cpu::OwnCpu;
use super::pgtest::{self, Report, BUILD_LIMIT, RUN_LIMIT};
use super::realistic::TESTS;
use super::server::{Server, Tuning};
use super::stats::Stats;
use super::table::{Goal, Row, Unit};
use super::{secs, Problems};

pub struct SqlxSuite {
    project: Project,
    jobs: usize,
    executables: Vec<PathBuf>,
    tuned: Option<Server>,
    stock: Option<Server>,
    /// Seconds per round: (a), (b), (c).
    tuned_runs: Vec<f64>,
    pgtest_runs: Vec<f64>,
    stock_runs: Vec<f64>,
    /// Per round: (a) ÷ (b), and (c) ÷ (a).
    speedup: Vec<f64>,
    /// Per round: the highest (a) ÷ (b) the CPU of (b)'s server and test processes allows, were
    /// cargo-pgtest's own CPU nothing: (b) no shorter than that CPU spread over every core.
    speedup_ceiling: Vec<f64>,
    stock_slowdown: Vec<f64>,
    /// The cargo-pgtest runs' cluster peak RAM (processes + data directory), in bytes.
    pub peak_memory: Vec<u64>,
    cpu: OwnCpu,
    breakdown: Breakdown,
    /// One more cargo-pgtest run per round at [`WIDE_JOBS`], for the CPU rows only.
    wide_cpu: OwnCpu,
}

/// `--jobs` of a many-core machine: the gateway relays on threads of its own (one per four jobs, at most
/// one per core), so its CPU per test spreads over them.
const WIDE_JOBS: usize = 16;

impl SqlxSuite {
    pub fn new(project: Project, jobs: usize) -> SqlxSuite {
        SqlxSuite {
            project,
            jobs,
            executables: Vec::new(),
            tuned: None,
            stock: None,
            tuned_runs: Vec::new(),
            pgtest_runs: Vec::new(),
            stock_runs: Vec::new(),
            speedup: Vec::new(),
            speedup_ceiling: Vec::new(),
            stock_slowdown: Vec::new(),
            peak_memory: Vec::new(),
            cpu: OwnCpu::default(),
            breakdown: Breakdown::default(),
            wide_cpu: OwnCpu::default(),
        }
    }

    fn pgtest_args(&self) -> Vec<String> {
        vec!["--jobs".into(), self.jobs.to_string()]
    }

    /// Builds (one untimed cargo-pgtest run), finds the test executables, starts both servers and runs the
    /// suite once against each, untimed, so that every side starts its rounds warm.
    pub fn prepare(&mut self, ctx: &Context, pg_bin: &Path, problems: &mut Problems) {
        problems.keep(pgtest::run(
            ctx,
            &self.project.dir,
            "prepare-4",
            &self.pgtest_args(),
            BUILD_LIMIT,
        ));
        let Some(executables) = problems.keep(self.find_executables(ctx)) else {
            return;
        };
        self.executables = executables;
        self.tuned = problems.keep(Server::start(ctx, Tuning::HandTuned, pg_bin));
        self.stock = problems.keep(Server::start(ctx, Tuning::Stock, pg_bin));
        for server in [&self.tuned, &self.stock].into_iter().flatten() {
            problems.keep(self.cargo_test(ctx, server, "prepare"));
        }
    }

    /// `cargo test --no-run`: the build is already fresh, this only names the executables.
    fn find_executables(&self, ctx: &Context) -> Result<Vec<PathBuf>, String> {
        let mut command = ctx.command(cargo(), &self.project.dir);
        command.args(["test", "--no-run", "--message-format=json"]);
        let finished = context::run(
            &mut command,
            &ctx.logs.join("prepare-4-no-run"),
            BUILD_LIMIT,
        )
        .map_err(|e| format!("cargo test --no-run: {e}"))?;
        if !finished.success() {
            return Err(format!(
                "cargo test --no-run failed: {}",
                finished.describe()
            ));
        }
        let out = std::fs::read_to_string(&finished.stdout).unwrap_or_default();
        let executables: Vec<PathBuf> = out
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["profile"]["test"] == true)
            .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
            .collect();
        if executables.is_empty() {
            return Err(format!(
                "cargo test --no-run named no test executable in {}",
                self.project.dir.display()
            ));
        }
        Ok(executables)
    }

    /// The suite as `cargo test` runs it, against `server`: seconds from the first spawn to the last exit.
    fn cargo_test(&self, ctx: &Context, server: &Server, label: &str) -> Result<f64, String> {
        let mut seconds = 0.0;
        let mut passed = 0;
        for executable in &self.executables {
            let name = executable.file_name().unwrap_or_default().to_string_lossy();
            let log = ctx
                .logs
                .join(format!("{label}-4-{:?}-{name}", server.tuning).to_lowercase());
            let mut command = ctx.command(executable, &self.project.dir);
            command
                .env("DATABASE_URL", &server.url)
                .env("RUST_TEST_THREADS", self.jobs.to_string());
            let finished =
                context::run(&mut command, &log, RUN_LIMIT).map_err(|e| format!("{name}: {e}"))?;
            if !finished.success() {
                return Err(format!(
                    "{label}: {name} against the {:?} server failed: {}",
                    server.tuning,
                    finished.describe()
                ));
            }
            seconds += finished.wall.as_secs_f64();
            passed += std::fs::read_to_string(&finished.stdout)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.strip_prefix("test result: ok. "))
                .filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
                .sum::<usize>();
        }
        if passed != TESTS {
            return Err(format!(
                "{label}: {passed} tests passed against the {:?} server, not {TESTS}",
                server.tuning
            ));
        }
        Ok(seconds)
    }

    pub fn round(&mut self, ctx: &Context, round: usize, problems: &mut Problems) {
        let label = format!("r{round}");
        let report = problems.keep(pgtest::warm_round(
            ctx,
            &self.project.dir,
            &format!("{label}-4-pgtest"),
            &self.pgtest_args(),
            TESTS,
        ));
        self.peak_memory
            .extend(report.as_ref().and_then(|r| r.peak_ram));
        if let Some(report) = &report {
            self.cpu.see(report, TESTS);
            self.breakdown.see(report, TESTS);
        }
        let not_ours = report.as_ref().and_then(Report::cpu_not_ours);
        let pgtest = report.and_then(|r| r.phase("tests"));
        let wide = problems.keep(pgtest::warm_round(
            ctx,
            &self.project.dir,
            &format!("{label}-4-pgtest-wide"),
            &["--jobs".to_owned(), WIDE_JOBS.to_string()],
            TESTS,
        ));
        if let Some(report) = &wide {
            self.wide_cpu.see(report, TESTS);
        }
        let mut baseline = |server: &Option<Server>| {
            server
                .as_ref()
                .and_then(|server| problems.keep(self.cargo_test(ctx, server, &label)))
        };
        let tuned = baseline(&self.tuned);
        let stock = baseline(&self.stock);
        eprintln!(
            "  4 tests phase: (a) hand-tuned {}, (b) cargo pgtest {}, (c) stock {}",
            secs(tuned),
            secs(pgtest),
            secs(stock)
        );
        self.tuned_runs.extend(tuned);
        self.pgtest_runs.extend(pgtest);
        self.stock_runs.extend(stock);
        if let (Some(a), Some(b)) = (tuned, pgtest) {
            self.speedup.push(a / b);
        }
        if let (Some(a), Some(not_ours)) = (tuned, not_ours) {
            self.speedup_ceiling
                .push(a / (not_ours / ctx.cpus.max(1) as f64));
        }
        if let (Some(a), Some(c)) = (tuned, stock) {
            self.stock_slowdown.push(c / a);
        }
    }

    /// Stops both servers and removes their directories (dropping does it too, a panic included).
    pub fn stop_servers(&mut self) {
        self.tuned = None;
        self.stock = None;
    }

    pub fn rows(&self) -> Vec<Row> {
        let mut rows = vec![
            Row::target(
                "4",
                format!("speed-up of {TESTS} #[sqlx::test] tests: (a) ÷ (b)"),
                Unit::Times,
                Stats::of(&self.speedup),
                Goal::AtLeast(3.0),
            ),
            Row::info(
                "  its ceiling without cargo-pgtest's CPU: (a) ÷ ((b)'s server + test processes CPU ÷ cores)",
                Unit::Times,
                Stats::of(&self.speedup_ceiling),
            ),
            Row::info(
                "  (a) cargo test, hand-tuned server on tmpfs",
                Unit::Seconds,
                Stats::of(&self.tuned_runs),
            ),
            Row::info(
                "  (b) cargo pgtest, tests phase",
                Unit::Seconds,
                Stats::of(&self.pgtest_runs),
            ),
            Row::info(
                "  (c) cargo test, stock server on disk",
                Unit::Seconds,
                Stats::of(&self.stock_runs),
            ),
            Row::info(
                "  (c) ÷ (a): stock vs hand-tuned",
                Unit::Times,
                Stats::of(&self.stock_slowdown),
            ),
        ];
        rows.extend(self.cpu.rows("#[sqlx::test]s"));
        rows.extend(
            self.wide_cpu
                .rows(&format!("#[sqlx::test]s at --jobs {WIDE_JOBS}")),
        );
        rows.extend(self.breakdown.rows("#[sqlx::test]s"));
        rows
    }
}
