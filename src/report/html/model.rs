//! What the page shows, read from the `--json` lines alone (the same values whether the page is written at
//! the end of a run or rendered later from its event file): the tests with each attempt's place on the
//! timeline, the batches, the phases, the memory samples and the run's facts. Lines of types it does not
//! know are skipped, so a page can be rendered from a newer version's file.

use std::collections::HashMap;

use serde_json::Value;

/// One attempt of a test: where and when it ran.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attempt {
    /// When it started (None: no `test_started`, as for doc tests and tests NOT RUN).
    pub(crate) start: Option<f64>,
    /// When its result was sent.
    pub(crate) end: f64,
    /// How long it waited for its database before `start`.
    pub(crate) wait: Option<f64>,
    pub(crate) slot: Option<usize>,
    /// Its status word (`passed`, `failed`, …) and its time as the harness told it.
    pub(crate) status: String,
    pub(crate) seconds: Option<f64>,
}

/// One test and everything the events say about it.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Test {
    pub(crate) binary: String,
    pub(crate) name: String,
    /// The status word of its result (`ignored` for a test not asked for); empty until it has one.
    pub(crate) status: String,
    /// The status as the terminal shows it: PASS, FAIL, the signal of a crash, TIMEOUT, NOT RUN.
    pub(crate) label: String,
    pub(crate) seconds: Option<f64>,
    pub(crate) output: String,
    /// Why it did not run.
    pub(crate) reason: Option<String>,
    /// Every attempt, the last one its result.
    pub(crate) attempts: Vec<Attempt>,
    /// The database of its last attempt (`fresh`, `reused`, `group`, …), the batch it ran in.
    pub(crate) database: Option<String>,
    pub(crate) batch: Option<usize>,
    /// The median of its last passing runs, when it was far slower than that.
    pub(crate) slower_than: Option<f64>,
    /// Its times in earlier passing runs, oldest first.
    pub(crate) history: Vec<f64>,
    /// The command opening its kept database.
    pub(crate) kept: Option<String>,
    /// Its database's check after it: start, end, whether it was untouched.
    pub(crate) check: Option<(f64, f64, bool)>,
    /// Where its pending attempt started, until that attempt ends.
    pending: Option<Pending>,
}

#[derive(Debug, Clone, PartialEq)]
struct Pending {
    at: f64,
    wait: Option<f64>,
    slot: Option<usize>,
}

impl Test {
    /// Passed, after failed attempts.
    pub(crate) fn flaky(&self) -> bool {
        self.status == "passed" && self.attempts.len() > 1
    }

    /// Did not pass (ignored tests and tests still without a result excepted).
    pub(crate) fn failed(&self) -> bool {
        !matches!(self.status.as_str(), "passed" | "ignored" | "")
    }
}

/// A process that ran several tests.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Batch {
    pub(crate) number: usize,
    pub(crate) kind: String,
    pub(crate) binary: String,
    pub(crate) tests: usize,
    pub(crate) slots: usize,
    /// The job slots it held: the timeline's lanes it covers.
    pub(crate) lanes: Vec<usize>,
    pub(crate) start: f64,
    /// None when the run ended before it did.
    pub(crate) end: Option<f64>,
}

/// The cluster the run used.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cluster {
    pub(crate) version: String,
    pub(crate) in_ram: bool,
    pub(crate) run_dir: String,
}

/// The peak of the RAM the cluster held, and its parts then; the processes' own peak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Peak {
    pub(crate) ram: u64,
    pub(crate) processes: u64,
    pub(crate) data_dir: u64,
    pub(crate) processes_peak: u64,
}

/// A memory sample: when, the processes' bytes, the data directory's bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    pub(crate) at: f64,
    pub(crate) processes: u64,
    pub(crate) data_dir: u64,
}

/// The run's counts, as its closing line (or, without one, its tests) say.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Counts {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
    pub(crate) crashed: u64,
    pub(crate) timed_out: u64,
    pub(crate) not_run: u64,
    pub(crate) ignored: u64,
    pub(crate) filtered_out: u64,
    pub(crate) flaky: u64,
}

impl Counts {
    pub(crate) fn failures(&self) -> u64 {
        self.failed + self.crashed + self.timed_out + self.not_run
    }
}

