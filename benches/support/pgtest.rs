//! One run of the real `cargo-pgtest` binary in a generated project, and what its `--json` event stream
//! says about it. Fields that cargo-pgtest does not emit (yet) stay empty, never an error.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::context::{self, Context, BINARY};

/// A cold first build of a project's dependencies on 2 cores takes minutes.
pub const BUILD_LIMIT: Duration = Duration::from_secs(30 * 60);
pub const RUN_LIMIT: Duration = Duration::from_secs(10 * 60);

/// What one run's event stream reported.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// `phase_finished` seconds by phase key (`cluster_boot`, `template`, `build`, `tests`, `teardown`),
    /// completed from the summary's `phases`.
    pub phases: BTreeMap<String, f64>,
    /// `template_cache`: true only when every template came from the cache.
    pub cache_hit: Option<bool>,
    /// `database_cloned` seconds, one per clone.
    pub clones: Vec<f64>,
    /// `test_started` `database_wait_seconds`, one per test that reported it.
    pub waits: Vec<f64>,
    /// The summary's `peak_memory_bytes`, else the largest `cluster_memory`.
    pub peak_memory: Option<u64>,
    pub passed: u64,
    /// Failed, crashed, timed out or not run.
    pub unsuccessful: u64,
    pub summary_seen: bool,
    /// The summary's `peak_ram_bytes`: server processes + data directory (RAM on tmpfs), else the largest
    /// `cluster_memory` `ram_peak_bytes`.
    pub peak_ram: Option<u64>,
    /// Wall time of the whole run, from our spawn to its exit.
    pub wall: f64,
    /// Each passing test's own time (`test_finished` seconds).
    pub durations: Vec<f64>,
    /// cargo-pgtest's own CPU in the tests phase (`own_cpu`): every thread, and its main thread.
    pub own_cpu: Option<f64>,
    pub main_thread_cpu: Option<f64>,
    /// Its threads still running at the end of the tests phase that used CPU in it (`own_cpu`), busiest
    /// first: name, CPU.
    pub threads: Vec<(String, f64)>,
    /// The CPU of its other threads that served the tests (`thread_cpu`), by name.
    pub thread_cpu: BTreeMap<String, f64>,
    /// The rest of the tests phase's CPU (`tests_cpu`): the server's processes, and the test processes.
    pub server_cpu: Option<f64>,
    pub test_processes_cpu: Option<f64>,
    /// `database_checked` seconds, one per check of a test's database.
    pub checks: Vec<f64>,
}

impl Report {
    pub fn phase(&self, key: &str) -> Option<f64> {
        self.phases.get(key).copied()
    }

    /// The tests phase's CPU other than cargo-pgtest's own: the server's processes and the test processes.
    pub fn cpu_not_ours(&self) -> Option<f64> {
        Some(self.server_cpu? + self.test_processes_cpu?)
    }

    /// Parses the JSON-lines event stream; unknown events and lines are skipped.
    pub fn parse(text: &str) -> Report {
        let mut report = Report::default();
        for value in text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        {
            let seconds = value.get("seconds").and_then(Value::as_f64);
            match value
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "phase_finished" => {
                    if let (Some(phase), Some(seconds)) =
                        (value.get("phase").and_then(Value::as_str), seconds)
                    {
                        report.phases.insert(phase.to_owned(), seconds);
                    }
                }
                "template_cache" => {
                    if let Some(hit) = value.get("hit").and_then(Value::as_bool) {
                        report.cache_hit = Some(report.cache_hit.unwrap_or(true) && hit);
                    }
                }
                "database_cloned" => report.clones.extend(seconds),
                "database_checked" => report.checks.extend(seconds),
                "tests_cpu" => {
                    report.server_cpu = value.get("server_seconds").and_then(Value::as_f64);
                    report.test_processes_cpu =
                        value.get("test_processes_seconds").and_then(Value::as_f64);
                }
                "own_cpu" => {
                    report.own_cpu = value.get("process_seconds").and_then(Value::as_f64);
                    report.main_thread_cpu =
                        value.get("main_thread_seconds").and_then(Value::as_f64);
                    let threads = value.get("threads").and_then(Value::as_array);
                    report.threads = threads
                        .into_iter()
                        .flatten()
                        .filter_map(|thread| {
                            let name = thread.get("name").and_then(Value::as_str)?;
                            Some((name.to_owned(), thread.get("seconds")?.as_f64()?))
                        })
                        .collect();
                }
                "thread_cpu" => {
                    if let (Some(thread), Some(seconds)) =
                        (value.get("thread").and_then(Value::as_str), seconds)
                    {
                        *report.thread_cpu.entry(thread.to_owned()).or_default() += seconds;
                    }
                }
                "test_finished"
                    if value.get("status").and_then(Value::as_str) == Some("passed") =>
                {
                    report.durations.extend(seconds)
                }
                "test_started" => report
                    .waits
                    .extend(value.get("database_wait_seconds").and_then(Value::as_f64)),
                "cluster_memory" => {
                    if let Some(peak) = value.get("peak_bytes").and_then(Value::as_u64) {
                        report.peak_memory = Some(report.peak_memory.map_or(peak, |p| p.max(peak)));
                    }
                    if let Some(peak) = value.get("ram_peak_bytes").and_then(Value::as_u64) {
                        report.peak_ram = Some(report.peak_ram.map_or(peak, |p| p.max(peak)));
                    }
                }
                "summary" => report.read_summary(&value),
                _ => {}
            }
        }
        report
    }

    fn read_summary(&mut self, value: &Value) {
        self.summary_seen = true;
        let count = |key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
        self.passed = count("passed");
        self.unsuccessful =
            count("failed") + count("crashed") + count("timed_out") + count("not_run");
        if let Some(peak) = value.get("peak_memory_bytes").and_then(Value::as_u64) {
            self.peak_memory = Some(peak);
        }
        if let Some(peak) = value.get("peak_ram_bytes").and_then(Value::as_u64) {
            self.peak_ram = Some(peak);
        }
        if let Some(phases) = value.get("phases").and_then(Value::as_object) {
            for (phase, seconds) in phases {
                if let Some(seconds) = seconds.as_f64() {
                    self.phases.entry(phase.clone()).or_insert(seconds);
                }
            }
        }
    }
}

