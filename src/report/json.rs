//! Machine-readable events: one JSON object per line, written as they happen, and a closing summary object.

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Reporter, Summary};
use crate::runner::events::{Event, Outcome, TestId};

pub struct JsonLines<W: Write> {
    out: W,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines { out }
    }

    fn write(&mut self, value: Value) {
        let _ = writeln!(self.out, "{value}");
    }
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

fn test_fields(test: &TestId) -> Value {
    json!({ "binary": test.binary, "name": test.name })
}

/// The status word of an outcome in the JSON and JUnit reports.
pub fn status(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Failed { .. } => "failed",
        Outcome::Crashed { .. } => "crashed",
        Outcome::TimedOut => "timed_out",
        Outcome::NotRun { .. } => "not_run",
    }
}

pub fn to_json(event: &Event) -> Value {
    match event {
        Event::Warning { message } => json!({ "type": "warning", "message": message }),
        Event::Info { message } => json!({ "type": "info", "message": message }),
        Event::ClusterReady(facts) => json!({
            "type": "cluster_ready", "version": facts.version, "in_ram": facts.in_ram,
            "run_dir": facts.run_dir, "log": facts.log, "server_user": facts.server_user,
        }),
        Event::PhaseFinished { phase, duration } => {
            json!({ "type": "phase_finished", "phase": phase.key(), "seconds": seconds(*duration) })
        }
        Event::RunStarted {
            to_run,
            filtered_out,
            jobs,
            shared,
        } => json!({
            "type": "run_started", "to_run": to_run, "filtered_out": filtered_out, "jobs": jobs,
            "isolation": if *shared { "shared" } else { "test" },
        }),
        Event::TestStarted {
            test,
            database_wait,
        } => json!({
            "type": "test_started", "test": test_fields(test),
            "database_wait_seconds": database_wait.map(seconds),
        }),
        Event::DatabaseCloned { duration } => {
            json!({ "type": "database_cloned", "seconds": seconds(*duration) })
        }
        Event::TemplateCache { hit, stored } => {
            json!({ "type": "template_cache", "hit": hit, "stored": stored })
        }
        Event::TestSlow { test, elapsed } => {
            json!({ "type": "test_slow", "test": test_fields(test), "seconds": seconds(*elapsed) })
        }
        Event::TestFinished {
            test,
            outcome,
            duration,
            output,
        } => {
            let mut value = json!({
                "type": "test_finished", "test": test_fields(test), "status": status(outcome),
                "seconds": duration.map(seconds), "output": output,
            });
            match outcome {
                Outcome::Failed { exit_code } => value["exit_code"] = json!(exit_code),
                Outcome::Crashed { signal } => value["signal"] = json!(signal),
                Outcome::NotRun { reason } => value["reason"] = json!(reason),
                Outcome::Passed | Outcome::TimedOut => {}
            }
            value
        }
        Event::TestIgnored { test } => json!({ "type": "test_ignored", "test": test_fields(test) }),
        Event::FilteredOut { count } => json!({ "type": "filtered_out", "count": count }),
        Event::Interrupted { signal } => json!({ "type": "interrupted", "signal": signal }),
        Event::ClusterMemory { peak_bytes } => {
            json!({ "type": "cluster_memory", "peak_bytes": peak_bytes })
        }
    }
}

impl<W: Write> Reporter for JsonLines<W> {
    fn report(&mut self, event: &Event) {
        self.write(to_json(event));
    }

    fn finish(&mut self, summary: &Summary) -> std::io::Result<()> {
        let phases: serde_json::Map<String, Value> = summary
            .phases
            .iter()
            .map(|(phase, d)| (phase.key().to_owned(), json!(seconds(*d))))
            .collect();
        self.write(json!({
            "type": "summary",
            "passed": summary.passed, "failed": summary.failed, "crashed": summary.crashed,
            "timed_out": summary.timed_out, "not_run": summary.not_run, "ignored": summary.ignored,
            "filtered_out": summary.filtered_out, "phases": phases,
            "interrupted": summary.interrupted, "peak_memory_bytes": summary.peak_memory_bytes,
        }));
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_one_object_per_line() {
        let mut buffer = Vec::new();
        let mut reporter = JsonLines::new(&mut buffer);
        let test = TestId {
            binary: "app::it".into(),
            name: "alone".into(),
        };
        reporter.report(&Event::TestFinished {
            test,
            outcome: Outcome::Crashed {
                signal: "SIGSEGV".into(),
            },
            duration: Some(Duration::from_millis(5)),
            output: "x".into(),
        });
        reporter
            .finish(&Summary {
                crashed: 1,
                ..Summary::default()
            })
            .unwrap();
        let text = String::from_utf8(buffer).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["status"], "crashed");
        assert_eq!(lines[0]["signal"], "SIGSEGV");
        assert_eq!(lines[0]["test"]["binary"], "app::it");
        assert_eq!(lines[1]["type"], "summary");
        assert_eq!(lines[1]["crashed"], 1);
    }
}
