//! Machine-readable events (`--json`): one JSON object per line, written as they happen, then a closing
//! `summary` object.
//!
//! Each line is an [`Event`] as its derived `Serialize` writes it (`type`, then the event's fields; durations
//! in seconds), then `at_seconds`, when it was sent counted from the start of the run (the closing line's:
//! the run's wall time), and `"format_version": 1` on every line, so that a script reading any single line,
//! or only the lines of one type, can tell which format it has. The version goes up when a field is renamed
//! or removed, or changes meaning; new fields and new event types do not change it.
//!
//! The HTML report is rendered from these lines ([`line_value`], [`summary_value`]), so that a page written
//! at the end of a run and one rendered later from its `--json` file are the same.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use super::{Error, Reporter, Summary};
use crate::events::{Event, Phase};

/// The version of the line format, written on every line.
pub(crate) const FORMAT_VERSION: u32 = 1;

pub(crate) struct JsonLines<W: Write> {
    out: W,
    /// The first failed write: reporting goes on (a closed pipe must not stop the tests), and `finish` says.
    error: Option<std::io::Error>,
    /// The latest event's time: an event given without one ([`Reporter::report`]) is written at it.
    at: Duration,
}

/// One line: the object, then its time and the format version beside its fields.
#[derive(Serialize)]
struct Line<T: Serialize> {
    #[serde(flatten)]
    object: T,
    /// Rounded to the microsecond: finer is noise, and the lines stay short.
    #[serde(serialize_with = "microseconds")]
    at_seconds: Duration,
    format_version: u32,
}

fn microseconds<S: serde::Serializer>(at: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(at.as_micros() as f64 / 1e6)
}

/// `event`'s line, sent `at`, as the text written.
pub(crate) fn line_text(event: &Event, at: Duration) -> serde_json::Result<String> {
    serde_json::to_string(&Line {
        object: event,
        at_seconds: at,
        format_version: FORMAT_VERSION,
    })
}

/// The closing line of a run whose tally is `summary`, as the text written.
pub(crate) fn summary_text(summary: &Summary) -> serde_json::Result<String> {
    serde_json::to_string(&Line {
        object: SummaryObject::new(summary),
        at_seconds: summary.ended_at.unwrap_or_default(),
        format_version: FORMAT_VERSION,
    })
}

/// The closing line's object.
#[derive(Serialize)]
#[serde(tag = "type", rename = "summary")]
struct SummaryObject<'a> {
    passed: usize,
    failed: usize,
    crashed: usize,
    timed_out: usize,
    not_run: usize,
    ignored: usize,
    filtered_out: usize,
    /// Passed only on a retry (counted among `passed` too).
    flaky: usize,
    /// Seconds per phase, by the phase's name.
    phases: BTreeMap<Phase, f64>,
    interrupted: &'a Option<String>,
    peak_memory_bytes: Option<u64>,
    /// The processes plus, on tmpfs, the data directory (see the `cluster_memory` event).
    peak_ram_bytes: Option<u64>,
}

impl<'a> SummaryObject<'a> {
    fn new(summary: &'a Summary) -> Self {
        SummaryObject {
            passed: summary.passed,
            failed: summary.failed,
            crashed: summary.crashed,
            timed_out: summary.timed_out,
            not_run: summary.not_run,
            ignored: summary.ignored,
            filtered_out: summary.filtered_out,
            flaky: summary.flaky.len(),
            phases: summary
                .phases
                .iter()
                .map(|(phase, duration)| (*phase, duration.as_secs_f64()))
                .collect(),
            interrupted: &summary.interrupted,
            peak_memory_bytes: summary.peak_memory_bytes,
            peak_ram_bytes: summary.memory.map(|m| m.ram_peak_bytes),
        }
    }
}

impl<W: Write> JsonLines<W> {
    pub(crate) fn new(out: W) -> Self {
        JsonLines {
            out,
            error: None,
            at: Duration::ZERO,
        }
    }

