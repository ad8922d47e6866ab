//! Stage 2, config: the project's `[package.metadata.pgtest]` tables and the command line's flags resolved
//! into one [`Config`], with its paths and migrations checked before anything is started.

use super::context::Run;
use super::error::Error;
use crate::cargo::Project;
use crate::cli::{Cli, IsolationArg};
use crate::config::{self, Config, Isolation, Overrides, PostgresChoice};
use crate::template;

/// Resolves and checks the configuration; `test_threads` is libtest's `--test-threads`, if given.
pub(crate) fn resolve(
    run: &Run<'_>,
    project: &Project,
    test_threads: Option<usize>,
) -> Result<Config, Error> {
    let cpus = crate::platform::cpus();
    let test_threads = match test_threads {
        Some(threads) => Some(threads),
        None => rust_test_threads(std::env::var("RUST_TEST_THREADS").ok().as_deref())?,
    };
    let mut config = config::resolve(&project.workspace, &overrides(run.cli, test_threads), cpus)?;
    config.postgres = postgres_choice(run.cli, config.postgres);
    config.check_paths(&project.workspace)?;
    template::check_migrations(&config.databases)?;
    let extras: Vec<_> = config
        .extra_databases
        .iter()
        .map(|extra| extra.spec.clone())
        .collect();
    template::check_migrations(&extras)?;
    Ok(config)
}

/// `--fetch-postgres MAJOR` over the `postgres` key.
pub(crate) fn postgres_choice(cli: &Cli, configured: PostgresChoice) -> PostgresChoice {
    match cli.pgtest.fetch_postgres {
        Some(major) => PostgresChoice::Fetch(major),
        None => configured,
    }
}

/// libtest's `RUST_TEST_THREADS`, honoured as cargo test honours it: below `--jobs` and `--test-threads`.
fn rust_test_threads(value: Option<&str>) -> Result<Option<usize>, Error> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => match value.parse::<usize>() {
            Ok(threads) if threads > 0 => Ok(Some(threads)),
            _ => Err(Error::TestArgs(format!(
                "RUST_TEST_THREADS is `{value}`, not a whole number of at least 1; fix or unset it"
            ))),
        },
    }
}

/// The flags that override the metadata.
fn overrides(cli: &Cli, test_threads: Option<usize>) -> Overrides {
    Overrides {
        no_tmpfs: cli.pgtest.no_tmpfs,
        jobs: cli.pgtest.jobs,
        isolation: cli.pgtest.isolation.map(|i| match i {
            IsolationArg::Test => Isolation::Test,
            IsolationArg::Shared => Isolation::Shared,
        }),
        timeout: cli.pgtest.timeout,
        test_threads,
        retries: cli.pgtest.retries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_test_threads_is_a_positive_count_or_absent() {
        assert_eq!(rust_test_threads(None).unwrap(), None);
        assert_eq!(rust_test_threads(Some("")).unwrap(), None);
        assert_eq!(rust_test_threads(Some("3")).unwrap(), Some(3));
        for bad in ["0", "many", "-1"] {
            let message = rust_test_threads(Some(bad)).unwrap_err().to_string();
            assert!(message.contains("RUST_TEST_THREADS"), "{message}");
        }
    }
}
