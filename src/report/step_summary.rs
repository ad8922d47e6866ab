//! The GitHub Actions job summary: when `GITHUB_STEP_SUMMARY` names a file, a Markdown account of the run is
//! appended to it when the run ends (GitHub shows the file on the run's page). The counts, each failure with
//! the first lines of its output, the FLAKY and SLOWER tests, the slowest tests, the phases and the cluster's
//! memory: what the terminal's summary says, for someone who opens the run in a browser.
//!
//! GitHub takes at most 1 MiB per step, so the lists are cut short (the job's log has everything).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::human::memory_text;
use super::styles::Styles;
use super::{Error, Reporter, Summary};
use crate::events::{Event, Outcome, TestId};

/// Failures shown with their output; the rest are named only.
const FAILURES_WITH_OUTPUT: usize = 20;
/// Lines of a failure's output shown.
const OUTPUT_LINES: usize = 10;
/// Characters of one output line shown.
const LINE_CHARS: usize = 300;
/// Rows of the FLAKY, SLOWER and failure-name lists.
const ROWS: usize = 50;
const SLOWEST_SHOWN: usize = 5;

pub(crate) struct StepSummary {
    path: PathBuf,
    /// For durations (and their redaction); Markdown has no colour.
    styles: Styles,
    /// The first lines of the output of each test that did not pass, or why it did not run.
    outputs: BTreeMap<TestId, Vec<String>>,
    /// How many attempts of each retried test failed.
    failed_attempts: BTreeMap<TestId, usize>,
}

impl StepSummary {
    pub(crate) fn new(path: PathBuf, styles: Styles) -> Self {
        StepSummary {
            path,
            styles,
            outputs: BTreeMap::new(),
            failed_attempts: BTreeMap::new(),
        }
    }

    fn seconds(&self, duration: Duration) -> String {
        self.styles.seconds(duration).trim().to_owned()
    }

    /// The whole Markdown section for this run.
    pub(crate) fn markdown(&self, summary: &Summary) -> String {
        let mut text = String::new();
        if !summary.started && summary.interrupted.is_none() {
            text.push_str("### cargo pgtest: stopped before running any test\n\n");
            text.push_str("The build or the setup failed; the job's log says why.\n\n");
            return text;
        }
        let total: Duration = summary.phases.iter().map(|(_, d)| *d).sum();
        let _ = write!(
            text,
            "### cargo pgtest: {}\n\n{} in {}\n\n",
            headline(summary),
            summary.counts_line(),
            self.seconds(total)
        );
        self.failures(&mut text, summary);
        self.flaky(&mut text, summary);
        self.slower(&mut text, summary);
        self.slowest(&mut text, summary);
        self.phases(&mut text, summary);
        cluster(&mut text, summary);
        text
    }

    fn failures(&self, text: &mut String, summary: &Summary) {
        let failed: Vec<_> = summary
            .finished
            .iter()
            .filter(|(_, outcome, _)| !outcome.is_success())
            .collect();
        if failed.is_empty() {
            return;
        }
        text.push_str("#### Failures\n\n");
        for (test, outcome, duration) in failed.iter().take(FAILURES_WITH_OUTPUT) {
            let time = duration.map_or_else(String::new, |d| format!(" after {}", self.seconds(d)));
            let _ = write!(
                text,
                "**{}** {}{time}\n\n",
                outcome.label(),
                code(&test.to_string())
            );
            let lines = self.outputs.get(test).map_or(&[][..], Vec::as_slice);
            code_block(text, lines);
        }
        let rest: Vec<String> = failed
            .iter()
            .skip(FAILURES_WITH_OUTPUT)
            .take(ROWS)
            .map(|(test, outcome, _)| {
                format!("- **{}** {}\n", outcome.label(), code(&test.to_string()))
            })
            .collect();
        if !rest.is_empty() {
            text.push_str("And, without their output:\n\n");
            text.extend(rest);
            more(text, failed.len(), FAILURES_WITH_OUTPUT + ROWS);
            text.push('\n');
        }
    }

    fn flaky(&self, text: &mut String, summary: &Summary) {
        if summary.flaky.is_empty() {
            return;
        }
        text.push_str("#### Flaky\n\nPassed on a retry; they do not fail the run.\n\n");
        text.push_str("| test | failed attempts |\n|---|---:|\n");
        for test in summary.flaky.iter().take(ROWS) {
            let attempts = self.failed_attempts.get(test).copied().unwrap_or(0);
            let _ = writeln!(text, "| {} | {attempts} |", cell(test));
        }
        more(text, summary.flaky.len(), ROWS);
        text.push('\n');
    }

    fn slower(&self, text: &mut String, summary: &Summary) {
        if summary.slower.is_empty() {
            return;
        }
        text.push_str("#### Slower\n\n");
        text.push_str(
            "Far slower than their last passing runs (at least 3× their median and 100 ms more).\n\n",
        );
        text.push_str("| test | time | median before |\n|---|---:|---:|\n");
        for (test, now, median) in summary.slower.iter().take(ROWS) {
            let _ = writeln!(
                text,
                "| {} | {} | {} |",
                cell(test),
                self.seconds(*now),
                self.seconds(*median)
            );
        }
        more(text, summary.slower.len(), ROWS);
        text.push('\n');
    }

