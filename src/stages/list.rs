//! `cargo pgtest list`, in place of stage 7: the built binaries' tests, chosen and arranged by the runner's
//! own functions, printed one per line (or as JSON lines with `--json`) instead of run.
//!
//! The build before it is a run's build, against the migrated database: `query!` needs a `DATABASE_URL`
//! to compile, and the same build makes the same binaries, so the list cannot differ from a run's.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::build::Built;
use super::context::Run;
use super::error::Error;
use super::template::Ready;
use crate::runner::{self, list_command};

/// Lists the tests a run of the same command line would execute, in its order, and writes the list out.
pub(crate) async fn print(
    run: &Run<'_>,
    ready: &Ready,
    built: Built,
    settings: &runner::Settings,
) -> Result<(), Error> {
    let databases = &ready.databases;
    let listed = runner::list(built.binaries, settings, databases, run.cancel, run.events);
    let Some(mut listed) = listed.await? else {
        return Err(stopped(run));
    };
    // Doc tests run last, against a database of their own; listing them builds against the build's.
    if let Some(doc) = settings.doc_tests() {
        let env = databases.env(super::build::BUILD_DATABASE);
        let docs = list_command::list_doc_tests(doc, &settings.args, &env, run.cancel, run.events);
        listed.extend(docs.await?.ok_or_else(|| stopped(run))?);
    }
    match &run.cli.pgtest.json {
        Some(path) => {
            let text =
                list_command::to_json_lines(&listed).map_err(|source| Error::ReportFile {
                    path: path.clone(),
                    source: source.into(),
                })?;
            write(path, &text)
        }
        None => write(Path::new("-"), &list_command::to_text(&listed)),
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