/// Everything the page shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Run {
    pub(crate) tests: Vec<Test>,
    pub(crate) batches: Vec<Batch>,
    /// Each phase that ended: its name, start and end.
    pub(crate) phases: Vec<(String, f64, f64)>,
    pub(crate) memory: Vec<Sample>,
    pub(crate) cluster: Option<Cluster>,
    pub(crate) peak: Option<Peak>,
    pub(crate) counts: Counts,
    /// The run's wall time: the closing line's time, else the last event's.
    pub(crate) wall: f64,
    pub(crate) jobs: Option<usize>,
    pub(crate) isolation: Option<String>,
    pub(crate) interrupted: Option<String>,
    pub(crate) warnings: Vec<String>,
    /// Facts worth a line: the template cache, reuse, read-only groups.
    pub(crate) notes: Vec<String>,
    /// Whether the closing `summary` line was read (a run killed outright has none).
    pub(crate) complete: bool,
    /// How many lines it was read from.
    pub(crate) lines: usize,
    index: HashMap<(String, String), usize>,
}

fn text(line: &Value, key: &str) -> String {
    line[key].as_str().unwrap_or_default().to_owned()
}

fn number(line: &Value, key: &str) -> Option<f64> {
    line[key].as_f64()
}

fn count(line: &Value, key: &str) -> u64 {
    line[key].as_u64().unwrap_or(0)
}

/// The job slots a batch held: its `lanes`, or the first `slots` in an event file that has none (written
/// before batches shared the slots with other work).
fn lanes(line: &Value, slots: usize) -> Vec<usize> {
    match line["lanes"].as_array() {
        Some(lanes) => lanes
            .iter()
            .filter_map(Value::as_u64)
            .map(|lane| lane as usize)
            .collect(),
        None => (0..slots).collect(),
    }
}

impl Run {
    /// The run the lines tell, in the order they were written.
    pub(crate) fn from_lines(lines: &[Value]) -> Run {
        let mut run = Run::default();
        for line in lines {
            let at = number(line, "at_seconds").unwrap_or(run.wall);
            run.wall = run.wall.max(at);
            if !run.test_event(line, at) {
                run.run_event(line, at);
            }
        }
        run.lines = lines.len();
        if !run.complete {
            run.counts = counts_of(&run.tests);
        }
        run
    }

    /// The test a line names, made on first sight.
    fn test_of(&mut self, line: &Value) -> &mut Test {
        let key = (text(&line["test"], "binary"), text(&line["test"], "name"));
        let next = self.tests.len();
        let index = *self.index.entry(key.clone()).or_insert(next);
        if index == next {
            self.tests.push(Test {
                binary: key.0,
                name: key.1,
                ..Test::default()
            });
        }
        &mut self.tests[index]
    }

    /// Applies a line about one test; false when it is about something else.
    fn test_event(&mut self, line: &Value, at: f64) -> bool {
        let kind = line["type"].as_str().unwrap_or_default();
        if !line["test"].is_object() {
            return false;
        }
        let test = self.test_of(line);
        match kind {
            "test_started" => {
                test.pending = Some(Pending {
                    at,
                    wait: number(line, "database_wait_seconds"),
                    slot: line["slot"].as_u64().map(|slot| slot as usize),
                });
                test.database = line["database"].as_str().map(str::to_owned);
                test.batch = line["batch"].as_u64().map(|batch| batch as usize);
            }
            "test_retry" => test.attempts.push(ended(test.pending.take(), line, at)),
            "test_finished" => {
                test.attempts.push(ended(test.pending.take(), line, at));
                test.status = text(line, "status");
                test.label = label(line);
                test.seconds = number(line, "seconds");
                test.output = text(line, "output");
                test.reason = line["reason"].as_str().map(str::to_owned);
            }
            "test_ignored" => {
                test.status = "ignored".to_owned();
                test.label = "IGNORED".to_owned();
            }
            "database_kept" => test.kept = Some(text(line, "command")),
            "test_slower" => test.slower_than = number(line, "median_seconds"),
            "test_history" => {
                let earlier = line["seconds"].as_array().into_iter().flatten();
                test.history = earlier.filter_map(Value::as_f64).collect();
            }
            "database_checked" => {
                let took = number(line, "seconds").unwrap_or(0.0);
                test.check = Some((at - took, at, line["untouched"] == true));
            }
            _ => {}
        }
        true
    }

