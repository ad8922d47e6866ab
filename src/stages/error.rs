//! Everything that can stop a run before its tests are done, and the exit code each one means.

use std::path::PathBuf;

use crate::{cache, cargo, cluster, config, exit_code, inspect, nextest, runner, template};

/// Everything that can stop a run before its tests are done, with the exit code each one means.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{0}")]
    TestArgs(String),
    #[error(transparent)]
    Cargo(#[from] cargo::CargoError),
    /// Boxed: a configuration error carries where each value came from, and is rare.
    #[error(transparent)]
    Config(Box<config::ConfigError>),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error(transparent)]
    Runner(#[from] runner::RunnerError),
    #[error(transparent)]
    Snapshots(#[from] template::snapshots::SnapshotsError),
    #[error(transparent)]
    Inspect(#[from] inspect::InspectError),
    #[error(transparent)]
    Nextest(#[from] nextest::NextestError),
    #[error(transparent)]
    Report(#[from] crate::report::html::HtmlError),
    #[error("could not create the report file {}: {source}", path.display())]
    ReportFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stopped by {0}")]
    Interrupted(&'static str),
}

impl From<config::ConfigError> for Error {
    fn from(error: config::ConfigError) -> Error {
        Error::Config(Box::new(error))
    }
}

impl Error {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Error::Cargo(cargo::CargoError::BuildFailed { .. }) => exit_code::BUILD_FAILED,
            Error::Interrupted(signal) => exit_code::for_signal(signal),
            Error::Nextest(error) => error.exit_code(),
            _ => exit_code::SETUP_FAILED,
        }
    }
}