/// The cache state a scenario states for its timed runs (prepare runs, which fill the cache whatever its
/// state, expect nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// Every template must come from the cache (the scenario's untimed prepare run filled it).
    Warm,
    /// No template may come from the cache (the scenario emptied it just before).
    Cold,
}

/// What a run must show to count: exactly `tests` passed, nothing else, in the stated cache state.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub tests: usize,
    pub cache: Cache,
}

/// Runs `cargo-pgtest pgtest --json <log>.jsonl <args>` in `project` (building into the shared target
/// directory). `Err` says why the run does not count: it failed, a test failed, or it reported no summary.
pub fn run(
    ctx: &Context,
    project: &Path,
    label: &str,
    args: &[String],
    limit: Duration,
) -> Result<Report, String> {
    run_in(ctx, project, &ctx.area, label, args, limit, None)
}

/// A timed run of a scenario's round: in the shared target directory, within [`RUN_LIMIT`], and counted only
/// if exactly `tests` passed with every template from the cache (the scenario's prepare run filled it).
pub fn warm_round(
    ctx: &Context,
    project: &Path,
    label: &str,
    args: &[String],
    tests: usize,
) -> Result<Report, String> {
    let expect = Expect {
        tests,
        cache: Cache::Warm,
    };
    run_in(
        ctx,
        project,
        &ctx.area,
        label,
        args,
        RUN_LIMIT,
        Some(expect),
    )
}

/// [`run`] with `CARGO_TARGET_DIR=target` (where the project's cache lives, `<target>/pgtest/cache`), and,
/// with `expect`, the exact number of tests that must pass and the cache state the run must show.
pub fn run_in(
    ctx: &Context,
    project: &Path,
    target: &Path,
    label: &str,
    args: &[String],
    limit: Duration,
    expect: Option<Expect>,
) -> Result<Report, String> {
    let log = ctx.logs.join(label);
    let json = log.with_extension("jsonl");
    let _ = std::fs::remove_file(&json);
    let mut command = ctx.command(BINARY, project);
    command
        .env("CARGO_TARGET_DIR", target)
        .arg("pgtest")
        .arg("--json")
        .arg(&json)
        .args(args);
    let finished = context::run(&mut command, &log, limit)
        .map_err(|error| format!("{label}: could not run {BINARY}: {error}"))?;
    let mut report = Report::parse(&std::fs::read_to_string(&json).unwrap_or_default());
    report.wall = finished.wall.as_secs_f64();
    let count_wrong = expect.is_some_and(|e| report.passed != e.tests as u64);
    let cache_wrong = match expect.map(|e| e.cache) {
        Some(Cache::Warm) => report.cache_hit != Some(true),
        Some(Cache::Cold) => report.cache_hit != Some(false),
        None => false,
    };
    if cache_wrong {
        return Err(format!(
            "{label}: the run's cache state is not the one its scenario states ({:?} expected, \
             template_cache hit: {:?}); see {}",
            expect.map(|e| e.cache),
            report.cache_hit,
            json.display()
        ));
    }
    if !finished.success()
        || !report.summary_seen
        || report.unsuccessful > 0
        || report.passed == 0
        || count_wrong
    {
        return Err(format!(
            "{label}: `cargo pgtest {}` in {} did not pass cleanly ({} passed{}, {} not, summary {}): {}",
            args.join(" "),
            project.display(),
            report.passed,
            expect.map_or(String::new(), |e| format!(" of {} expected", e.tests)),
            report.unsuccessful,
            if report.summary_seen { "seen" } else { "missing" },
            finished.describe()
        ));
    }
    Ok(report)
}
