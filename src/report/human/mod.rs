//! The report for people: a status line per test as it ends (with a failing test's output under it), then a
//! summary with the counts, the failures again, the slowest tests and the time of each phase. Writes to stderr.

use std::io::Write;
use std::time::Duration;

use owo_colors::OwoColorize;

use super::progress::{eraser, Progress};
use super::styles::Styles;
use super::{Error, Reporter, Summary};
use crate::events::{ClusterFacts, Event, MemoryPeak, Outcome, TestId};

const SLOWEST_SHOWN: usize = 5;

pub(crate) struct Human<W: Write> {
    out: W,
    styles: Styles,
    verbose: bool,
    /// Show every test's output, not only failures' (`-- --nocapture`).
    show_output: bool,
    last_not_run_reason: Option<String>,
    /// The failed attempts' outputs of tests being retried, shown under FLAKY if the test then passes (a
    /// test that never passes carries them all in its own output).
    retried: std::collections::BTreeMap<TestId, String>,
    /// The status line under the test lines (a terminal only); None when not shown.
    progress: Option<Progress>,
    /// The width of the status line on screen now, if one is (it is erased before anything else is written).
    progress_shown: Option<usize>,
    /// `--quiet`: no line for a passing test.
    quiet: bool,
    /// Where the HTML report goes, for the summary's line pointing at it.
    html: Option<super::html::Destination>,
}

/// The `Info` line `-v` shows for `event`, if it is one.
fn info_of(event: &Event) -> Option<String> {
    Some(match event {
        Event::Info { message } => message.clone(),
        Event::DatabasesReused { reused, of } if *of > 0 => {
            format!("{reused} of {of} tests got a database an earlier test left untouched")
        }
        Event::ReadOnlyGroups {
            tests,
            groups,
            ran_alone,
        } => read_only_groups(*tests, *groups, *ran_alone),
        Event::TrialGroups {
            tests,
            groups,
            counted,
        } => trial_groups(*tests, *groups, *counted),
        Event::SqlxDatabasesReused { reused, of } => format!(
            "{reused} of {of} #[sqlx::test] databases were ones an earlier test left untouched"
        ),
        Event::OwnCpu {
            process,
            main_thread,
            threads,
        } => {
            let mut line = format!(
                "cargo-pgtest's own CPU in the tests phase: {:.3}s in all, {:.3}s of it on its main thread",
                process.as_secs_f64(),
                main_thread.as_secs_f64()
            );
            if let Some(busiest) = threads.first() {
                let cpu = busiest.cpu.as_secs_f64();
                line += &format!(", {cpu:.3}s on its busiest, {}", busiest.name);
            }
            line
        }
        Event::TestsCpu {
            server,
            test_processes,
        } => tests_cpu(*server, *test_processes),
        Event::ThreadCpu { thread, duration } => format!(
            "cargo-pgtest's {thread} thread used {:.3}s of CPU",
            duration.as_secs_f64()
        ),
        _ => return None,
    })
}

fn tests_cpu(server: Option<Duration>, test_processes: Duration) -> String {
    let processes = format!(
        "the test processes used {:.3}s of CPU in the tests phase",
        test_processes.as_secs_f64()
    );
    match server {
        Some(server) => format!("{processes}, the server {:.3}s", server.as_secs_f64()),
        None => processes,
    }
}

fn trial_groups(tests: usize, groups: usize, counted: usize) -> String {
    let tried = format!("{tests} tests new to the history were tried in {groups} read-only groups");
    match tests - counted.min(tests) {
        0 => format!("{tried}; every one of them counted there"),
        alone => format!("{tried}; {counted} counted there, {alone} ran alone (their group's database was written to, or they did not pass together)"),
    }
}

impl<W: Write> Human<W> {
    pub(crate) fn new(out: W, styles: Styles, verbose: bool, show_output: bool) -> Self {
        Human {
            out,
            styles,
            verbose,
            show_output,
            last_not_run_reason: None,
            retried: std::collections::BTreeMap::new(),
            progress: None,
            progress_shown: None,
            quiet: false,
            html: None,
        }
    }

    /// Ends the summary with a line naming the HTML report's file, once it has one.
    pub(crate) fn html(mut self, destination: super::html::Destination) -> Self {
        self.html = Some(destination);
        self
    }

    /// Shows the progress line under the test lines (for a terminal; see [`super::progress`]).
    pub(crate) fn with_progress(mut self, on: bool) -> Self {
        self.progress = on.then(Progress::default);
        self
    }

    /// `--quiet`: passing tests get no line of their own.
    pub(crate) fn quiet(mut self, on: bool) -> Self {
        self.quiet = on;
        self
    }

