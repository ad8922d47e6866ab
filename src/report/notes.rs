//! The report on stderr when libtest's output is the report (`cargo-pgtest runner`): only what libtest's
//! format has no place for, the warnings, so that an editor's or cargo's output stays libtest's own.

use std::io::Write;

use owo_colors::OwoColorize;

use super::styles::Styles;
use super::{Error, Reporter, Summary};
use crate::events::Event;

pub(crate) struct Notes<W: Write> {
    out: W,
    styles: Styles,
}

impl<W: Write> Notes<W> {
    pub(crate) fn new(out: W, styles: Styles) -> Self {
        Notes { out, styles }
    }
}

impl<W: Write> Reporter for Notes<W> {
    fn report(&mut self, event: &Event) {
        if let Event::Warning { message } = event {
            let _ = writeln!(self.out, "{} {message}", "warning:".style(self.styles.skip));
        }
    }

    fn finish(&mut self, _: &Summary) -> Result<(), Error> {
        self.out.flush().map_err(|source| Error::Human { source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_warnings_are_written() {
        let mut out = Vec::new();
        let mut notes = Notes::new(&mut out, Styles::new(false, false));
        notes.report(&Event::Info {
            message: "template x".into(),
        });
        notes.report(&Event::Warning {
            message: "reuse is off".into(),
        });
        notes.finish(&Summary::default()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "warning: reuse is off\n");
    }
}
