//! Colour and redaction, decided once per run: `--color`, NO_COLOR, and whether stderr is a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use owo_colors::Style;

use crate::cli::ColorChoice;

#[derive(Debug, Clone, Default)]
pub struct Styles {
    pub colored: bool,
    /// `CARGO_PGTEST_REDACT=1`: durations and run paths print as fixed placeholders, for stable expectations.
    pub redact: bool,
    pub pass: Style,
    pub fail: Style,
    pub skip: Style,
    pub slow: Style,
    pub heading: Style,
    pub dim: Style,
    pub warning: Style,
}

impl Styles {
    pub fn decide(choice: ColorChoice) -> Styles {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let colored = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => !no_color && std::io::stderr().is_terminal(),
        };
        let redact = std::env::var("CARGO_PGTEST_REDACT").is_ok_and(|v| v == "1");
        Styles::new(colored, redact)
    }

    pub fn new(colored: bool, redact: bool) -> Styles {
        if !colored {
            return Styles {
                redact,
                ..Styles::default()
            };
        }
        Styles {
            colored,
            redact,
            pass: Style::new().green().bold(),
            fail: Style::new().red().bold(),
            skip: Style::new().yellow().bold(),
            slow: Style::new().yellow().bold(),
            heading: Style::new().green().bold(),
            dim: Style::new().dimmed(),
            warning: Style::new().yellow().bold(),
        }
    }

    /// What to tell cargo: always the decision made here, so its output matches ours.
    pub fn cargo_color(&self) -> &'static str {
        if self.colored {
            "always"
        } else {
            "never"
        }
    }

    /// Seconds with three decimals, right-aligned in eight columns: `   0.348s`.
    pub fn seconds(&self, duration: Duration) -> String {
        let seconds = if self.redact {
            0.0
        } else {
            duration.as_secs_f64()
        };
        format!("{seconds:>8.3}s")
    }

    pub fn path(&self, path: &str) -> String {
        if self.redact {
            "<path>".to_owned()
        } else {
            path.to_owned()
        }
    }
}
