//! Issue 15: what isolation costs a suite that only reads, as a new user would see it. The 200 read-only
//! tests (12 tables × 100 rows, two queries each) run as a whole `cargo pgtest` (wall time, warm: its
//! prepare run filled its cache) and as a plain `cargo test` (wall time) against one shared database on a
//! hand-tuned tmpfs server started here, migrated and seeded once. Both must pass exactly 200 tests; both go
//! through cargo (a no-op build each). Per round: cargo pgtest ÷ cargo test. The prepare run also taught
//! the test history that these tests read only, so the timed runs put them in read-only groups; a third run
//! per round, with `--no-history`, shows a first run's cost, where the tests no run has seen are tried in
//! groups (issue 23's target).

use std::path::Path;

use super::context::{self, cargo, Context};
use super::generate::{Project, READONLY_TESTS};
use super::own_cpu::OwnCpu;
use super::pgtest::{self, BUILD_LIMIT, RUN_LIMIT};
use super::server::{Server, Tuning};
use super::stats::Stats;
use super::table::{Goal, Row, Unit};
use super::{secs, Problems};

/// The shared database the plain runs use.
const DATABASE: &str = "bench_readonly";

pub struct ReadOnly {
    project: Project,
    jobs: usize,
    server: Option<Server>,
    /// The shared database's URL on `server`.
    url: String,
    pgtest_runs: Vec<f64>,
    plain_runs: Vec<f64>,
    ratio: Vec<f64>,
    /// `--no-history`: nothing known read-only, every test alone.
    first_runs: Vec<f64>,
    first_ratio: Vec<f64>,
    /// Our own CPU: the learned runs (read-only groups) and the first runs (trials).
    groups_cpu: OwnCpu,
    trials_cpu: OwnCpu,
}

impl ReadOnly {
    pub fn new(project: Project, jobs: usize) -> ReadOnly {
        ReadOnly {
            project,
            jobs,
            server: None,
            url: String::new(),
            pgtest_runs: Vec::new(),
            plain_runs: Vec::new(),
            ratio: Vec::new(),
            first_runs: Vec::new(),
            first_ratio: Vec::new(),
            groups_cpu: OwnCpu::default(),
            trials_cpu: OwnCpu::default(),
        }
    }

    fn pgtest_args(&self) -> Vec<String> {
        vec!["--jobs".into(), self.jobs.to_string()]
    }

    /// Builds and fills the cache (one untimed cargo-pgtest run), starts the server, creates, migrates and
    /// seeds the shared database, and runs the plain suite once, untimed.
    pub fn prepare(&mut self, ctx: &Context, pg_bin: &Path, problems: &mut Problems) {
        problems.keep(pgtest::run(
            ctx,
            &self.project.dir,
            "prepare-8",
            &self.pgtest_args(),
            BUILD_LIMIT,
        ));
        self.server = problems.keep(Server::start_named(
            ctx,
            Tuning::HandTuned,
            pg_bin,
            "readonly",
        ));
        let Some(server) = &self.server else { return };
        let Some(base) = server.url.strip_suffix("/postgres") else {
            problems.keep::<()>(Err(format!("unexpected server URL {}", server.url)));
            return;
        };
        self.url = format!("{base}/{DATABASE}");
        if problems
            .keep(self.load_database(ctx, &server.url))
            .is_some()
        {
            problems.keep(self.cargo_test(ctx, "prepare"));
        }
    }

