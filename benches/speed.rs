//! cargo-pgtest's speed benchmark (issue #4): `cargo bench --bench speed`.
//!
//! Drives the real binary on projects it generates under `target/bench-projects/src/` (all sharing
//! `CARGO_TARGET_DIR=target/bench-projects`, so dependencies compile once), builds each once up front, then
//! runs every scenario once per round, rounds interleaving the scenarios, and prints the median, min and
//! max of each figure against targets 1–5. The table also goes to `target/bench-report.md`.
//!
//! - 1: fixed overhead (cluster boot + template + teardown), warm and cold, on a small project.
//! - 2: clone time per database and a test's wait for it (the test-isolation runs of 3).
//! - 3: 200 small database tests, `--isolation test` vs `--isolation shared`.
//! - 4: 100 `#[sqlx::test]` tests on a 22-table schema: plain cargo test against a hand-tuned server and a
//!   stock server (both started here with pg_ctl, stopped at the end) vs cargo pgtest.
//! - 5: the cluster's peak RAM (processes + data directory) with two tests in flight (the runs of 3).
//! - 6: a test's cost when it starts from a named snapshot vs the same rows in the plain template.
//! - 7: the 200 tests of 3 with one extra database declared vs none: cost per test, and the ratio.
//! - 8 (issue 15): 200 read-only tests, whole `cargo pgtest` ÷ plain `cargo test` on one shared database of a
//!   hand-tuned tmpfs server; 3 adds issue 15's writing-suite row (isolation cost ÷ idle clone + drop).
//! - 9 (issue 23): a suite shaped like sqlx's own (binaries of `#[sqlx::test]`s, one a single long test, and
//!   tests alone, one long): the tests phase ÷ (its longest test + the rest's time ÷ jobs).
//!
//! Every scenario states its cache state and each run must show it (cold rows from an empty cache, warm
//! rows from the cache their prepare run filled) and pass exactly the expected number of tests, as the
//! baselines must.
//!
//! Knobs: `BENCH_RUNS` (rounds, default 5), `BENCH_JOBS` (`--jobs`, default the number of CPUs),
//! `BENCH_ONLY=1,4` (scenarios to run; 2 and 5 come with 3). Every run's events and output are kept in
//! `target/bench-projects/logs/`. Exits 1 when a run failed (not when a target is missed).

mod support;

use std::time::Instant;

use support::context::Context;
use support::machine::Machine;
use support::s1_fixed::FixedOverhead;
use support::s3_isolation::Isolation;
use support::s4_sqlx::SqlxSuite;
use support::s6_snapshot::Snapshot;
use support::s7_databases::TwoDatabases;
use support::s8_readonly::ReadOnly;
use support::s9_shape::{self, Shape};
use support::{generate, realistic, s2_clone, s5_memory, server, table, Problems};

fn main() {
    let started = Instant::now();
    let ctx = Context::from_env();
    let mut problems = Problems::default();
    let _ = std::fs::remove_dir_all(&ctx.logs);

    eprintln!(
        "generating projects under {}",
        ctx.area.join("src").display()
    );
    let generated = |result: std::io::Result<generate::Project>| {
        result.expect("could not write a generated project")
    };
    let small = generated(generate::small(&ctx));
    let machine = Machine::probe(&ctx, &small).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("machine: {}", machine.describe());
    server::clean_stale(&ctx, &machine.pg_bin);

    let mut fixed = ctx.wants(1).then(|| FixedOverhead::new(small));
    let mut isolation = [2, 3, 5]
        .iter()
        .any(|s| ctx.wants(*s))
        .then(|| Isolation::new(generated(generate::many(&ctx)), ctx.jobs));
    let mut sqlx_suite = ctx
        .wants(4)
        .then(|| SqlxSuite::new(generated(realistic::project(&ctx)), ctx.jobs));
    let mut features = Features::new(&ctx);

    eprintln!("building and warming up (untimed; the first time compiles sqlx and tokio-postgres)");
    let building = Instant::now();
    if let Some(s) = &fixed {
        s.prepare(&ctx, &mut problems);
    }
    if let Some(s) = &isolation {
        s.prepare(&ctx, &mut problems);
    }
    if let Some(s) = &mut sqlx_suite {
        s.prepare(&ctx, &machine.pg_bin, &mut problems);
    }
    features.prepare(&ctx, &machine.pg_bin, &mut problems);
    eprintln!("ready after {:.1}s", building.elapsed().as_secs_f64());

    for round in 1..=ctx.runs {
        eprintln!("round {round}/{}", ctx.runs);
        if let Some(s) = &mut fixed {
            s.round(&ctx, round, &mut problems);
        }
        if let Some(s) = &mut isolation {
            s.round(&ctx, round, &mut problems);
        }
        if let Some(s) = &mut sqlx_suite {
            s.round(&ctx, round, &mut problems);
        }
        features.round(&ctx, round, &mut problems);
    }
    if let Some(s) = &mut sqlx_suite {
        s.stop_servers();
    }
    features.stop_servers();

    let mut rows = rows(
        &ctx,
        fixed.as_ref(),
        isolation.as_ref(),
        sqlx_suite.as_ref(),
    );
    rows.extend(features.rows());
    report(&ctx, &machine, &rows, &problems, started);
}

