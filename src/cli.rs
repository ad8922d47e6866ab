//! The command line of `cargo pgtest`: clap types holding raw values, and turning the cargo-shaped ones back
//! into the arguments `cargo test` expects.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, ValueEnum};

const ABOUT: &str =
    "Run `cargo test` against a throwaway PostgreSQL: data in RAM, migrations applied once, \
a fresh database for every test";

const AFTER_HELP: &str = "\
Configuration lives in [package.metadata.pgtest] or [workspace.metadata.pgtest] of Cargo.toml.
Exit codes: 0 all passed, 2 setup or configuration error, 100 a test failed, 101 the build failed,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).";

/// `cargo pgtest [OPTIONS] [TESTNAME] [-- <test args>...]`
#[derive(Debug, Parser)]
#[command(
    name = "cargo-pgtest",
    bin_name = "cargo pgtest",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Cli {
    /// Run only the tests whose name contains TESTNAME (as `cargo test TESTNAME`)
    #[arg(value_name = "TESTNAME")]
    pub filter: Option<String>,

    #[command(flatten)]
    pub pgtest: PgtestArgs,

    #[command(flatten)]
    pub cargo: CargoArgs,

    /// Arguments for the test binaries, as for `cargo test -- ...` (--exact, --skip, --ignored,
    /// --include-ignored, --nocapture, --test-threads)
    #[arg(last = true, value_name = "TEST ARGS", allow_hyphen_values = true)]
    pub test_args: Vec<String>,
}

/// Options of cargo-pgtest itself.
#[derive(Debug, Args)]
#[command(next_help_heading = "PostgreSQL options")]
pub struct PgtestArgs {
    /// Put the cluster's data directory on disk instead of in RAM (tmpfs)
    #[arg(long)]
    pub no_tmpfs: bool,

    /// Build the cluster and run the migrations afresh, neither using nor filling the cache of migrated
    /// clusters under the target directory
    #[arg(long)]
    pub no_cache: bool,

    /// Neither read nor add to the history of test times under the target directory (which flags a test
    /// far slower than its recent runs as SLOWER)
    #[arg(long)]
    pub no_history: bool,

    /// How many tests run at once [default: number of CPUs]
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    pub jobs: Option<usize>,

    /// `test`: every test gets a fresh database cloned from the migrated template (one process per
    /// test); `shared`: one migrated database for the whole run, test binaries run as cargo test runs them
    #[arg(long, value_enum, value_name = "MODE")]
    pub isolation: Option<IsolationArg>,

    /// Kill a test that runs longer than this many seconds and report it as TIMEOUT
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub timeout: Option<std::time::Duration>,

    /// Coloring of cargo-pgtest's and cargo's output
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Show where the cluster lives, its log file and each phase as it happens
    #[arg(short, long)]
    pub verbose: bool,

    /// Also write every event as one JSON object per line to this file (`-` for stdout)
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Also write a JUnit XML report to this file
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,

    /// Print the PostgreSQL binaries cargo-pgtest would use, and exit
    #[arg(long)]
    pub which_postgres: bool,
}

/// The options of `cargo test` that cargo-pgtest forwards to cargo.
#[derive(Debug, Args, Default)]
#[command(next_help_heading = "Cargo options (forwarded to cargo test)")]
pub struct CargoArgs {
    /// Path to Cargo.toml
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,

    /// Package(s) to test
    #[arg(short, long, value_name = "SPEC")]
    pub package: Vec<String>,

    /// Test all packages in the workspace
    #[arg(long, alias = "all")]
    pub workspace: bool,

    /// Exclude packages from the test (with --workspace)
    #[arg(long, value_name = "SPEC")]
    pub exclude: Vec<String>,

    /// Test only this package's library
    #[arg(long)]
    pub lib: bool,

    /// Test only the specified binary
    #[arg(long, value_name = "NAME")]
    pub bin: Vec<String>,

    /// Test all binaries
    #[arg(long)]
    pub bins: bool,

    /// Test only the specified test target
    #[arg(long, value_name = "NAME")]
    pub test: Vec<String>,

    /// Test all targets that have `test = true` set
    #[arg(long)]
    pub tests: bool,

    /// Test only the specified example
    #[arg(long, value_name = "NAME")]
    pub example: Vec<String>,

    /// Test all examples
    #[arg(long)]
    pub examples: bool,

    /// Test all targets (doc tests excepted, as with cargo)
    #[arg(long)]
    pub all_targets: bool,

    /// Test only this library's documentation
    #[arg(long)]
    pub doc: bool,

    /// Space or comma separated list of features to activate
    #[arg(short = 'F', long, value_name = "FEATURES")]
    pub features: Vec<String>,

    /// Activate all available features
    #[arg(long)]
    pub all_features: bool,

    /// Do not activate the `default` feature
    #[arg(long)]
    pub no_default_features: bool,

    /// Build artifacts in release mode, with optimizations
    #[arg(short, long)]
    pub release: bool,

    /// Build artifacts with the specified profile
    #[arg(long, value_name = "PROFILE-NAME")]
    pub profile: Option<String>,

    /// Directory for all generated artifacts
    #[arg(long, value_name = "DIRECTORY")]
    pub target_dir: Option<PathBuf>,

    /// Number of parallel build jobs (cargo's own `-j`; `--jobs` sets how many tests run at once)
    #[arg(short = 'j', long = "build-jobs", value_name = "N")]
    pub build_jobs: Option<String>,

    /// Assert that Cargo.lock will remain unchanged
    #[arg(long)]
    pub locked: bool,

    /// Run without accessing the network
    #[arg(long)]
    pub offline: bool,

