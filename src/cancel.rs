//! The run's stop request: Ctrl-C or SIGTERM sets it once, and everything that starts or waits for work
//! (the runner, the stages, the nextest broker) watches it. It lives above the runner so that lower layers
//! can stop early without importing it.

use tokio::sync::watch;

/// Watches for Ctrl-C / SIGTERM; cloned into everything that must stop early.
#[derive(Debug, Clone)]
pub(crate) struct Cancel(watch::Receiver<Option<&'static str>>);

impl Cancel {
    pub(crate) fn new() -> (watch::Sender<Option<&'static str>>, Cancel) {
        let (sender, receiver) = watch::channel(None);
        (sender, Cancel(receiver))
    }

    /// The signal that stopped the run, if one did.
    pub(crate) fn signal(&self) -> Option<&'static str> {
        *self.0.borrow()
    }

    /// Resolves with the signal's name once the run is stopped; never, if it is not.
    pub(crate) async fn cancelled(&mut self) -> &'static str {
        loop {
            if let Some(signal) = *self.0.borrow_and_update() {
                return signal;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