    /// Applies a line about the run as a whole.
    fn run_event(&mut self, line: &Value, at: f64) {
        match line["type"].as_str().unwrap_or_default() {
            "run_started" => {
                self.jobs = line["jobs"].as_u64().map(|jobs| jobs as usize);
                self.isolation = line["isolation"].as_str().map(str::to_owned);
            }
            "phase_finished" => {
                let took = number(line, "seconds").unwrap_or(0.0);
                self.phases.push((text(line, "phase"), at - took, at));
            }
            "batch_started" => {
                let slots = count(line, "slots").max(1) as usize;
                self.batches.push(Batch {
                    number: count(line, "batch") as usize,
                    kind: text(line, "kind"),
                    binary: text(line, "binary"),
                    tests: count(line, "tests") as usize,
                    slots,
                    lanes: lanes(line, slots),
                    start: at,
                    end: None,
                });
            }
            "batch_finished" => {
                let number = count(line, "batch") as usize;
                if let Some(batch) = self.batches.iter_mut().find(|b| b.number == number) {
                    batch.end = Some(at);
                }
            }
            "memory_sample" => self.memory.push(Sample {
                at,
                processes: count(line, "processes_bytes"),
                data_dir: count(line, "data_dir_bytes"),
            }),
            "cluster_ready" => {
                self.cluster = Some(Cluster {
                    version: text(line, "version"),
                    in_ram: line["in_ram"] == true,
                    run_dir: text(line, "run_dir"),
                })
            }
            "cluster_memory" => {
                self.peak = Some(Peak {
                    ram: count(line, "ram_peak_bytes"),
                    processes: count(line, "processes_bytes"),
                    data_dir: count(line, "data_dir_bytes"),
                    processes_peak: count(line, "peak_bytes"),
                })
            }
            "summary" => self.summary(line, at),
            _ => self.note(line),
        }
    }

    /// The lines that add a sentence to the header.
    fn note(&mut self, line: &Value) {
        let note = match line["type"].as_str().unwrap_or_default() {
            "warning" => {
                self.warnings.push(text(line, "message"));
                return;
            }
            "interrupted" => {
                self.interrupted = Some(text(line, "signal"));
                return;
            }
            "template_cache" if line["hit"] == true => "migrated cluster from the cache".to_owned(),
            "template_cache" if line["stored"] == true => {
                "migrated cluster built and cached".to_owned()
            }
            "databases_reused" if count(line, "of") > 0 => format!(
                "{} of {} tests got a database an earlier test left untouched",
                count(line, "tests"),
                count(line, "of")
            ),
            "read_only_groups" => format!(
                "{} read-only tests ran in {} group(s); {} of them ran again alone",
                count(line, "tests"),
                count(line, "groups"),
                count(line, "ran_alone")
            ),
            "sqlx_databases_reused" if count(line, "of") > 0 => format!(
                "{} of {} #[sqlx::test] databases were handed on untouched",
                count(line, "databases"),
                count(line, "of")
            ),
            _ => return,
        };
        self.notes.push(note);
    }

    fn summary(&mut self, line: &Value, at: f64) {
        self.complete = true;
        self.wall = at;
        self.counts = Counts {
            passed: count(line, "passed"),
            failed: count(line, "failed"),
            crashed: count(line, "crashed"),
            timed_out: count(line, "timed_out"),
            not_run: count(line, "not_run"),
            ignored: count(line, "ignored"),
            filtered_out: count(line, "filtered_out"),
            flaky: count(line, "flaky"),
        };
        if let Some(signal) = line["interrupted"].as_str() {
            self.interrupted = Some(signal.to_owned());
        }
    }

    /// How many job slots the timeline needs: the run's jobs, or more if a test names a higher slot.
    pub(crate) fn lanes(&self) -> usize {
        let slots = self.tests.iter().flat_map(|test| &test.attempts);
        let highest = slots.filter_map(|attempt| attempt.slot).max();
        let batches = self.batches.iter().flat_map(|batch| &batch.lanes).max();
        let jobs = self.jobs.unwrap_or(1);
        jobs.max(highest.map_or(0, |slot| slot + 1))
            .max(batches.map_or(0, |lane| lane + 1))
    }
}

/// The attempt a `test_retry` or `test_finished` line ends.
fn ended(pending: Option<Pending>, line: &Value, at: f64) -> Attempt {
    Attempt {
        start: pending.as_ref().map(|p| p.at),
        end: at,
        wait: pending.as_ref().and_then(|p| p.wait),
        slot: pending.as_ref().and_then(|p| p.slot),
        status: text(line, "status"),
        seconds: number(line, "seconds"),
    }
}

/// The status word as the terminal shows it.
fn label(line: &Value) -> String {
    match line["status"].as_str().unwrap_or_default() {
        "passed" => "PASS".to_owned(),
        "failed" => "FAIL".to_owned(),
        "crashed" => line["signal"].as_str().unwrap_or("CRASH").to_owned(),
        "timed_out" => "TIMEOUT".to_owned(),
        "not_run" => "NOT RUN".to_owned(),
        other => other.to_uppercase(),
    }
}