    /// Erases the progress line, so that what comes next is written where it was.
    fn clear_progress(&mut self) {
        if let Some(width) = self.progress_shown.take() {
            let _ = write!(self.out, "{}", eraser(self.styles.colored, width));
        }
    }

    /// Draws the progress line (without a newline: the next write erases it first).
    fn draw_progress(&mut self) {
        let Some(line) = self
            .progress
            .as_ref()
            .and_then(|p| p.line(self.styles.redact))
        else {
            return;
        };
        let word = format!("{:>12}", "Progress");
        let _ = write!(self.out, "{} {line}", word.style(self.styles.heading));
        let _ = self.out.flush();
        self.progress_shown = Some(word.chars().count() + 1 + line.chars().count());
    }

    /// A cargo-style status line: a right-aligned coloured word, then the message.
    fn status(&mut self, word: &str, message: &str) {
        let word = format!("{word:>12}");
        let _ = writeln!(self.out, "{} {message}", word.style(self.styles.heading));
    }

    fn test_line(&mut self, label: &str, outcome: Option<&Outcome>, time: &str, test: &TestId) {
        let style = match outcome {
            Some(Outcome::Passed) => self.styles.pass,
            None => self.styles.skip,
            Some(_) => self.styles.fail,
        };
        let label = format!("{label:>7}");
        let _ = writeln!(
            self.out,
            "{} [{time}] {} {}",
            label.style(style),
            test.binary.style(self.styles.dim),
            test.name
        );
    }

    fn output_block(&mut self, test: &TestId, output: &str) {
        if output.trim().is_empty() {
            return;
        }
        let heading = format!("--- output of {test} ---");
        let _ = writeln!(self.out, "{}", heading.style(self.styles.dim));
        let _ = writeln!(self.out, "{}", output.trim_end());
    }
}

impl<W: Write> Human<W> {
    fn cluster_ready(&mut self, facts: &ClusterFacts) {
        let place = if facts.in_ram {
            "in RAM (tmpfs)"
        } else {
            "on disk"
        };
        self.status("Cluster", &format!("{} ready, data {place}", facts.version));
        if self.verbose {
            let run_dir = self.styles.path(&facts.run_dir);
            let log = self.styles.path(&facts.log);
            self.status(
                "Directory",
                &format!("{run_dir} (server runs as `{}`)", facts.server_user),
            );
            self.status("Log", &log);
        }
    }

    fn run_started(&mut self, to_run: usize, filtered_out: usize, jobs: usize, shared: bool) {
        if to_run == 0 {
            return;
        }
        let plural = if to_run == 1 { "" } else { "s" };
        let databases = if shared {
            "in one shared database"
        } else {
            "each in a fresh database"
        };
        let mut message = format!("{to_run} test{plural}, {jobs} at a time, {databases}");
        if filtered_out > 0 {
            message.push_str(&format!(" ({filtered_out} filtered out)"));
        }
        self.status("Running", &message);
    }

    fn template_cache(&mut self, hit: bool, stored: bool) {
        let message = match (hit, stored) {
            (true, _) => "migrated cluster copied from the cache: no initdb, no migrations",
            (false, true) => "migrated cluster stored in the cache for the next run",
            (false, false) => "cache not used",
        };
        self.status("Cache", message);
    }

    fn test_finished(
        &mut self,
        test: &TestId,
        outcome: &Outcome,
        duration: Option<Duration>,
        output: &str,
    ) {
        if self.quiet && outcome.is_success() && !self.show_output {
            return;
        }
        let time = duration.map_or_else(|| format!("{:>9}", ""), |d| self.styles.seconds(d));
        if let Some(earlier) = self.retried.remove(test).filter(|_| outcome.is_success()) {
            self.test_line("FLAKY", Some(outcome), &time, test);
            self.output_block(test, &earlier);
            return;
        }
        self.test_line(&outcome.label(), Some(outcome), &time, test);
        if let Outcome::NotRun { reason } = outcome {
            // Tests not run for one cause (the server stopped) share one reason: it is said once.
            if self.last_not_run_reason.as_ref() != Some(reason) {
                let _ = writeln!(self.out, "        {reason}");
                self.last_not_run_reason = Some(reason.clone());
            }
        } else if !outcome.is_success() || self.show_output {
            self.output_block(test, output);
        }
    }

    /// `TRY 1 FAIL`: an attempt failed and the test runs again; its output waits for the test's result.
    fn test_retry(
        &mut self,
        test: &TestId,
        attempt: usize,
        outcome: &Outcome,
        duration: Option<Duration>,
        output: &str,
    ) {
        let time = duration.map_or_else(|| format!("{:>9}", ""), |d| self.styles.seconds(d));
        let label = format!("TRY {attempt} {}", outcome.label());
        self.test_line(&label, Some(outcome), &time, test);
        let earlier = self.retried.entry(test.clone()).or_default();
        earlier.push_str(&format!("--- attempt {attempt}: {} ---\n", outcome.label()));
        if !output.trim().is_empty() {
            earlier.push_str(output.trim_end());
            earlier.push('\n');
        }
    }