    /// CREATE DATABASE, then the project's migrations in order and its seed, through psql.
    fn load_database(&self, ctx: &Context, admin_url: &str) -> Result<(), String> {
        let mut files: Vec<_> = std::fs::read_dir(self.project.dir.join("migrations"))
            .map_err(|e| format!("reading the migrations: {e}"))?
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        files.push(self.project.dir.join("seed").join("seed.sql"));
        // Two commands: psql runs each `-c` on its own, outside a transaction block, as both need.
        let create = vec![
            "-c".to_owned(),
            format!("DROP DATABASE IF EXISTS {DATABASE}"),
            "-c".to_owned(),
            format!("CREATE DATABASE {DATABASE}"),
        ];
        let mut steps = vec![(admin_url.to_owned(), create)];
        for file in files {
            let path = file.to_string_lossy().into_owned();
            steps.push((self.url.clone(), vec!["-f".to_owned(), path]));
        }
        for (n, (url, args)) in steps.into_iter().enumerate() {
            let mut psql = ctx.command("psql", &self.project.dir);
            psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url])
                .args(&args);
            let log = ctx.logs.join(format!("prepare-8-psql-{n}"));
            let finished = context::run(&mut psql, &log, RUN_LIMIT)
                .map_err(|e| format!("could not run psql: {e}"))?;
            if !finished.success() {
                return Err(format!(
                    "loading the shared database failed: {}",
                    finished.describe()
                ));
            }
        }
        Ok(())
    }

    /// `cargo test` against the shared database: its wall time, when exactly every test passed.
    fn cargo_test(&self, ctx: &Context, label: &str) -> Result<f64, String> {
        let mut command = ctx.command(cargo(), &self.project.dir);
        command
            .arg("test")
            .env("DATABASE_URL", &self.url)
            .env("RUST_TEST_THREADS", self.jobs.to_string());
        let log = ctx.logs.join(format!("{label}-8-cargo-test"));
        let finished = context::run(&mut command, &log, RUN_LIMIT)
            .map_err(|e| format!("{label}: could not run cargo test: {e}"))?;
        let passed: usize = std::fs::read_to_string(&finished.stdout)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("test result: ok. "))
            .filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
            .sum();
        if !finished.success() || passed != READONLY_TESTS {
            return Err(format!(
                "{label}: plain cargo test passed {passed} tests, not {READONLY_TESTS}: {}",
                finished.describe()
            ));
        }
        Ok(finished.wall.as_secs_f64())
    }

    pub fn round(&mut self, ctx: &Context, round: usize, problems: &mut Problems) {
        let report = problems.keep(pgtest::warm_round(
            ctx,
            &self.project.dir,
            &format!("r{round}-8-pgtest"),
            &self.pgtest_args(),
            READONLY_TESTS,
        ));
        if let Some(report) = &report {
            self.groups_cpu.see(report, READONLY_TESTS);
        }
        let pgtest = report.map(|r| r.wall);
        let mut first_args = self.pgtest_args();
        first_args.push("--no-history".into());
        let first = problems.keep(pgtest::warm_round(
            ctx,
            &self.project.dir,
            &format!("r{round}-8-pgtest-first"),
            &first_args,
            READONLY_TESTS,
        ));
        if let Some(first) = &first {
            self.trials_cpu.see(first, READONLY_TESTS);
        }
        let first = first.map(|r| r.wall);
        let plain = self
            .server
            .as_ref()
            .and_then(|_| problems.keep(self.cargo_test(ctx, &format!("r{round}"))));
        eprintln!(
            "  8 read-only suite, wall: cargo pgtest {}, first run (--no-history) {}, plain cargo test {}",
            secs(pgtest),
            secs(first),
            secs(plain)
        );
        self.first_runs.extend(first);
        if let (Some(first), Some(plain)) = (first, plain) {
            self.first_ratio.push(first / plain);
        }
        self.pgtest_runs.extend(pgtest);
        self.plain_runs.extend(plain);
        if let (Some(ours), Some(plain)) = (pgtest, plain) {
            self.ratio.push(ours / plain);
        }
    }

    /// Stops the server and removes its directory (dropping does it too, a panic included).
    pub fn stop_server(&mut self) {
        self.server = None;
    }

    pub fn rows(&self) -> Vec<Row> {
        let mut rows = vec![
            Row::target(
                "15",
                format!("{READONLY_TESTS} read-only tests: cargo pgtest ÷ plain cargo test (wall)"),
                Unit::Times,
                Stats::of(&self.ratio),
                Goal::AtMost(1.5),
            ),
            Row::info(
                "  cargo pgtest, whole run (warm cache)",
                Unit::Seconds,
                Stats::of(&self.pgtest_runs),
            ),
            Row::info(
                "  cargo test, one shared database, hand-tuned tmpfs server",
                Unit::Seconds,
                Stats::of(&self.plain_runs),
            ),
            Row::target(
                "23",
                format!("{READONLY_TESTS} read-only tests, a first run (--no-history: tried in groups) ÷ plain cargo test (wall)"),
                Unit::Times,
                Stats::of(&self.first_ratio),
                Goal::AtMost(1.6),
            ),
            Row::info(
                "  cargo pgtest --no-history, whole run",
                Unit::Seconds,
                Stats::of(&self.first_runs),
            ),
        ];
        rows.extend(self.groups_cpu.rows("read-only groups"));
        rows.extend(self.trials_cpu.rows("trials (a first run)"));
        rows
    }
}