/// Counts from the tests, for a file without its closing line.
fn counts_of(tests: &[Test]) -> Counts {
    let mut counts = Counts::default();
    for test in tests {
        let slot = match test.status.as_str() {
            "passed" => &mut counts.passed,
            "failed" => &mut counts.failed,
            "crashed" => &mut counts.crashed,
            "timed_out" => &mut counts.timed_out,
            "not_run" => &mut counts.not_run,
            "ignored" => &mut counts.ignored,
            _ => continue,
        };
        *slot += 1;
        counts.flaky += u64::from(test.flaky());
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn test(name: &str) -> Value {
        json!({ "binary": "app::it", "name": name })
    }

    fn started(name: &str, at: f64, slot: u64, database: &str, batch: Value) -> Value {
        json!({
            "type": "test_started", "test": test(name), "database_wait_seconds": 0.01,
            "slot": slot, "database": database, "batch": batch, "at_seconds": at,
        })
    }

    fn finished(name: &str, status: &str, at: f64, seconds: f64) -> Value {
        json!({
            "type": "test_finished", "test": test(name), "status": status, "seconds": seconds,
            "output": format!("{name} said"), "at_seconds": at,
        })
    }

    #[test]
    fn attempts_pair_each_start_with_its_end_and_batches_hold_their_tests() {
        let lines = [
            json!({ "type": "run_started", "to_run": 3, "filtered_out": 0, "jobs": 2, "isolation": "test", "at_seconds": 1.0 }),
            json!({ "type": "batch_started", "batch": 0, "kind": "group", "binary": "app::it", "tests": 1, "slots": 2, "at_seconds": 1.0 }),
            json!({ "type": "batch_finished", "batch": 0, "seconds": 0.5, "at_seconds": 1.5 }),
            // A group's test is told once the group counts, stamped when it ran.
            started("grouped", 1.1, 1, "group", json!(0)),
            finished("grouped", "passed", 1.4, 0.3),
            started("flaky", 2.0, 0, "fresh", Value::Null),
            json!({ "type": "test_retry", "test": test("flaky"), "attempt": 1, "status": "failed", "exit_code": 101, "seconds": 0.1, "output": "no", "at_seconds": 2.1 }),
            started("flaky", 2.2, 0, "reused", Value::Null),
            finished("flaky", "passed", 2.3, 0.1),
            finished("never", "not_run", 2.4, 0.0),
            json!({ "type": "database_kept", "test": test("never"), "command": "cargo pgtest psql never", "at_seconds": 2.5 }),
            json!({ "type": "future_event", "at_seconds": 2.6 }),
        ];
        let run = Run::from_lines(&lines);
        assert_eq!((run.jobs, run.lanes(), run.wall), (Some(2), 2, 2.6));
        assert_eq!(run.batches[0].end, Some(1.5));
        let names: Vec<&str> = run.tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["grouped", "flaky", "never"]);
        let grouped = &run.tests[0];
        assert_eq!(
            (grouped.batch, grouped.database.as_deref()),
            (Some(0), Some("group"))
        );
        assert_eq!(grouped.attempts[0].start, Some(1.1));
        let flaky = &run.tests[1];
        assert!(flaky.flaky() && !flaky.failed());
        assert_eq!(flaky.attempts.len(), 2);
        assert_eq!(flaky.attempts[0].status, "failed");
        assert_eq!(flaky.attempts[1].start, Some(2.2));
        assert_eq!(flaky.database.as_deref(), Some("reused"));
        let never = &run.tests[2];
        assert!(never.failed() && never.attempts[0].start.is_none());
        assert_eq!(never.kept.as_deref(), Some("cargo pgtest psql never"));
        // Without the closing line, the counts come from the tests.
        assert!(!run.complete);
        assert_eq!(
            (run.counts.passed, run.counts.not_run, run.counts.flaky),
            (2, 1, 1)
        );
    }

    #[test]
    fn the_closing_line_gives_the_counts_and_the_wall_time() {
        let lines = [
            json!({ "type": "phase_finished", "phase": "build", "seconds": 2.0, "at_seconds": 3.0 }),
            json!({ "type": "memory_sample", "processes_bytes": 10, "data_dir_bytes": 20, "at_seconds": 3.0 }),
            json!({ "type": "template_cache", "hit": true, "stored": false, "at_seconds": 3.1 }),
            json!({ "type": "summary", "passed": 4, "failed": 1, "crashed": 0, "timed_out": 0, "not_run": 0,
                    "ignored": 2, "filtered_out": 3, "flaky": 1, "interrupted": "SIGINT", "at_seconds": 9.5 }),
        ];
        let run = Run::from_lines(&lines);
        assert!(run.complete);
        assert_eq!(run.wall, 9.5);
        assert_eq!(run.phases, [("build".to_owned(), 1.0, 3.0)]);
        assert_eq!(run.memory[0].data_dir, 20);
        assert_eq!(run.counts.failures(), 1);
        assert_eq!(run.interrupted.as_deref(), Some("SIGINT"));
        assert_eq!(run.notes, ["migrated cluster from the cache"]);
    }
}