    fn warning(&mut self, message: &str) {
        let _ = writeln!(
            self.out,
            "{} {message}",
            "warning:".style(self.styles.warning)
        );
    }
}

impl<W: Write> Reporter for Human<W> {
    fn report(&mut self, event: &Event) {
        let Some(progress) = &mut self.progress else {
            return self.show(event);
        };
        progress.record(event);
        self.clear_progress();
        self.show(event);
        self.draw_progress();
    }

    fn tick(&mut self) {
        if self.progress_shown.is_some() {
            self.clear_progress();
            self.draw_progress();
        }
    }

    fn finish(&mut self, summary: &Summary) -> Result<(), Error> {
        self.clear_progress();
        self.summary(summary)
            .map(|()| self.html_line())
            .and_then(|()| self.out.flush())
            .map_err(|source| Error::Human { source })
    }
}

impl<W: Write> Human<W> {
    /// Writes what `event` shows a person, if anything.
    fn show(&mut self, event: &Event) {
        if self.verbose {
            if let Some(info) = info_of(event) {
                self.status("Info", &info);
                return;
            }
        }
        match event {
            Event::Warning { message } => self.warning(message),
            Event::ClusterReady(facts) => self.cluster_ready(facts),
            Event::PhaseFinished { phase, duration } if self.verbose => {
                let time = self.styles.seconds(*duration);
                self.status("Finished", &format!("{} in {}", phase.label(), time.trim()));
            }
            Event::RunStarted {
                to_run,
                filtered_out,
                jobs,
                shared,
            } => self.run_started(*to_run, *filtered_out, *jobs, *shared),
            Event::TemplateCache { hit, stored } if self.verbose => {
                self.template_cache(*hit, *stored)
            }
            Event::TestSlow { test, elapsed } => {
                let time = format!(">{}", self.styles.seconds(*elapsed).trim_start());
                self.test_line("SLOW", None, &format!("{time:>9}"), test);
            }
            Event::TestFinished {
                test,
                outcome,
                duration,
                output,
            } => self.test_finished(test, outcome, *duration, output),
            Event::TestRetry {
                test,
                attempt,
                outcome,
                duration,
                output,
            } => self.test_retry(test, *attempt, outcome, *duration, output),
            Event::TestIgnored { test } => {
                let time = format!("{:>9}", "");
                self.test_line("IGNORED", None, &time, test);
            }
            Event::DatabaseKept { command, .. } => {
                let _ = writeln!(self.out, "{} {command}", "kept:".style(self.styles.warning));
            }
            Event::Interrupted { signal } => self.warning(&format!(
                "stopped by {signal}: stopping the tests and the cluster"
            )),
            Event::Info { .. }
            | Event::PhaseFinished { .. }
            | Event::TemplateCache { .. }
            | Event::TestStarted { .. }
            | Event::DatabaseCloned { .. }
            | Event::DatabasesReused { .. }
            | Event::DatabaseUntouched { .. }
            | Event::ReadOnlyGroups { .. }
            | Event::TrialGroups { .. }
            | Event::OwnCpu { .. }
            | Event::TestsCpu { .. }
            | Event::ThreadCpu { .. }
            | Event::SqlxDatabasesReused { .. }
            | Event::FilteredOut { .. }
            | Event::ClusterMemory { .. }
            | Event::TestSlower { .. }
            | Event::BatchStarted { .. }
            | Event::BatchFinished { .. }
            | Event::DatabaseChecked { .. }
            | Event::MemorySample { .. }
            | Event::TestHistory { .. } => {}
        }
    }
}

/// The `-v` line about the read-only groups.
fn read_only_groups(tests: usize, groups: usize, ran_alone: usize) -> String {
    let processes = match groups {
        1 => "one process".to_owned(),
        n => format!("{n} processes"),
    };
    let ran = format!("{tests} tests that read only in earlier runs ran together in {processes}");
    match ran_alone {
        0 => format!("{ran}, one database each, found untouched afterwards"),
        _ => format!("{ran}; {ran_alone} of them ran again alone (their group's database was written to, or they did not pass together)"),
    }
}

