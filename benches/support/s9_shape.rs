//! Issue 23: a suite shaped like sqlx's own, where a run's end used to be a sum. Three binaries of quick
//! `#[sqlx::test]`s, one binary whose single `#[sqlx::test]` is much longer than the rest (a batch of one
//! test), and a binary of tests that run alone, one of them long. The floor for its tests phase is set by the
//! longest test and the rest's work spread over the jobs: `longest + (all tests' time − longest) ÷ jobs`
//! (any schedule that never leaves a job idle while work waits stays under it). Per round: the tests
//! phase ÷ that bound, from the run's own events (warm cache, with the history its prepare run left).

use std::fmt::Write as _;

use super::context::Context;
use super::generate::{self, Files, Project};
use super::pgtest::{self, BUILD_LIMIT};
use super::stats::Stats;
use super::table::{Goal, Row, Unit};
use super::{secs, Problems};

/// Quick `#[sqlx::test]`s per binary, and such binaries.
const QUICK_PER_BINARY: usize = 15;
const QUICK_BINARIES: [&str; 3] = ["sqlx_orders", "sqlx_users", "sqlx_stock"];
/// Tests alone besides the long one.
const ALONE: usize = 30;
/// How long the long `#[sqlx::test]` and the long test alone sleep, in milliseconds.
const LONG_SQLX_MS: u64 = 4_000;
const LONG_ALONE_MS: u64 = 2_000;
pub const TESTS: usize = QUICK_PER_BINARY * QUICK_BINARIES.len() + 1 + ALONE + 1;

const COMMON: &str = r#"//! Generated: what every test does, a write and a read on its own database.
use sqlx::{Connection, PgConnection};

pub async fn touch(connection: &mut PgConnection, n: i32) {
    sqlx::query("INSERT INTO items (n) VALUES ($1)")
        .bind(n)
        .execute(&mut *connection)
        .await
        .expect("insert");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&mut *connection)
        .await
        .expect("count");
    assert_eq!(count, 1, "a database of its own");
}

pub async fn connect() -> PgConnection {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    PgConnection::connect(&url).await.expect("connect")
}
"#;

/// The project: `bench-shape`.
pub fn project(ctx: &Context) -> std::io::Result<Project> {
    let mut files: Files = vec![
        (
            "Cargo.toml".to_owned(),
            generate::manifest(
                "bench-shape",
                "cargo-pgtest benchmark, issue 23: a suite shaped like sqlx's own",
                generate::SQLX_TEST_DEPENDENCIES,
                "migrations = \"migrations\"\n",
            ),
        ),
        (
            "migrations/20240101000000_items.sql".to_owned(),
            "CREATE TABLE items (id serial PRIMARY KEY, n int NOT NULL);\n".to_owned(),
        ),
        ("tests/common/mod.rs".to_owned(), COMMON.to_owned()),
    ];
    for (index, binary) in QUICK_BINARIES.iter().enumerate() {
        let mut text = format!(
            "//! Generated: {QUICK_PER_BINARY} quick `#[sqlx::test]`s.\n\nmod common;\n\nuse sqlx::PgPool;\n"
        );
        for k in 0..QUICK_PER_BINARY {
            let n = index * QUICK_PER_BINARY + k;
            let _ = write!(
                text,
                "\n#[sqlx::test]\nasync fn quick_{n:03}(pool: PgPool) {{\n    \
                 let mut connection = pool.acquire().await.unwrap();\n    \
                 common::touch(&mut connection, {n}).await;\n}}\n"
            );
        }
        files.push((format!("tests/{binary}.rs"), text));
    }
    files.push((
        "tests/sqlx_long.rs".to_owned(),
        format!(
            "//! Generated: one long `#[sqlx::test]`, alone in its binary.\n\nmod common;\n\nuse sqlx::PgPool;\n\n\
             #[sqlx::test]\nasync fn long_one(pool: PgPool) {{\n    \
             std::thread::sleep(std::time::Duration::from_millis({LONG_SQLX_MS}));\n    \
             let mut connection = pool.acquire().await.unwrap();\n    \
             common::touch(&mut connection, 0).await;\n}}\n"
        ),
    ));
    let mut alone = format!(
        "//! Generated: {ALONE} quick tests and a long one, each alone.\n\nmod common;\n\n\
         #[tokio::test]\nasync fn long_alone() {{\n    \
         std::thread::sleep(std::time::Duration::from_millis({LONG_ALONE_MS}));\n    \
         common::touch(&mut common::connect().await, 0).await;\n}}\n"
    );
    for n in 0..ALONE {
        let _ = write!(
            alone,
            "\n#[tokio::test]\nasync fn alone_{n:03}() {{\n    \
             common::touch(&mut common::connect().await, {n}).await;\n}}\n"
        );
    }
    files.push(("tests/alone.rs".to_owned(), alone));
    generate::write(ctx, "bench-shape", files)
}