/// Scenarios 6–9, each on a project of its own: a snapshot, an extra database, a read-only suite, a
/// sqlx-shaped suite.
struct Features {
    snapshot: Option<Snapshot>,
    two_databases: Option<TwoDatabases>,
    readonly: Option<ReadOnly>,
    shape: Option<Shape>,
}

impl Features {
    fn new(ctx: &Context) -> Features {
        let written = "could not write a generated project";
        Features {
            snapshot: ctx
                .wants(6)
                .then(|| Snapshot::new(ctx, ctx.jobs).expect(written)),
            two_databases: ctx
                .wants(7)
                .then(|| TwoDatabases::new(ctx, ctx.jobs).expect(written)),
            readonly: ctx
                .wants(8)
                .then(|| ReadOnly::new(generate::readonly(ctx).expect(written), ctx.jobs)),
            shape: ctx
                .wants(9)
                .then(|| Shape::new(s9_shape::project(ctx).expect(written), ctx.jobs)),
        }
    }

    fn prepare(&mut self, ctx: &Context, pg_bin: &std::path::Path, problems: &mut Problems) {
        if let Some(s) = &self.snapshot {
            s.prepare(ctx, problems);
        }
        if let Some(s) = &self.two_databases {
            s.prepare(ctx, problems);
        }
        if let Some(s) = &mut self.readonly {
            s.prepare(ctx, pg_bin, problems);
        }
        if let Some(s) = &self.shape {
            s.prepare(ctx, problems);
        }
    }

    fn round(&mut self, ctx: &Context, round: usize, problems: &mut Problems) {
        if let Some(s) = &mut self.snapshot {
            s.round(ctx, round, problems);
        }
        if let Some(s) = &mut self.two_databases {
            s.round(ctx, round, problems);
        }
        if let Some(s) = &mut self.readonly {
            s.round(ctx, round, problems);
        }
        if let Some(s) = &mut self.shape {
            s.round(ctx, round, problems);
        }
    }

    fn stop_servers(&mut self) {
        if let Some(s) = &mut self.readonly {
            s.stop_server();
        }
    }

    fn rows(&self) -> Vec<table::Row> {
        let mut rows: Vec<table::Row> = self.snapshot.iter().flat_map(Snapshot::rows).collect();
        rows.extend(self.two_databases.iter().flat_map(TwoDatabases::rows));
        rows.extend(self.readonly.iter().flat_map(ReadOnly::rows));
        rows.extend(self.shape.iter().flat_map(Shape::rows));
        rows
    }
}

/// The table's rows, targets in order: 2 and 5 come from the runs of 3; 5 also shows the sqlx::test
/// suite's memory.
fn rows(
    ctx: &Context,
    fixed: Option<&FixedOverhead>,
    isolation: Option<&Isolation>,
    sqlx_suite: Option<&SqlxSuite>,
) -> Vec<table::Row> {
    let mut rows = Vec::new();
    if let Some(s) = fixed {
        rows.extend(s.rows());
    }
    if let Some(s) = isolation.filter(|_| ctx.wants(2)) {
        rows.extend(s2_clone::rows(&s.per_test));
    }
    if let Some(s) = isolation.filter(|_| ctx.wants(3)) {
        rows.extend(s.rows());
    }
    if let Some(s) = sqlx_suite {
        rows.extend(s.rows());
    }
    if let Some(s) = isolation.filter(|_| ctx.wants(5)) {
        let sqlx_memory = sqlx_suite.map(|q| (q.peak_memory.as_slice(), ctx.jobs));
        rows.extend(s5_memory::rows(s.memory_runs(), sqlx_memory));
    }
    rows
}

/// Prints the table, writes it to `target/bench-report.md`, and exits 1 when a run did not count.
fn report(
    ctx: &Context,
    machine: &Machine,
    rows: &[table::Row],
    problems: &Problems,
    started: Instant,
) {
    let table = table::render(rows);
    let verdicts: Vec<Option<bool>> = rows
        .iter()
        .filter(|r| r.goal.is_some())
        .map(|r| r.verdict())
        .collect();
    let met = verdicts.iter().filter(|v| **v == Some(true)).count();
    let unknown = verdicts.iter().filter(|v| v.is_none()).count();
    let elapsed = started.elapsed().as_secs_f64();
    let heading = format!(
        "Measured with `cargo bench --bench speed` ({} rounds, --jobs {}, {:.0} s in all) on {}.\n\
         Medians, with min and max, over the rounds; ratio = median ÷ target.",
        ctx.runs,
        ctx.jobs,
        elapsed,
        machine.describe()
    );
    println!("\n{heading}\n\n{table}");
    println!(
        "{met} of {} target rows met, {unknown} not measurable (n/a).",
        verdicts.len()
    );
    let report = ctx.repo.join("target").join("bench-report.md");
    let mut markdown = format!("{heading}\n\n{table}");
    if !problems.0.is_empty() {
        markdown.push_str(&format!(
            "\n{} run(s) failed and were left out; see the bench's output.\n",
            problems.0.len()
        ));
    }
    match std::fs::write(&report, markdown) {
        Ok(()) => println!("written to {}", report.display()),
        Err(error) => eprintln!("could not write {}: {error}", report.display()),
    }
    if !problems.0.is_empty() {
        eprintln!("\n{} run(s) did not count:", problems.0.len());
        for problem in &problems.0 {
            eprintln!("\n{problem}");
        }
        std::process::exit(1);
    }
}
