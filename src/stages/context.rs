//! The run context every stage gets instead of a long argument list: the command line, the colours, the
//! stop request and the event channel, with the few things stages do with them.

use std::future::Future;
use std::time::Duration;

use super::error::Error;
use crate::cancel::Cancel;
use crate::cli::Cli;
use crate::events::{Event, EventSender, Phase};
use crate::report::styles::Styles;

/// What every stage of one run shares.
pub(crate) struct Run<'a> {
    pub(crate) cli: &'a Cli,
    pub(crate) styles: &'a Styles,
    pub(crate) cancel: &'a Cancel,
    pub(crate) events: &'a EventSender,
}

impl Run<'_> {
    /// Sends an event to the reporters. A closed channel means reporting is over: nothing to tell.
    pub(crate) fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }

    pub(crate) fn info(&self, message: String) {
        self.send(Event::Info { message });
    }

    pub(crate) fn warn(&self, message: String) {
        self.send(Event::Warning { message });
    }

    pub(crate) fn phase_finished(&self, phase: Phase, duration: Duration) {
        self.send(Event::PhaseFinished { phase, duration });
    }

    /// Runs a stage unless the run is stopped first.
    pub(crate) async fn unless_stopped<T, E: Into<Error>>(
        &self,
        stage: impl Future<Output = Result<T, E>>,
    ) -> Result<T, Error> {
        let mut cancel = self.cancel.clone();
        tokio::select! {
            result = stage => result.map_err(Into::into),
            signal = cancel.cancelled() => Err(Error::Interrupted(signal)),
        }
    }
}

/// Turns SIGINT and SIGTERM into a stop request: tests are stopped, the results so far reported.
pub(crate) async fn watch_signals(
    cancel: tokio::sync::watch::Sender<Option<&'static str>>,
    events: EventSender,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    let _ = events.send(Event::Interrupted {
        signal: name.to_owned(),
    });
    let _ = cancel.send(Some(name));
    // Further signals are absorbed: the cleanup under way is quick and must not be cut short.
    loop {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
}

/// What the stages before the cluster found out, which the later ones read.
pub(crate) struct Setup {
    pub(crate) project: crate::cargo::Project,
    pub(crate) config: crate::config::Config,
    /// Which database spec `#[sqlx::test]`'s template1 gets, if any.
    pub(crate) sqlx_test: Option<usize>,
}
