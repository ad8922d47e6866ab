//! Colour and redaction, decided once per run, and the decision handed to cargo so that its output and ours
//! agree. Colour comes from, first to last: `--color always|never`; `CARGO_TERM_COLOR` (cargo's own setting,
//! often set in CI; a value other than auto, always or never is ignored, as `--color` then overrides it for
//! cargo too); then, as cargo decides `auto`: `NO_COLOR` set and not empty turns it off; `CLICOLOR_FORCE` set,
//! not empty and not `0` turns it on; `TERM=dumb` turns it off; and otherwise whether stderr, where the report
//! goes, is a terminal.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::time::Duration;

use clap::ValueEnum;
use owo_colors::Style;

use crate::cli::ColorChoice;

#[derive(Debug, Clone, Default)]
pub(crate) struct Styles {
    pub(crate) colored: bool,
    /// `CARGO_PGTEST_REDACT=1`: durations and run paths print as fixed placeholders, for stable expectations.
    pub(crate) redact: bool,
    pub(crate) pass: Style,
    pub(crate) fail: Style,
    pub(crate) skip: Style,
    pub(crate) heading: Style,
    pub(crate) dim: Style,
    pub(crate) warning: Style,
}

impl Styles {
    /// The styles for this run, from `--color` and the environment.
    pub(crate) fn decide(choice: ColorChoice) -> Styles {
        let var = std::env::var_os;
        let (cargo_term_color, no_color, clicolor_force, term) = (
            var("CARGO_TERM_COLOR"),
            var("NO_COLOR"),
            var("CLICOLOR_FORCE"),
            var("TERM"),
        );
        let env = ColorEnv {
            cargo_term_color: cargo_term_color.as_deref(),
            no_color: no_color.as_deref(),
            clicolor_force: clicolor_force.as_deref(),
            term: term.as_deref(),
        };
        let colored = wants_color(choice, env, std::io::stderr().is_terminal());
        let redact = std::env::var("CARGO_PGTEST_REDACT").is_ok_and(|v| v == "1");
        Styles::new(colored, redact)
    }

    /// `colored` as decided; `redact` for fixed placeholders in place of durations and paths.
    pub(crate) fn new(colored: bool, redact: bool) -> Styles {
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
            heading: Style::new().green().bold(),
            dim: Style::new().dimmed(),
            warning: Style::new().yellow().bold(),
        }
    }

    /// What to tell cargo: always the decision made here, so its output matches ours.
    pub(crate) fn cargo_color(&self) -> &'static str {
        if self.colored {
            "always"
        } else {
            "never"
        }
    }

    /// Seconds with three decimals, right-aligned in eight columns: `   0.348s`.
    pub(crate) fn seconds(&self, duration: Duration) -> String {
        let seconds = if self.redact {
            0.0
        } else {
            duration.as_secs_f64()
        };
        format!("{seconds:>8.3}s")
    }

    pub(crate) fn path(&self, path: &str) -> String {
        if self.redact {
            "<path>".to_owned()
        } else {
            path.to_owned()
        }
    }
}

/// `TERM=dumb`: a terminal that understands neither colour nor redrawing a line, where cargo shows no progress
/// bar either.
pub(crate) fn dumb_terminal() -> bool {
    std::env::var_os("TERM").is_some_and(|term| term == "dumb")
}

/// The environment variables colour depends on, as read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ColorEnv<'a> {
    pub(crate) cargo_term_color: Option<&'a OsStr>,
    pub(crate) no_color: Option<&'a OsStr>,
    pub(crate) clicolor_force: Option<&'a OsStr>,
    pub(crate) term: Option<&'a OsStr>,
}

