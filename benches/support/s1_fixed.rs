//! Target 1: a run's fixed overhead — cluster boot + template (migrations, fixtures) + teardown, not the
//! build nor the tests — on a small project, warm (nothing changed since the last run) and cold (no
//! cache). The project builds into a target directory of its own (`target/bench-projects/cold-cache`), so
//! emptying its cache (`<that>/pgtest/cache`) before each cold run leaves every other scenario's cache
//! warm. Each round runs cold first, so warm follows a run that refilled the cache; each run must show the
//! cache state it stands for. Also shows what of a run falls outside every phase (wall − phases).

use super::generate::Project;
use super::pgtest::{self, Cache, Expect, Report, BUILD_LIMIT, RUN_LIMIT};
use super::stats::Stats;
use super::table::{Goal, Row, Unit};
use super::{context::Context, secs, Problems};

const PARTS: [(&str, &str); 3] = [
    ("cluster_boot", "cluster boot"),
    ("template", "template"),
    ("teardown", "teardown"),
];

pub struct FixedOverhead {
    project: Project,
    warm: Vec<Report>,
    cold: Vec<Report>,
}

/// The small project's one test.
const TESTS: usize = 1;

/// boot + template + teardown, when the run reported all three.
fn overhead(report: &Report) -> Option<f64> {
    PARTS.iter().map(|(key, _)| report.phase(key)).sum()
}

/// The run's wall time less every phase it reported: work no phase counts (plus process start and exit).
fn unphased(report: &Report) -> Option<f64> {
    let phases = ["cluster_boot", "template", "build", "tests", "teardown"];
    let counted: Option<f64> = phases.iter().map(|key| report.phase(key)).sum();
    Some(report.wall - counted?)
}

/// Where the small project builds, and so where its cache lives.
fn target(ctx: &Context) -> std::path::PathBuf {
    ctx.area.join("cold-cache")
}

impl FixedOverhead {
    pub fn new(project: Project) -> FixedOverhead {
        FixedOverhead {
            project,
            warm: Vec::new(),
            cold: Vec::new(),
        }
    }

    /// The untimed first run: builds the project and fills the cache.
    pub fn prepare(&self, ctx: &Context, problems: &mut Problems) {
        problems.keep(pgtest::run_in(
            ctx,
            &self.project.dir,
            &target(ctx),
            "prepare-1",
            &[],
            BUILD_LIMIT,
            None,
        ));
    }

    pub fn round(&mut self, ctx: &Context, round: usize, problems: &mut Problems) {
        for cold in [true, false] {
            let kind = if cold { "cold" } else { "warm" };
            if cold {
                let cache = target(ctx).join("pgtest").join("cache");
                if let Err(error) = std::fs::remove_dir_all(&cache) {
                    if error.kind() != std::io::ErrorKind::NotFound {
                        problems.keep::<()>(Err(format!(
                            "could not remove {}: {error}",
                            cache.display()
                        )));
                    }
                }
            }
            let label = format!("r{round}-1-{kind}");
            let expect = Expect {
                tests: TESTS,
                cache: if cold { Cache::Cold } else { Cache::Warm },
            };
            let report = pgtest::run_in(
                ctx,
                &self.project.dir,
                &target(ctx),
                &label,
                &[],
                RUN_LIMIT,
                Some(expect),
            );
            if let Some(report) = problems.keep(report) {
                eprintln!(
                    "  1 {kind}   overhead {} (boot {}, template {}, teardown {}; cache hit: {})",
                    secs(overhead(&report)),
                    secs(report.phase("cluster_boot")),
                    secs(report.phase("template")),
                    secs(report.phase("teardown")),
                    report.cache_hit.map_or("n/a".to_owned(), |h| h.to_string()),
                );
                (if cold { &mut self.cold } else { &mut self.warm }).push(report);
            }
        }
    }

    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for (kind, reports, limit) in [("warm", &self.warm, 0.15), ("cold", &self.cold, 0.6)] {
            let hits = reports
                .iter()
                .filter_map(|r| r.cache_hit)
                .collect::<Vec<_>>();
            let hits = if hits.is_empty() {
                "cache hits n/a".to_owned()
            } else {
                format!(
                    "cache hits {}/{}",
                    hits.iter().filter(|h| **h).count(),
                    hits.len()
                )
            };
            let totals: Vec<f64> = reports.iter().filter_map(overhead).collect();
            rows.push(Row::target(
                "1",
                format!("fixed overhead, {kind} (boot+template+teardown; {hits})"),
                Unit::Seconds,
                Stats::of(&totals),
                Goal::AtMost(limit),
            ));
            for (key, label) in PARTS {
                let parts: Vec<f64> = reports.iter().filter_map(|r| r.phase(key)).collect();
                rows.push(Row::info(
                    format!("  {kind}: {label}"),
                    Unit::Seconds,
                    Stats::of(&parts),
                ));
            }
            let outside: Vec<f64> = reports.iter().filter_map(unphased).collect();
            rows.push(Row::info(
                format!("  {kind}: outside every phase (wall − phases; process start and exit)"),
                Unit::Seconds,
                Stats::of(&outside),
            ));
        }
        rows
    }
}
