//! The status line under the streaming PASS/FAIL lines on a terminal: tests done of the total, running,
//! failed so far, time since the tests started. It only counts events; the human reporter draws it (and
//! decides when: a terminal, not `--quiet`, not `--json -`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::events::{Event, Outcome, Phase, TestId};

/// Erases the terminal line the cursor is on (the status line), leaving the cursor at its start.
pub(crate) const CLEAR_LINE: &str = "\r\x1b[2K";

/// What erases a status line `width` characters wide: the terminal's erase sequence when colour is on;
/// without colour (`--color never`, `NO_COLOR`) no escape sequence at all, but spaces over it.
pub(crate) fn eraser(colored: bool, width: usize) -> String {
    if colored {
        CLEAR_LINE.to_owned()
    } else {
        format!("\r{}\r", " ".repeat(width))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Since `RunStarted`; None until the tests start and after they end.
    since: Option<Instant>,
    total: usize,
    done: usize,
    failed: usize,
    running: BTreeSet<TestId>,
}

impl Progress {
    /// Counts what `event` tells about the tests.
    pub(crate) fn record(&mut self, event: &Event) {
        match event {
            Event::RunStarted { to_run, .. } => {
                self.since = Some(Instant::now());
                self.total = *to_run;
            }
            Event::TestStarted { test, .. } => {
                self.running.insert(test.clone());
            }
            Event::TestFinished { test, outcome, .. } => {
                self.running.remove(test);
                self.done += 1;
                if !matches!(outcome, Outcome::Passed | Outcome::NotRun { .. }) {
                    self.failed += 1;
                }
            }
            // The tests are over once their phase is timed, or stopping once the run is interrupted.
            Event::PhaseFinished {
                phase: Phase::Tests,
                ..
            }
            | Event::Interrupted { .. } => self.since = None,
            _ => {}
        }
    }

    /// The line to show now, without its style; None when no tests are under way.
    pub(crate) fn line(&self, redact: bool) -> Option<String> {
        let since = self.since?;
        // Doc tests are counted only as they come: the total grows to take them in.
        let total = self.total.max(self.done + self.running.len());
        let elapsed = if redact {
            Duration::ZERO
        } else {
            since.elapsed()
        };
        Some(format!(
            "{}/{total} done, {} running, {} failed, {}",
            self.done,
            self.running.len(),
            self.failed,
            clock(elapsed)
        ))
    }
}

/// `7s`, `2m05s`, `1h02m05s`.
fn clock(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds:02}s"),
        _ => format!("{hours}h{minutes:02}m{seconds:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(name: &str) -> TestId {
        TestId {
            binary: "app".into(),
            name: name.into(),
        }
    }

    fn finished(name: &str, outcome: Outcome) -> Event {
        Event::TestFinished {
            test: test(name),
            outcome,
            duration: None,
            output: String::new(),
        }
    }

    #[test]
    fn counts_done_running_and_failed_while_the_tests_run() {
        let mut progress = Progress::default();
        assert_eq!(progress.line(true), None, "nothing before the tests");
        for event in [
            Event::RunStarted {
                to_run: 3,
                filtered_out: 0,
                jobs: 2,
                shared: false,
            },
            Event::TestStarted {
                test: test("a"),
                start: crate::events::Start::alone(0, crate::events::DatabaseKind::Fresh, None),
            },
            Event::TestStarted {
                test: test("b"),
                start: crate::events::Start::alone(1, crate::events::DatabaseKind::Fresh, None),
            },
            finished(
                "a",
                Outcome::Failed {
                    exit_code: Some(101),
                },
            ),
        ] {
            progress.record(&event);
        }
        assert_eq!(
            progress.line(true).as_deref(),
            Some("1/3 done, 1 running, 1 failed, 0s")
        );
        progress.record(&finished("c", Outcome::NotRun { reason: "x".into() }));
        progress.record(&Event::PhaseFinished {
            phase: Phase::Tests,
            duration: Duration::ZERO,
        });
        assert_eq!(progress.line(true), None, "nothing after the tests");
    }

    #[test]
    fn without_colour_the_line_is_erased_without_escape_sequences() {
        assert_eq!(eraser(false, 3), "\r   \r");
        assert_eq!(eraser(true, 3), CLEAR_LINE);
    }

    #[test]
    fn the_clock_reads_like_a_person_would_write_it() {
        assert_eq!(clock(Duration::from_millis(7900)), "7s");
        assert_eq!(clock(Duration::from_secs(125)), "2m05s");
        assert_eq!(clock(Duration::from_secs(3725)), "1h02m05s");
    }
}