impl<W: Write> Human<W> {
    fn summary(&mut self, summary: &Summary) -> std::io::Result<()> {
        if !summary.started && summary.interrupted.is_none() {
            // The run stopped before the tests (a build or setup error, already reported): no tally to show.
            return Ok(());
        }
        let total: Duration = summary.phases.iter().map(|(_, d)| *d).sum();
        let _ = writeln!(self.out, "{}", "------------".style(self.styles.dim));
        let style = if summary.failures() == 0 && summary.interrupted.is_none() {
            self.styles.pass
        } else {
            self.styles.fail
        };
        let word = format!("{:>12}", "Summary");
        writeln!(
            self.out,
            "{} [{}] {}",
            word.style(style),
            self.styles.seconds(total),
            summary.counts_line()
        )?;
        for (test, outcome, duration) in summary.finished.iter().filter(|(_, o, _)| !o.is_success())
        {
            let time = duration.map_or_else(|| format!("{:>9}", ""), |d| self.styles.seconds(d));
            self.test_line(&outcome.label(), Some(outcome), &time, test);
        }
        for test in &summary.flaky {
            self.test_line("FLAKY", Some(&Outcome::Passed), &format!("{:>9}", ""), test);
        }
        self.slower(summary);
        self.slowest(summary);
        self.phases(summary);
        self.cluster_line(summary);
        Ok(())
    }

    /// Where the HTML report is, when one is written (also after a run that stopped before its tests).
    fn html_line(&mut self) {
        let path = self.html.as_ref().and_then(|html| html.path());
        if let Some(path) = path {
            let shown = match self.styles.redact {
                true => "[path]".to_owned(),
                false => path.display().to_string(),
            };
            self.status("Report", &shown);
        }
    }

    /// Passing tests far slower than their own history, each with both times.
    fn slower(&mut self, summary: &Summary) {
        for (test, now, median) in &summary.slower {
            let label = format!("{:>7}", "SLOWER");
            let _ = writeln!(
                self.out,
                "{} [{}] {} {} (median of its last passing runs: {})",
                label.style(self.styles.warning),
                self.styles.seconds(*now),
                test.binary.style(self.styles.dim),
                test.name,
                self.styles.seconds(*median).trim()
            );
        }
    }

    fn slowest(&mut self, summary: &Summary) {
        let slowest = summary.slowest(SLOWEST_SHOWN);
        if summary.ran() > 1 && !slowest.is_empty() {
            let mut word = "Slowest";
            for (test, duration) in slowest {
                let line = format!("{} {test}", self.styles.seconds(duration));
                self.status(word, &line);
                word = "";
            }
        }
    }

    /// The phases in the order they run.
    fn phases(&mut self, summary: &Summary) {
        if summary.phases.is_empty() {
            return;
        }
        let phases = summary.phases_in_run_order();
        let text: Vec<String> = phases
            .iter()
            .map(|(phase, d)| format!("{} {}", phase.label(), self.styles.seconds(*d).trim()))
            .collect();
        self.status("Phases", &text.join(", "));
    }

    fn cluster_line(&mut self, summary: &Summary) {
        let Some(cluster) = &summary.cluster else {
            return;
        };
        let place = if cluster.in_ram {
            "in RAM (tmpfs)"
        } else {
            "on disk"
        };
        let mut line = format!("{}, data {place}", cluster.version);
        if let Some(peak) = &summary.memory {
            line.push_str(&memory_text(
                peak,
                summary.peak_memory_bytes,
                cluster.in_ram,
            ));
        }
        self.status("Cluster", &line);
        if self.verbose && !summary.memory_phases.is_empty() {
            let phases: Vec<String> = summary
                .memory_phases
                .iter()
                .map(|p| {
                    format!(
                        "{} {}",
                        p.phase.label(),
                        phase_memory_text(&p.peak, cluster.in_ram)
                    )
                })
                .collect();
            self.status("Memory", &format!("peak per phase: {}", phases.join(", ")));
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The peak on the cluster line: on tmpfs the data directory is RAM too, so the sum is the figure; on disk
/// the processes are, and the data directory's size is told apart.
pub(super) fn memory_text(peak: &MemoryPeak, processes_peak: Option<u64>, in_ram: bool) -> String {
    if in_ram {
        format!(
            ", peak RAM {} (server processes {} + data directory {})",
            mib(peak.ram_peak_bytes),
            mib(peak.processes_bytes),
            mib(peak.data_dir_bytes)
        )
    } else {
        format!(
            ", peak memory {} (server processes; data directory {} on disk)",
            mib(processes_peak.unwrap_or(peak.processes_bytes)),
            mib(peak.data_dir_bytes)
        )
    }
}

fn phase_memory_text(peak: &MemoryPeak, in_ram: bool) -> String {
    if in_ram {
        format!(
            "{} ({} + {})",
            mib(peak.ram_peak_bytes),
            mib(peak.processes_bytes),
            mib(peak.data_dir_bytes)
        )
    } else {
        mib(peak.processes_bytes)
    }
}

#[cfg(test)]
mod tests;
