//! Looking at the databases after a run: the state a failing run keeps ([`state`]: its failed tests'
//! databases, saved under the target directory), and the arguments of `cargo pgtest psql` and
//! `cargo pgtest serve`, which boot a cluster from that state or from the migrated template (the stage
//! that does it is `stages::inspect`).

pub(crate) mod state;
pub(crate) mod tcp;

use std::path::PathBuf;

/// `cargo pgtest psql [TESTNAME] [-- PSQL ARGS]`
#[derive(Debug, clap::Args)]
pub(crate) struct PsqlArgs {
    /// The failed test whose kept database to open: its full id (binary and name) or a part of it that
    /// only one kept test has; none for a fresh copy of the migrated, seeded template
    #[arg(value_name = "TESTNAME")]
    pub(crate) name: Vec<String>,

    #[command(flatten)]
    pub(crate) project: ProjectArgs,

    /// Arguments for psql (`-c`, `-f`, `-At`…)
    #[arg(last = true, value_name = "PSQL ARGS", allow_hyphen_values = true)]
    pub(crate) psql_args: Vec<String>,
}

/// `cargo pgtest serve`
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Also listen on 127.0.0.1 (never another address) at this port, with the printed password, for
    /// clients that cannot use a Unix socket
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) port: Option<u16>,

    #[command(flatten)]
    pub(crate) project: ProjectArgs,
}

/// Which project, as for a run.
#[derive(Debug, clap::Args, Clone, Default)]
pub(crate) struct ProjectArgs {
    /// Path to Cargo.toml
    #[arg(long, value_name = "PATH")]
    pub(crate) manifest_path: Option<PathBuf>,

    /// The package whose migrated template to open
    #[arg(short, long, value_name = "SPEC")]
    pub(crate) package: Vec<String>,

    /// Directory for all generated artifacts (where the kept databases are)
    #[arg(long, value_name = "DIRECTORY")]
    pub(crate) target_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum InspectError {
    #[error("no failed test's database is kept under {}: a run keeps them when tests fail (see --keep-failed); `cargo pgtest psql` without a name opens a fresh copy of the migrated template", dir.display())]
    NothingKept { dir: PathBuf },
    #[error("no kept test matches `{name}`; the kept ones:{}", list(candidates))]
    Unknown {
        name: String,
        candidates: Vec<String>,
    },
    #[error(
        "`{name}` matches several kept tests; name one of them:{}",
        list(candidates)
    )]
    Ambiguous {
        name: String,
        candidates: Vec<String>,
    },
    #[error("could not save the failed tests' databases in {}: {source}", dir.display())]
    Save {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("could not read the cluster's data directory {} to keep the failed tests' databases: {source}", dir.display())]
    Read {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("could not create the database {database} to open: {message}")]
    Create { database: String, message: String },
    #[error("could not open the cluster to TCP connections on 127.0.0.1:{port}: {detail}")]
    Tcp { port: u16, detail: String },
    #[error("could not run {}: {source}; install PostgreSQL's client (psql) or put it on PATH", program.display())]
    Psql {
        program: PathBuf,
        source: std::io::Error,
    },
}

/// The `cargo pgtest psql` command of each candidate, one per line.
fn list(candidates: &[String]) -> String {
    candidates
        .iter()
        .map(|test| format!("\n  {}", state::psql_command(test)))
        .collect()
}