/// Whether to colour, from `--color`, the environment and whether stderr is a terminal (see the module doc
/// for the order).
pub(crate) fn wants_color(flag: ColorChoice, env: ColorEnv<'_>, stderr_is_terminal: bool) -> bool {
    let from_cargo = || {
        env.cargo_term_color
            .and_then(OsStr::to_str)
            .and_then(|value| ColorChoice::from_str(value.trim(), true).ok())
    };
    let choice = match flag {
        ColorChoice::Auto => from_cargo().unwrap_or(ColorChoice::Auto),
        chosen => chosen,
    };
    let no_color = env.no_color.is_some_and(|v| !v.is_empty());
    let forced = env
        .clicolor_force
        .is_some_and(|v| !v.is_empty() && v != "0");
    let dumb = env.term.is_some_and(|term| term == "dumb");
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto if no_color => false,
        ColorChoice::Auto if forced => true,
        ColorChoice::Auto => !dumb && stderr_is_terminal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColorChoice::{Always, Auto, Never};

    fn decide(flag: ColorChoice, cargo: Option<&str>, no_color: Option<&str>, tty: bool) -> bool {
        let env = ColorEnv {
            cargo_term_color: cargo.map(OsStr::new),
            no_color: no_color.map(OsStr::new),
            ..ColorEnv::default()
        };
        wants_color(flag, env, tty)
    }

    /// `auto` with `CLICOLOR_FORCE` and `TERM` set as given.
    fn decide_auto(clicolor_force: Option<&str>, term: Option<&str>, tty: bool) -> bool {
        let env = ColorEnv {
            clicolor_force: clicolor_force.map(OsStr::new),
            term: term.map(OsStr::new),
            ..ColorEnv::default()
        };
        wants_color(Auto, env, tty)
    }

    #[test]
    fn clicolor_force_colours_a_pipe_unless_empty_or_0() {
        assert!(decide_auto(Some("1"), None, false));
        assert!(
            decide_auto(Some("yes"), Some("dumb"), false),
            "over TERM=dumb"
        );
        assert!(!decide_auto(Some("0"), None, false));
        assert!(!decide_auto(Some(""), None, false));
        assert!(
            decide_auto(Some("0"), None, true),
            "then the terminal decides"
        );
    }

    #[test]
    fn term_dumb_turns_colour_off_on_a_terminal() {
        assert!(!decide_auto(None, Some("dumb"), true));
        assert!(decide_auto(None, Some("xterm-256color"), true));
        assert!(
            decide_auto(None, None, true),
            "no TERM leaves it to the terminal"
        );
        assert!(!decide_auto(None, Some("xterm"), false));
    }

    #[test]
    fn the_flag_cargo_s_setting_and_no_color_come_before_clicolor_force() {
        let env = |cargo: Option<&'static str>, no_color: Option<&'static str>| ColorEnv {
            cargo_term_color: cargo.map(OsStr::new),
            no_color: no_color.map(OsStr::new),
            clicolor_force: Some(OsStr::new("1")),
            term: None,
        };
        assert!(!wants_color(Never, env(None, None), true));
        assert!(!wants_color(Auto, env(Some("never"), None), true));
        assert!(
            !wants_color(Auto, env(None, Some("1")), true),
            "NO_COLOR first, as cargo"
        );
        assert!(wants_color(Auto, env(Some("auto"), None), false));
    }

    #[test]
    fn the_flag_wins_over_everything() {
        for (cargo, no_color, tty) in [(Some("never"), Some("1"), false), (None, None, true)] {
            assert!(decide(Always, cargo, no_color, tty));
            assert!(!decide(Never, Some("always"), no_color, tty));
        }
    }

    #[test]
    fn cargo_term_color_decides_when_the_flag_is_auto() {
        assert!(decide(Auto, Some("always"), Some("1"), false));
        assert!(decide(Auto, Some("ALWAYS"), None, false));
        assert!(!decide(Auto, Some("never"), None, true));
        assert!(decide(Auto, Some("auto"), None, true));
        assert!(!decide(Auto, Some("auto"), None, false));
        assert!(
            decide(Auto, Some("sometimes"), None, true),
            "an unknown value counts as auto"
        );
        assert!(!decide(Auto, Some("sometimes"), None, false));
    }

    #[test]
    fn otherwise_no_color_and_then_the_terminal_decide() {
        assert!(decide(Auto, None, None, true));
        assert!(!decide(Auto, None, None, false));
        assert!(!decide(Auto, None, Some("1"), true));
        assert!(
            decide(Auto, None, Some(""), true),
            "an empty NO_COLOR is not set"
        );
        assert!(!decide(Auto, Some("auto"), Some("yes"), true));
    }

    #[test]
    fn cargo_is_told_the_decision() {
        assert_eq!(Styles::new(true, false).cargo_color(), "always");
        assert_eq!(Styles::new(false, false).cargo_color(), "never");
    }
}
