//! Stage 6, build: `cargo test --no-run` with a migrated database of its own (for sqlx's compile-time
//! checked queries), while the templates' relation caches are warmed beside it.

use std::time::Instant;

use super::context::{Run, Setup};
use super::error::Error;
use super::template::Ready;
use crate::cargo::{self, TestBinary};
use crate::cli::Cli;
use crate::cluster::Endpoint;
use crate::events::Phase;
use crate::report::styles::Styles;
use crate::template::{self, Obtain, TemplateError};

/// The database the build connects to.
pub(super) const BUILD_DATABASE: &str = "pgtest_build";

/// The arguments cargo gets, kept apart from the colour so that nothing has to be stripped again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CargoArgs {
    /// Packages, features and the build's shape: shared by the build and `cargo test --doc`.
    selection: Vec<String>,
    /// Which targets get built.
    targets: Vec<String>,
    /// `--color`'s value, decided once for the run.
    color: &'static str,
}

impl CargoArgs {
    pub(crate) fn new(cli: &Cli, styles: &Styles) -> CargoArgs {
        let mut selection = cli.cargo.package_args();
        selection.extend(cli.cargo.build_args());
        CargoArgs {
            selection,
            targets: cli.cargo.target_args(),
            color: styles.cargo_color(),
        }
    }

    /// `cargo test --no-run`'s arguments: the selection, the targets, then `--color` last.
    pub(crate) fn for_build(&self) -> Vec<String> {
        let mut args = self.selection.clone();
        args.extend(self.targets.iter().cloned());
        args.extend(["--color".to_owned(), self.color.to_owned()]);
        args
    }

    /// `cargo test --doc`'s arguments: the selection alone (the doc-test runner sets the colour itself), less
    /// `--quiet`, which cargo would hand on to libtest, whose one-line-per-test output the runner reads.
    pub(crate) fn for_doc_tests(&self) -> Vec<String> {
        let quiet = |arg: &&String| *arg == "--quiet";
        self.selection
            .iter()
            .filter(|a| !quiet(a))
            .cloned()
            .collect()
    }
}

/// The build's outcome.
pub(crate) struct Built {
    /// Empty under `--doc`, which builds no test binaries.
    pub(crate) binaries: Vec<TestBinary>,
    pub(crate) cargo_args: CargoArgs,
    /// Whether `cargo test --doc` runs too, following cargo's rules for the targets asked for.
    pub(crate) runs_doc_tests: bool,
}

pub(crate) async fn build(
    run: &Run<'_>,
    setup: &Setup,
    endpoint: &Endpoint,
    ready: &Ready,
) -> Result<Built, Error> {
    // The phase is all of it: `cargo metadata` at the start of the run, the build's database, the build
    // and the warm-up beside it, so that no work of a run falls outside every phase.
    let started = Instant::now();
    let build_env = build_database(run, setup, endpoint, ready).await?;
    let cargo_args = CargoArgs::new(run.cli, run.styles);
    let build = async {
        let binaries = if run.cli.cargo.doc {
            Vec::new()
        } else {
            cargo::build_tests(&cargo_args.for_build(), &build_env, &setup.project).await?
        };
        Ok::<_, Error>(binaries)
    };
    // Off the critical path, and done before the first clone.
    let all_templates = ready.all_templates();
    let warm = async { Ok(template::warm_relation_caches(endpoint, &all_templates).await?) };
    let (binaries, ()) = run
        .unless_stopped(async { tokio::try_join!(build, warm) })
        .await?;
    run.phase_finished(Phase::Build, setup.project.loaded_in + started.elapsed());
    Ok(Built {
        binaries,
        cargo_args,
        runs_doc_tests: run.cli.cargo.runs_doc_tests(),
    })
}

/// The build as cargo's target runner: cargo built the one binary it asks us to run.
pub(crate) fn given(run: &Run<'_>, binary: TestBinary) -> Built {
    Built {
        binaries: vec![binary],
        cargo_args: CargoArgs::new(run.cli, run.styles),
        runs_doc_tests: false,
    }
}

/// Creates the build's database from the first template; returns the variables that name it.
pub(crate) async fn build_database(
    run: &Run<'_>,
    setup: &Setup,
    endpoint: &Endpoint,
    ready: &Ready,
) -> Result<Vec<(String, String)>, Error> {
    let first_template = ready.first_template();
    run.unless_stopped(async {
        let databases = &ready.databases;
        let lease = databases.lease(&first_template, BUILD_DATABASE, Obtain::Fresh);
        lease.await.map_err(|source| TemplateError::Sql {
            name: BUILD_DATABASE.to_owned(),
            source,
        })
    })
    .await?;
    let url = endpoint.url(BUILD_DATABASE);
    let mut env = vec![("DATABASE_URL".to_owned(), url.clone())];
    if setup.config.database_env != "DATABASE_URL" {
        env.push((setup.config.database_env.clone(), url));
    }
    // `query!` against an extra database finds it migrated too, at its own variable.
    env.extend(ready.databases.extras().env(endpoint, BUILD_DATABASE));
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str], color: &'static str) -> CargoArgs {
        let cli = crate::cli::parse_from(["cargo", "pgtest"].iter().chain(argv).copied()).unwrap();
        CargoArgs::new(&cli, &Styles::new(color == "always", false))
    }

    #[test]
    fn the_colour_comes_once_and_last_and_never_eats_a_feature_named_like_it() {
        let cargo = args(
            &["--features", "never", "--features", "always", "--lib"],
            "never",
        );
        assert_eq!(
            cargo.for_doc_tests(),
            ["--features", "never", "--features", "always"],
            "a feature named like a colour is kept for the doc tests"
        );
        let build = cargo.for_build();
        assert_eq!(
            build,
            [
                "--features",
                "never",
                "--features",
                "always",
                "--lib",
                "--color",
                "never"
            ]
        );
        assert_eq!(build.iter().filter(|a| *a == "--color").count(), 1);
    }

    #[test]
    fn quiet_makes_the_build_quiet_but_not_the_doc_tests_output() {
        let cargo = args(&["-q", "--release"], "never");
        assert!(cargo.for_build().contains(&"--quiet".to_owned()));
        assert_eq!(cargo.for_doc_tests(), ["--release"]);
    }
}
