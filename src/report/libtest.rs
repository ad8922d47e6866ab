//! libtest's own output, made from the run's events: what a test binary prints, so that whatever reads
//! `cargo test`'s output (an editor's test explorer, a CI parser, a person) reads cargo-pgtest's too.
//! Three formats, as libtest has them: `pretty` (a `test NAME ... ok` line per test), `terse` (a character
//! per test) and `json` (`-Z unstable-options --format json`: one object per line, with `exec_time`).
//!
//! A test cargo-pgtest did not run (NOT RUN: the run was stopped, a snapshot was not built) is FAILED
//! here, its reason as its output: libtest has no such outcome, and the run did fail. Retries are
//! invisible: a test's one result is its last attempt's.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Error, Reporter, Summary};
use crate::events::{Event, Outcome, TestId};
use crate::runner::selection::TestArgs;

/// Which of libtest's formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Format {
    #[default]
    Pretty,
    Terse,
    Json,
}

impl Format {
    /// libtest's name for a format (`--format NAME`); None for a name libtest does not know.
    pub(crate) fn parse(name: &str) -> Option<Format> {
        match name {
            "pretty" => Some(Format::Pretty),
            "terse" => Some(Format::Terse),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// A test's end, as libtest words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Failed,
    Ignored,
}

/// Writes libtest's output for the run's tests. The header (`running N tests`) waits for the first test
/// to start, so that the ignored tests, announced before, are counted in it as libtest counts them.
pub(crate) struct Libtest<W: Write> {
    out: W,
    format: Format,
    /// `--show-output`: the captured output of passing tests, after them.
    show_output: bool,
    /// `--nocapture`: each test's output where it came, before its line, and not again after.
    nocapture: bool,
    /// Tests to run, as announced; the ignored ones come on top.
    to_run: usize,
    ignored: Vec<TestId>,
    header_written: bool,
    /// Tests whose started line is written.
    running: std::collections::BTreeSet<TestId>,
    started: Instant,
    /// Tests whose line is written, with their verdict and output (for the failures and successes
    /// sections).
    ended: Vec<(TestId, Verdict, String)>,
    /// Terse output's characters on the current line.
    terse_column: usize,
}

impl<W: Write> Libtest<W> {
    pub(crate) fn new(out: W, format: Format, args: &TestArgs) -> Self {
        Libtest {
            out,
            format,
            show_output: args.show_output,
            nocapture: args.nocapture,
            to_run: 0,
            ignored: Vec::new(),
            header_written: false,
            running: std::collections::BTreeSet::new(),
            started: Instant::now(),
            ended: Vec::new(),
            terse_column: 0,
        }
    }

    fn header(&mut self) {
        if self.header_written {
            return;
        }
        self.header_written = true;
        let count = self.to_run + self.ignored.len();
        match self.format {
            Format::Json => {
                let line = json!({"type": "suite", "event": "started", "test_count": count});
                let _ = writeln!(self.out, "{line}");
            }
            Format::Pretty | Format::Terse => {
                let plural = if count == 1 { "" } else { "s" };
                let _ = writeln!(self.out, "\nrunning {count} test{plural}");
            }
        }
        for test in std::mem::take(&mut self.ignored) {
            self.started_line(&test);
            self.ended_line(&test, Verdict::Ignored, None, "");
        }
    }

    fn started_line(&mut self, test: &TestId) {
        if self.running.insert(test.clone()) && self.format == Format::Json {
            let line = json!({"type": "test", "event": "started", "name": test.name});
            let _ = writeln!(self.out, "{line}");
        }
    }

    fn ended_line(
        &mut self,
        test: &TestId,
        verdict: Verdict,
        time: Option<Duration>,
        output: &str,
    ) {
        let word = match verdict {
            Verdict::Ok => "ok",
            Verdict::Failed => "failed",
            Verdict::Ignored => "ignored",
        };
        match self.format {
            Format::Json => {
                let mut line = json!({"type": "test", "name": test.name, "event": word});
                if let Some(time) = time.filter(|_| verdict != Verdict::Ignored) {
                    line["exec_time"] = json!(time.as_secs_f64());
                }
                if verdict == Verdict::Failed || (self.show_output && verdict == Verdict::Ok) {
                    line["stdout"] = json!(output);
                }
                let _ = writeln!(self.out, "{line}");
            }
            Format::Pretty => {
                if self.nocapture && !output.trim().is_empty() {
                    let _ = writeln!(self.out, "{}", output.trim_end());
                }
                let word = if verdict == Verdict::Failed {
                    "FAILED"
                } else {
                    word
                };
                let _ = writeln!(self.out, "test {} ... {word}", test.name);
            }
            Format::Terse => {
                let mark = match verdict {
                    Verdict::Ok => '.',
                    Verdict::Failed => 'F',
                    Verdict::Ignored => 'i',
                };
                let _ = write!(self.out, "{mark}");
                self.terse_column += 1;
                // libtest breaks terse lines at 88 characters, with the count so far.
                if self.terse_column.is_multiple_of(88) {
                    let _ = writeln!(self.out, " {}/{}", self.terse_column, self.to_run);
                }
            }
        }
        let _ = self.out.flush();
        let shown = if self.nocapture && self.format == Format::Pretty {
            ""
        } else {
            output
        };
        self.ended.push((test.clone(), verdict, shown.to_owned()));
    }

    /// The failures (and, with `--show-output`, successes) sections and the result line.
    fn result(&mut self, summary: &Summary) {
        let failed: Vec<(TestId, String)> = self.outputs(Verdict::Failed);
        let passed = self.ended.iter().filter(|e| e.1 == Verdict::Ok).count();
        let ignored = self
            .ended
            .iter()
            .filter(|e| e.1 == Verdict::Ignored)
            .count();
        let filtered_out = summary.filtered_out;
        let seconds = self.started.elapsed().as_secs_f64();
        let ok = failed.is_empty() && summary.interrupted.is_none();
        if self.format == Format::Json {
            let line = json!({
                "type": "suite",
                "event": if ok { "ok" } else { "failed" },
                "passed": passed,
                "failed": failed.len(),
                "ignored": ignored,
                "measured": 0,
                "filtered_out": filtered_out,
                "exec_time": seconds,
            });
            let _ = writeln!(self.out, "{line}");
            return;
        }
        if self.show_output {
            let successes = self.outputs(Verdict::Ok);
            self.section("successes", &successes);
        }
        self.section("failures", &failed);
        let word = if ok { "ok" } else { "FAILED" };
        let _ = write!(
            self.out,
            "\ntest result: {word}. {passed} passed; {} failed; {ignored} ignored; 0 measured; {filtered_out} \
             filtered out; finished in {seconds:.2}s\n\n",
            failed.len()
        );
    }

    fn outputs(&self, verdict: Verdict) -> Vec<(TestId, String)> {
        let of = |(test, v, output): &(TestId, Verdict, String)| {
            (*v == verdict).then(|| (test.clone(), output.clone()))
        };
        self.ended.iter().filter_map(of).collect()
    }

    /// libtest's `failures:` / `successes:` section, as libtest writes it: each test's output, then the
    /// names, sorted.
    fn section(&mut self, title: &str, tests: &[(TestId, String)]) {
        if tests.is_empty() {
            return;
        }
        let _ = write!(self.out, "\n{title}:\n");
        let with_output: Vec<&(TestId, String)> = tests
            .iter()
            .filter(|(_, output)| !output.is_empty())
            .collect();
        if !with_output.is_empty() {
            let _ = writeln!(self.out);
            for (test, output) in with_output {
                let _ = write!(self.out, "---- {} stdout ----\n{output}\n", test.name);
            }
        }
        let _ = write!(self.out, "\n{title}:\n");
        let mut names: Vec<&str> = tests.iter().map(|(test, _)| test.name.as_str()).collect();
        names.sort_unstable();
        for name in names {
            let _ = writeln!(self.out, "    {name}");
        }
    }
}

/// A result's verdict and the output libtest would show with it.
fn verdict_of(outcome: &Outcome, output: &str) -> (Verdict, String) {
    match outcome {
        Outcome::Passed => (Verdict::Ok, output.to_owned()),
        Outcome::NotRun { reason } => (Verdict::Failed, format!("not run: {reason}")),
        Outcome::TimedOut => (Verdict::Failed, format!("{output}\n(timed out)")),
        Outcome::Failed { .. } | Outcome::Crashed { .. } => (Verdict::Failed, output.to_owned()),
    }
}

impl<W: Write> Reporter for Libtest<W> {
    fn report(&mut self, event: &Event) {
        match event {
            Event::RunStarted { to_run, .. } => self.to_run += to_run,
            Event::TestIgnored { test } if self.header_written => {
                self.started_line(test);
                self.ended_line(test, Verdict::Ignored, None, "");
            }
            Event::TestIgnored { test } => self.ignored.push(test.clone()),
            Event::TestStarted { test, .. } => {
                self.header();
                self.started_line(test);
            }
            Event::TestFinished {
                test,
                outcome,
                duration,
                output,
            } => {
                self.header();
                let (verdict, output) = verdict_of(outcome, output);
                // A test never started (NOT RUN) gets its started line too: every result has one.
                self.started_line(test);
                self.ended_line(test, verdict, *duration, &output);
            }
            _ => {}
        }
    }

    fn finish(&mut self, summary: &Summary) -> Result<(), Error> {
        if !summary.started {
            return Ok(());
        }
        self.header();
        self.result(summary);
        self.out.flush().map_err(|source| Error::Libtest { source })
    }
}

#[cfg(test)]
mod tests;