pub struct Shape {
    project: Project,
    jobs: usize,
    /// Per round: the tests phase, its bound, and the one ÷ the other.
    phases: Vec<f64>,
    bounds: Vec<f64>,
    ratio: Vec<f64>,
}

impl Shape {
    pub fn new(project: Project, jobs: usize) -> Shape {
        Shape {
            project,
            jobs,
            phases: Vec::new(),
            bounds: Vec::new(),
            ratio: Vec::new(),
        }
    }

    fn args(&self) -> Vec<String> {
        vec!["--jobs".into(), self.jobs.to_string()]
    }

    /// Builds, fills the cache and teaches the history the tests' times (two untimed runs).
    pub fn prepare(&self, ctx: &Context, problems: &mut Problems) {
        for label in ["prepare-9", "prepare-9-history"] {
            problems.keep(pgtest::run(
                ctx,
                &self.project.dir,
                label,
                &self.args(),
                BUILD_LIMIT,
            ));
        }
    }

    pub fn round(&mut self, ctx: &Context, round: usize, problems: &mut Problems) {
        let report = problems.keep(pgtest::warm_round(
            ctx,
            &self.project.dir,
            &format!("r{round}-9-shape"),
            &self.args(),
            TESTS,
        ));
        let Some(report) = report else { return };
        let phase = report.phase("tests");
        let bound = bound(&report.durations, self.jobs);
        eprintln!(
            "  9 sqlx-shaped suite: tests phase {}, bound (longest + rest ÷ jobs) {}",
            secs(phase),
            secs(bound)
        );
        if let (Some(phase), Some(bound)) = (phase, bound) {
            self.phases.push(phase);
            self.bounds.push(bound);
            self.ratio.push(phase / bound);
        }
    }

    pub fn rows(&self) -> Vec<Row> {
        vec![
            Row::target(
                "23",
                format!(
                    "sqlx-shaped suite ({TESTS} tests, a one-test batch of {} s): tests phase ÷ (longest + rest ÷ jobs)",
                    LONG_SQLX_MS / 1000
                ),
                Unit::Times,
                Stats::of(&self.ratio),
                Goal::AtMost(1.15),
            ),
            Row::info("  tests phase", Unit::Seconds, Stats::of(&self.phases)),
            Row::info(
                "  longest test + the rest's time ÷ jobs",
                Unit::Seconds,
                Stats::of(&self.bounds),
            ),
        ]
    }
}

/// The longest test plus the others' time spread over `jobs`; None without tests.
fn bound(durations: &[f64], jobs: usize) -> Option<f64> {
    let longest = durations
        .iter()
        .copied()
        .fold(None, |max: Option<f64>, d| {
            Some(max.map_or(d, |m| m.max(d)))
        })?;
    let rest: f64 = durations.iter().sum::<f64>() - longest;
    Some(longest + rest / jobs.max(1) as f64)
}