    /// Equivalent to specifying both --locked and --offline
    #[arg(long)]
    pub frozen: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolationArg {
    Test,
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            ColorChoice::Auto => "auto",
            ColorChoice::Always => "always",
            ColorChoice::Never => "never",
        }
    }
}

fn parse_positive(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{value}` is not a whole number of at least 1")),
    }
}

fn parse_seconds(value: &str) -> Result<std::time::Duration, String> {
    match value
        .parse::<f64>()
        .map(std::time::Duration::try_from_secs_f64)
    {
        Ok(Ok(duration)) if !duration.is_zero() => Ok(duration),
        _ => Err(format!("`{value}` is not a positive number of seconds")),
    }
}

/// Parses the process arguments. Cargo runs `cargo-pgtest pgtest ARGS...`; the extra `pgtest` is dropped so
/// that `cargo-pgtest ARGS...` works the same.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    if args.get(1).is_some_and(|arg| arg == "pgtest") {
        args.remove(1);
    }
    Cli::try_parse_from(args)
}

impl CargoArgs {
    /// Arguments choosing the packages and features, shared by `cargo test` and `cargo test --doc`.
    pub fn package_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(path) = &self.manifest_path {
            args.push("--manifest-path".to_owned());
            args.push(path.display().to_string());
        }
        push_each(&mut args, "--package", &self.package);
        push_flag(&mut args, "--workspace", self.workspace);
        push_each(&mut args, "--exclude", &self.exclude);
        push_each(&mut args, "--features", &self.features);
        push_flag(&mut args, "--all-features", self.all_features);
        push_flag(&mut args, "--no-default-features", self.no_default_features);
        args
    }

    /// Arguments shaping the build: profile, target directory, lock and network policy, build jobs.
    pub fn build_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        push_flag(&mut args, "--release", self.release);
        if let Some(profile) = &self.profile {
            args.extend(["--profile".to_owned(), profile.clone()]);
        }
        if let Some(dir) = &self.target_dir {
            args.extend(["--target-dir".to_owned(), dir.display().to_string()]);
        }
        if let Some(jobs) = &self.build_jobs {
            args.extend(["--jobs".to_owned(), jobs.clone()]);
        }
        push_flag(&mut args, "--locked", self.locked);
        push_flag(&mut args, "--offline", self.offline);
        push_flag(&mut args, "--frozen", self.frozen);
        args
    }

    /// Arguments choosing which targets get built and tested (empty: cargo test's default selection).
    pub fn target_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        push_flag(&mut args, "--lib", self.lib);
        push_each(&mut args, "--bin", &self.bin);
        push_flag(&mut args, "--bins", self.bins);
        push_each(&mut args, "--test", &self.test);
        push_flag(&mut args, "--tests", self.tests);
        push_each(&mut args, "--example", &self.example);
        push_flag(&mut args, "--examples", self.examples);
        push_flag(&mut args, "--all-targets", self.all_targets);
        args
    }

    /// Whether doc tests run, following cargo: with `--doc`, or when no target was chosen explicitly.
    pub fn runs_doc_tests(&self) -> bool {
        self.doc || self.target_args().is_empty()
    }
}

fn push_flag(args: &mut Vec<String>, flag: &str, on: bool) {
    if on {
        args.push(flag.to_owned());
    }
}

fn push_each(args: &mut Vec<String>, flag: &str, values: &[String]) {
    for value in values {
        args.push(flag.to_owned());
        args.push(value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        parse_from(std::iter::once("cargo-pgtest").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn timeouts_are_positive_and_representable() {
        assert_eq!(
            parse_seconds("1.5"),
            Ok(std::time::Duration::from_millis(1500))
        );
        for bad in ["0", "-1", "soon", "NaN", "inf", "1e300"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cargo_passes_the_subcommand_name_first() {
        let cli = parse(&["pgtest", "--no-tmpfs", "users"]);
        assert!(cli.pgtest.no_tmpfs);
        assert_eq!(cli.filter.as_deref(), Some("users"));
    }

    #[test]
    fn direct_invocation_works_too() {
        let cli = parse(&["--jobs", "3"]);
        assert_eq!(cli.pgtest.jobs, Some(3));
    }

    #[test]
    fn arguments_after_double_dash_go_to_the_test_binaries() {
        let cli = parse(&["pgtest", "name", "--", "--exact", "--skip", "slow"]);
        assert_eq!(cli.test_args, ["--exact", "--skip", "slow"]);
    }

    #[test]
    fn cargo_flags_are_forwarded_in_cargo_spelling() {
        let cli = parse(&[
            "pgtest",
            "-p",
            "a",
            "--features",
            "x y",
            "--release",
            "-j",
            "2",
            "--test",
            "it",
            "--locked",
        ]);
        assert_eq!(
            cli.cargo.package_args(),
            ["--package", "a", "--features", "x y"]
        );
        assert_eq!(
            cli.cargo.build_args(),
            ["--release", "--jobs", "2", "--locked"]
        );
        assert_eq!(cli.cargo.target_args(), ["--test", "it"]);
        assert!(!cli.cargo.runs_doc_tests());
    }

    #[test]
    fn doc_tests_run_by_default_like_cargo() {
        assert!(parse(&["pgtest"]).cargo.runs_doc_tests());
        assert!(parse(&["pgtest", "--lib", "--doc"]).cargo.runs_doc_tests());
    }

    #[test]
    fn bad_jobs_and_isolation_values_are_rejected() {
        let bad =
            |args: &[&str]| parse_from(std::iter::once("cargo-pgtest").chain(args.iter().copied()));
        assert!(bad(&["--jobs", "0"])
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
        assert!(bad(&["--jobs", "many"]).is_err());
        assert!(bad(&["--isolation", "none"])
            .unwrap_err()
            .to_string()
            .contains("test"));
    }
}
