//! The results table: one row per measured figure, rendered as an aligned Markdown table that reads well
//! in a terminal and pastes into the README unchanged.

use super::stats::Stats;

/// What the figures of a row are in (they are stored already converted).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    Seconds,
    Millis,
    MiB,
    Times,
    PerSecond,
}

impl Unit {
    fn format(self, value: f64) -> String {
        match self {
            Unit::Seconds => format!("{value:.3} s"),
            Unit::Millis => format!("{value:.1} ms"),
            Unit::MiB => format!("{value:.1} MiB"),
            Unit::Times => format!("{value:.2}×"),
            Unit::PerSecond => format!("{value:.0}/s"),
        }
    }
}

/// The bound a target's median must keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    fn value(self) -> f64 {
        match self {
            Goal::AtMost(v) | Goal::AtLeast(v) => v,
        }
    }

    fn met_by(self, median: f64) -> bool {
        match self {
            Goal::AtMost(v) => median <= v,
            Goal::AtLeast(v) => median >= v,
        }
    }

    fn format(self, unit: Unit) -> String {
        match self {
            Goal::AtMost(v) => format!("≤ {}", unit.format(v)),
            Goal::AtLeast(v) => format!("≥ {}", unit.format(v)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    /// The target number ("1"…"5"); empty for a row that only informs.
    pub target: &'static str,
    pub metric: String,
    pub unit: Unit,
    /// `None` when cargo-pgtest did not report the figure (yet): the cells read "n/a".
    pub stats: Option<Stats>,
    /// `None` for an informative row.
    pub goal: Option<Goal>,
}

impl Row {
    pub fn target(
        target: &'static str,
        metric: impl Into<String>,
        unit: Unit,
        stats: Option<Stats>,
        goal: Goal,
    ) -> Row {
        Row {
            target,
            metric: metric.into(),
            unit,
            stats,
            goal: Some(goal),
        }
    }

    pub fn info(metric: impl Into<String>, unit: Unit, stats: Option<Stats>) -> Row {
        Row {
            target: "",
            metric: metric.into(),
            unit,
            stats,
            goal: None,
        }
    }

    /// `Some(true)` met, `Some(false)` not met, `None` not measurable or not a target.
    pub fn verdict(&self) -> Option<bool> {
        Some(self.goal?.met_by(self.stats?.median))
    }

    fn cells(&self) -> Vec<String> {
        let figure = |pick: fn(&Stats) -> f64| match &self.stats {
            Some(stats) => self.unit.format(pick(stats)),
            None => "n/a".to_owned(),
        };
        let samples = self
            .stats
            .map_or_else(|| "0".to_owned(), |s| s.count.to_string());
        let (target, ratio, verdict) = match self.goal {
            None => ("—".to_owned(), String::new(), String::new()),
            Some(goal) => match self.stats {
                None => (goal.format(self.unit), "n/a".to_owned(), "n/a".to_owned()),
                Some(stats) => (
                    goal.format(self.unit),
                    format!("{:.2}", stats.median / goal.value()),
                    if goal.met_by(stats.median) {
                        "met"
                    } else {
                        "NOT met"
                    }
                    .to_owned(),
                ),
            },
        };
        vec![
            self.target.to_owned(),
            self.metric.clone(),
            figure(|s| s.median),
            figure(|s| s.min),
            figure(|s| s.max),
            samples,
            target,
            ratio,
            verdict,
        ]
    }
}

const HEADER: [&str; 9] = [
    "#", "metric", "median", "min", "max", "n", "target", "ratio", "verdict",
];
/// Numbers read best right-aligned.
const RIGHT: [bool; 9] = [false, false, true, true, true, true, true, true, false];

/// An aligned Markdown table of the rows.
pub fn render(rows: &[Row]) -> String {
    let body: Vec<Vec<String>> = rows.iter().map(Row::cells).collect();
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.chars().count().max(3)).collect();
    for row in &body {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .zip(RIGHT)
            .map(|((cell, &width), right)| {
                let pad = " ".repeat(width - cell.chars().count());
                if right {
                    format!("{pad}{cell}")
                } else {
                    format!("{cell}{pad}")
                }
            })
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(&HEADER.map(str::to_owned));
    let rule: Vec<String> = widths
        .iter()
        .zip(RIGHT)
        .map(|(&width, right)| {
            if right {
                format!("{}:", "-".repeat(width - 1))
            } else {
                "-".repeat(width)
            }
        })
        .collect();
    out.push_str(&line(&rule));
    for row in &body {
        out.push_str(&line(row));
    }
    out
}
