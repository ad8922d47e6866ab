//! `cargo pgtest list`, in place of stage 7: the built binaries' tests, chosen and arranged by the runner's
//! own functions, printed one per line (or as JSON lines with `--json`) instead of run.
//!
//! The build before it is a run's build, against the migrated database: `query!` needs a `DATABASE_URL`
//! to compile, and the same build makes the same binaries, so the list cannot differ from a run's.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::build::Built;
use super::context::{Run, Setup};
use super::error::Error;
use crate::cluster::Endpoint;
use crate::events::TestId;
use crate::runner::{self, list::TestArgs, listing};
use crate::template::snapshots::NamedSnapshots;

/// Lists the tests a run of the same command line would execute, and writes the list out.
pub(crate) async fn print(
    run: &Run<'_>,
    setup: &Setup,
    endpoint: &Endpoint,
    (built, test_args): (Built, TestArgs),
    snapshots: &NamedSnapshots,
    read_only: &BTreeMap<TestId, Duration>,
) -> Result<(), Error> {
    let isolation = setup.config.isolation;
    let partition = run.cli.pgtest.partition;
    // Doc tests all run on the first shard of a partition, as in a run.
    let doc_tests = super::run::doc_tests(setup, &built)
        .filter(|_| partition.is_none_or(|p| p.runs_doc_tests()));
    let listed = runner::listing::list(
        built.binaries,
        &test_args,
        (isolation, snapshots),
        (read_only, setup.config.jobs),
        partition,
        run.cancel,
        run.events,
    )
    .await?;
    let Some(mut listed) = listed else {
        return Err(stopped(run));
    };
    // Doc tests run last, against a database of their own; listing them builds against the build's.
    if let Some(doc) = doc_tests {
        let env = endpoint.env(super::build::BUILD_DATABASE, &setup.config.database_env);
        let docs = runner::listing::list_doc_tests(&doc, &test_args, &env, run.cancel, run.events);
        listed.extend(docs.await?.ok_or_else(|| stopped(run))?);
    }
    match &run.cli.pgtest.json {
        Some(path) => {
            let text = listing::to_json_lines(&listed).map_err(|source| Error::ReportFile {
                path: path.clone(),
                source: source.into(),
            })?;
            write(path, &text)
        }
        None => write(Path::new("-"), &listing::to_text(&listed)),
    }
}

fn stopped(run: &Run<'_>) -> Error {
    Error::Interrupted(run.cancel.signal().unwrap_or("SIGINT"))
}

/// Writes `text` to stdout (`-`) or the file at `path`.
fn write(path: &Path, text: &str) -> Result<(), Error> {
    let failed = |source| Error::ReportFile {
        path: PathBuf::from(if path.as_os_str() == "-" {
            Path::new("(stdout)")
        } else {
            path
        }),
        source,
    };
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(failed)
    } else {
        std::fs::write(path, text).map_err(failed)
    }
}