    fn slowest(&self, text: &mut String, summary: &Summary) {
        let slowest = summary.slowest(SLOWEST_SHOWN);
        if summary.ran() < 2 || slowest.is_empty() {
            return;
        }
        text.push_str("#### Slowest\n\n| test | time |\n|---|---:|\n");
        for (test, duration) in slowest {
            let _ = writeln!(text, "| {} | {} |", cell(test), self.seconds(duration));
        }
        text.push('\n');
    }

    /// One row, in the order the phases run.
    fn phases(&self, text: &mut String, summary: &Summary) {
        if summary.phases.is_empty() {
            return;
        }
        let phases = summary.phases_in_run_order();
        let names: Vec<&str> = phases.iter().map(|(phase, _)| phase.label()).collect();
        let times: Vec<String> = phases.iter().map(|(_, d)| self.seconds(*d)).collect();
        let _ = write!(
            text,
            "#### Phases\n\n| {} |\n|{}\n| {} |\n\n",
            names.join(" | "),
            "---:|".repeat(names.len()),
            times.join(" | ")
        );
    }
}

/// What the heading says the run came to.
fn headline(summary: &Summary) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if let Some(signal) = &summary.interrupted {
        return format!("stopped by {signal}");
    }
    let failures = summary.failures();
    if failures > 0 {
        return format!(
            "{failures} of {} test{} did not pass",
            summary.ran(),
            plural(summary.ran())
        );
    }
    match (summary.ran(), summary.flaky.len()) {
        (0, _) => "no tests ran".to_owned(),
        (ran, 0) => format!("{ran} test{} passed", plural(ran)),
        (ran, flaky) => format!("{ran} test{} passed, {flaky} of them flaky", plural(ran)),
    }
}

/// The cluster's version, where its data was and its peak memory.
fn cluster(text: &mut String, summary: &Summary) {
    let Some(cluster) = &summary.cluster else {
        return;
    };
    let place = if cluster.in_ram {
        "in RAM (tmpfs)"
    } else {
        "on disk"
    };
    let memory = summary.memory.as_ref().map_or_else(String::new, |peak| {
        memory_text(peak, summary.peak_memory_bytes, cluster.in_ram)
    });
    let _ = write!(
        text,
        "**Cluster**: {}, data {place}{memory}\n\n",
        cluster.version
    );
}

/// "…and N more" under a list cut at `shown` rows.
fn more(text: &mut String, total: usize, shown: usize) {
    if total > shown {
        let _ = writeln!(text, "\n…and {} more (see the job's log)", total - shown);
    }
}

/// `text` as inline code, in a backtick run longer than any inside it.
fn code(text: &str) -> String {
    let fence = "`".repeat(longest_backtick_run(text) + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// A test as a table cell: inline code, with the `|` that would end the cell escaped.
fn cell(test: &TestId) -> String {
    code(&test.to_string()).replace('|', "\\|")
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// `lines` in a fenced block longer than any backtick run inside (so output cannot end it).
fn code_block(text: &mut String, lines: &[String]) {
    if lines.is_empty() {
        text.push_str("(no output)\n\n");
        return;
    }
    let longest = lines
        .iter()
        .map(|l| longest_backtick_run(l))
        .max()
        .unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let _ = write!(text, "{fence}text\n{}\n{fence}\n\n", lines.join("\n"));
}

/// The first lines of `output` worth showing: no terminal escapes or control characters, each line cut to a
/// readable length, a last line saying how many more there are.
fn first_lines(output: &str) -> Vec<String> {
    let clean = strip_escapes(output);
    let lines: Vec<&str> = clean.trim().lines().collect();
    let mut shown: Vec<String> = lines
        .iter()
        .take(OUTPUT_LINES)
        .map(|line| match line.char_indices().nth(LINE_CHARS) {
            Some((at, _)) => format!("{}…", &line[..at]),
            None => (*line).to_owned(),
        })
        .collect();
    if lines.len() > OUTPUT_LINES {
        shown.push(format!(
            "… {} more lines in the job's log",
            lines.len() - OUTPUT_LINES
        ));
    }
    shown
}

/// `text` without ANSI escape sequences (CSI `ESC [ … final`, and other `ESC x` pairs) and without control
/// characters other than newlines and tabs.
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.next() == Some('[') {
                    // Parameters and intermediates, up to the final byte.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

impl Reporter for StepSummary {
    fn report(&mut self, event: &Event) {
        match event {
            Event::TestFinished {
                test,
                outcome,
                output,
                ..
            } => {
                let lines = match outcome {
                    Outcome::Passed => return,
                    Outcome::NotRun { reason } => vec![reason.clone()],
                    _ => first_lines(output),
                };
                self.outputs.insert(test.clone(), lines);
            }
            Event::TestRetry { test, .. } => {
                *self.failed_attempts.entry(test.clone()).or_default() += 1
            }
            _ => {}
        }
    }

    fn finish(&mut self, summary: &Summary) -> Result<(), Error> {
        let markdown = self.markdown(summary);
        let error = |source| Error::StepSummary {
            path: self.path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(error)?;
        file.write_all(markdown.as_bytes()).map_err(error)
    }
}

#[cfg(test)]
mod tests;
