//! The HTML report: one self-contained page of a run (`--html PATH`, the `html` key), written at the end of
//! every run, a failed or interrupted one too; `cargo pgtest report EVENTS.jsonl -o PATH` renders the same
//! page later from a `--json` file.
//!
//! Both render from the `--json` lines and nothing else: the reporter keeps each event as the line the
//! JSON reporter writes for it ([`super::json::line_text`]) and renders those lines at the end through the
//! same [`render`] the command uses, so the two pages differ only in when they were rendered. What the page
//! shows is read from the lines in [`model`]; [`page`] and [`chart`] write it, [`data`] is the copy its
//! script draws from, [`text`] how text and figures are written.

mod chart;
mod data;
mod model;
mod page;
mod text;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

use super::{json, Error, Reporter, Summary};
use crate::events::Event;

/// The `report` command could not render a page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HtmlError {
    #[error("could not read the event file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("line {line} of {} is not a JSON object ({source}); pass the file `--json PATH` wrote", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{} holds no events with times (`at_seconds`): it is empty, or was written by a cargo-pgtest from before the HTML report; run the tests again with `--json PATH`", path.display())]
    NoTimes { path: PathBuf },
    #[error("could not write the HTML report to {}: {source}; check that its directory exists and is writable", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the page goes: `--html` decides at once; without it, the `html` key once the configuration is
/// read. Until then the events are kept in case the key names a file; once it is known that none is
/// wanted, they are not. Shared by the reporter and the stage that reads the configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct Destination(Arc<Mutex<Decided>>);

#[derive(Debug, Clone, Default, PartialEq)]
enum Decided {
    #[default]
    NotYet,
    To(PathBuf),
    Nowhere,
}

impl Destination {
    /// The destination `--html` gives, if it gives one.
    pub(crate) fn from_flag(flag: Option<PathBuf>) -> Destination {
        let decided = flag.map_or(Decided::NotYet, Decided::To);
        Destination(Arc::new(Mutex::new(decided)))
    }

    /// The configuration's `html` key (already anchored to its manifest), unless `--html` decided.
    pub(crate) fn configured(&self, key: Option<&Path>) {
        let mut decided = self.lock();
        if *decided == Decided::NotYet {
            *decided = key.map_or(Decided::Nowhere, |path| Decided::To(path.to_owned()));
        }
    }

    /// The file the page goes to, once one is known.
    pub(crate) fn path(&self) -> Option<PathBuf> {
        match &*self.lock() {
            Decided::To(path) => Some(path.clone()),
            Decided::NotYet | Decided::Nowhere => None,
        }
    }

    fn wanted(&self) -> bool {
        *self.lock() != Decided::Nowhere
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Decided> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The reporter: keeps the run's lines, renders them at the end.
pub(crate) struct HtmlReport {
    destination: Destination,
    lines: Vec<Value>,
    /// The latest event's time: an event given without one is kept at it.
    at: Duration,
}

impl HtmlReport {
    pub(crate) fn new(destination: Destination) -> HtmlReport {
        HtmlReport {
            destination,
            lines: Vec::new(),
            at: Duration::ZERO,
        }
    }

    /// Keeps `line` as the JSON report writes it, read back: the same values `report` reads from a file.
    fn keep(&mut self, line: serde_json::Result<String>) {
        if let Ok(value) = line.and_then(|text| serde_json::from_str(&text)) {
            self.lines.push(value);
        }
    }
}

impl Reporter for HtmlReport {
    fn report(&mut self, event: &Event) {
        if !self.destination.wanted() {
            self.lines = Vec::new();
            return;
        }
        self.keep(json::line_text(event, self.at));
    }

    fn report_at(&mut self, event: &Event, at: Duration) {
        self.at = at;
        self.report(event);
    }

    fn finish(&mut self, summary: &Summary) -> Result<(), Error> {
        let Some(path) = self.destination.path() else {
            return Ok(());
        };
        self.keep(json::summary_text(summary));
        let page = render(&self.lines, &now());
        std::fs::write(&path, page).map_err(|source| Error::Html { path, source })
    }
}

/// The page of the run the `--json` lines tell; `generated` is when it was rendered.
pub(crate) fn render(lines: &[Value], generated: &str) -> String {
    page::render(&model::Run::from_lines(lines), generated)
}

/// `cargo pgtest report EVENTS -o PAGE`: the page of a `--json` file.
pub(crate) fn render_file(events: &Path, page: &Path) -> Result<(), HtmlError> {
    let text = std::fs::read_to_string(events).map_err(|source| HtmlError::Read {
        path: events.to_owned(),
        source,
    })?;
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|source| HtmlError::Line {
            path: events.to_owned(),
            line: number + 1,
            source,
        })?;
        lines.push(value);
    }
    if !lines.iter().any(|line| line["at_seconds"].is_number()) {
        return Err(HtmlError::NoTimes {
            path: events.to_owned(),
        });
    }
    std::fs::write(page, render(&lines, &now())).map_err(|source| HtmlError::Write {
        path: page.to_owned(),
        source,
    })
}

/// Now, as the page's footer says it (UTC, to the second); fixed under `CARGO_PGTEST_REDACT=1`.
fn now() -> String {
    if std::env::var("CARGO_PGTEST_REDACT").is_ok_and(|v| v == "1") {
        return "[time]".to_owned();
    }
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests;
