//! Scenario 7: what a declared extra database (`[package.metadata.pgtest.databases.NAME]`) costs each test.
//! The same 200 tests as scenario 3 (they use DATABASE_URL only) run in two projects that differ in one
//! table: `bench-many` declares no extra database, `bench-many-two` declares one with migrations of its
//! own, so every test there gets two fresh databases (two clones made ahead, two drops). Per round, at the
//! same `--jobs`: cost per test = tests phase × jobs ÷ 200 for each, and their ratio.

use std::io;
use std::path::Path;

use super::generate::{self, Files, Project, MANY_TESTS};
use super::pgtest::{self, Report, BUILD_LIMIT, RUN_LIMIT};
use super::stats::Stats;
use super::table::{Row, Unit};
use super::{context::Context, secs, Problems};

/// The extra database `bench-many-two` declares, and its one migration.
const EXTRA: &str =
    "\n[package.metadata.pgtest.databases.audit]\nmigrations = \"audit/migrations\"\n";
const EXTRA_MIGRATION: (&str, &str) = (
    "audit/migrations/20240101000000_events.sql",
    "CREATE TABLE events (\n    id bigserial PRIMARY KEY,\n    test integer NOT NULL,\n    \
     body text NOT NULL\n);\n",
);

pub struct TwoDatabases {
    one: Project,
    two: Project,
    jobs: usize,
    /// Milliseconds per test, one per round where the run counted.
    one_ms: Vec<f64>,
    two_ms: Vec<f64>,
    /// Two ÷ one, per round where both counted.
    ratios: Vec<f64>,
}

impl TwoDatabases {
    /// Writes both projects: `bench-many` as scenario 3 has it, and its copy with an extra database.
    pub fn new(ctx: &Context, jobs: usize) -> io::Result<TwoDatabases> {
        let one = generate::many(ctx)?;
        let mut files = Files::new();
        read_files(&one.dir, &one.dir, &mut files)?;
        for (path, content) in &mut files {
            if path == "Cargo.toml" {
                *content = content.replace("name = \"bench-many\"", "name = \"bench-many-two\"");
                // Before `[workspace]`, so the table stays inside the package's metadata.
                *content = content.replace("\n[workspace]", &format!("{EXTRA}\n[workspace]"));
            }
        }
        files.push((EXTRA_MIGRATION.0.to_owned(), EXTRA_MIGRATION.1.to_owned()));
        let two = generate::write(ctx, "bench-many-two", files)?;
        Ok(TwoDatabases {
            one,
            two,
            jobs,
            one_ms: Vec::new(),
            two_ms: Vec::new(),
            ratios: Vec::new(),
        })
    }

    fn args(&self) -> Vec<String> {
        vec!["--jobs".into(), self.jobs.to_string()]
    }

    pub fn prepare(&self, ctx: &Context, problems: &mut Problems) {
        for (project, label) in [(&self.one, "prepare-7-one"), (&self.two, "prepare-7-two")] {
            problems.keep(pgtest::run(
                ctx,
                &project.dir,
                label,
                &self.args(),
                BUILD_LIMIT,
            ));
        }
    }

    pub fn round(&mut self, ctx: &Context, round: usize, problems: &mut Problems) {
        let mut run = |project: &Project, name: &str| {
            let label = format!("r{round}-7-{name}");
            let report: Option<Report> = problems.keep(pgtest::run(
                ctx,
                &project.dir,
                &label,
                &self.args(),
                RUN_LIMIT,
            ));
            let phase = report.and_then(|r| r.phase("tests"));
            eprintln!("  7 {name:<4} tests phase {}", secs(phase));
            phase.map(|seconds| seconds * self.jobs as f64 / MANY_TESTS as f64 * 1000.0)
        };
        let one = run(&self.one, "one");
        let two = run(&self.two, "two");
        self.one_ms.extend(one);
        self.two_ms.extend(two);
        if let (Some(one), Some(two)) = (one, two) {
            self.ratios.push(two / one);
        }
    }

    pub fn rows(&self) -> Vec<Row> {
        vec![
            Row::info(
                "two-database run: cost per test against one database (tests phase ratio)",
                Unit::Times,
                Stats::of(&self.ratios),
            ),
            Row::info(
                format!(
                    "  cost per test, one database: tests phase × {} jobs ÷ {MANY_TESTS}",
                    self.jobs
                ),
                Unit::Millis,
                Stats::of(&self.one_ms),
            ),
            Row::info(
                "  cost per test, two databases (one extra declared)",
                Unit::Millis,
                Stats::of(&self.two_ms),
            ),
        ]
    }
}

/// Every file under `dir`, as (path relative to `root`, contents).
fn read_files(root: &Path, dir: &Path, files: &mut Files) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let relative = path.strip_prefix(root).unwrap_or(&path);
        if relative == Path::new("target") || relative == Path::new("Cargo.lock") {
            continue;
        }
        if path.is_dir() {
            read_files(root, &path, files)?;
        } else {
            let relative = relative.to_string_lossy().into_owned();
            files.push((relative, std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}