    fn write(&mut self, line: serde_json::Result<String>) {
        let written = line
            .map_err(std::io::Error::from)
            .and_then(|line| writeln!(self.out, "{line}"));
        if let Err(error) = written {
            self.error.get_or_insert(error);
        }
    }
}

impl<W: Write> Reporter for JsonLines<W> {
    fn report(&mut self, event: &Event) {
        self.write(line_text(event, self.at));
    }

    fn report_at(&mut self, event: &Event, at: Duration) {
        self.at = at;
        self.report(event);
    }

    fn finish(&mut self, summary: &Summary) -> Result<(), Error> {
        self.write(summary_text(summary));
        let flushed = self.out.flush();
        match self.error.take() {
            Some(source) => Err(Error::Json { source }),
            None => flushed.map_err(|source| Error::Json { source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{json, Value};

    use super::*;
    use crate::events::{Outcome, TestId};

    fn lines(events: &[Event], summary: &Summary) -> Vec<Value> {
        let mut buffer = Vec::new();
        let mut reporter = JsonLines::new(&mut buffer);
        for (n, event) in events.iter().enumerate() {
            reporter.report_at(event, Duration::from_millis(1500 * n as u64 + 1));
        }
        reporter.finish(summary).unwrap();
        let text = String::from_utf8(buffer).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn events_become_one_object_per_line_each_with_the_format_version() {
        let events = [
            Event::Warning {
                message: "two\nlines".into(),
            },
            Event::TestFinished {
                test: TestId {
                    binary: "app::it".into(),
                    name: "alone".into(),
                },
                outcome: Outcome::Crashed {
                    signal: "SIGSEGV".into(),
                },
                duration: Some(Duration::from_millis(5)),
                output: "x".into(),
            },
        ];
        let summary = Summary {
            crashed: 1,
            ended_at: Some(Duration::from_millis(3250)),
            ..Summary::default()
        };
        let lines = lines(&events, &summary);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["message"], "two\nlines");
        assert_eq!(lines[1]["status"], "crashed");
        assert_eq!(lines[1]["signal"], "SIGSEGV");
        assert_eq!(lines[1]["test"]["binary"], "app::it");
        for line in &lines {
            assert_eq!(line["format_version"], FORMAT_VERSION, "{line}");
        }
        let times: Vec<&Value> = lines.iter().map(|line| &line["at_seconds"]).collect();
        assert_eq!(times, [&json!(0.001), &json!(1.501), &json!(3.25)]);
    }

    #[test]
    fn the_summary_line_keeps_its_field_names() {
        let summary = Summary {
            passed: 3,
            failed: 1,
            crashed: 1,
            not_run: 2,
            ignored: 4,
            filtered_out: 5,
            phases: vec![
                (Phase::Build, Duration::from_millis(2500)),
                (Phase::ClusterBoot, Duration::from_millis(500)),
            ],
            interrupted: Some("SIGINT".into()),
            ..Summary::default()
        };
        assert_eq!(
            lines(&[], &summary),
            [json!({
                "type": "summary", "passed": 3, "failed": 1, "crashed": 1, "timed_out": 0,
                "not_run": 2, "ignored": 4, "filtered_out": 5, "flaky": 0,
                "phases": { "build": 2.5, "cluster_boot": 0.5 },
                "interrupted": "SIGINT", "peak_memory_bytes": null, "peak_ram_bytes": null, "at_seconds": 0.0,
                "format_version": 1,
            })]
        );
    }

    /// A writer that refuses everything, like a pipe whose reader has gone.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_is_reported_when_the_run_ends() {
        let mut reporter = JsonLines::new(Closed);
        reporter.report(&Event::FilteredOut { count: 1 });
        let error = reporter.finish(&Summary::default()).unwrap_err();
        assert!(error.to_string().contains("JSON"), "{error}");
    }
}
