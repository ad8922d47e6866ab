//! Unit tests of [`super`]: parsing the command line.
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
fn psql_and_serve_are_commands_and_other_words_stay_filters() {
    let cli = parse(&[
        "pgtest", "psql", "app::it", "fails", "--", "-At", "-c", "SELECT 1",
    ]);
    match cli.command {
        Some(Command::Psql(args)) => {
            assert_eq!(args.name, ["app::it", "fails"]);
            assert_eq!(args.psql_args, ["-At", "-c", "SELECT 1"]);
        }
        other => panic!("expected psql, got {other:?}"),
    }
    match parse(&["pgtest", "serve", "--port", "5433"]).command {
        Some(Command::Serve(args)) => assert_eq!(args.port, Some(5433)),
        other => panic!("expected serve, got {other:?}"),
    }
    let cli = parse(&["pgtest", "users"]);
    assert!(cli.command.is_none());
    assert_eq!(cli.filter.as_deref(), Some("users"));
    assert_eq!(
        cli.pgtest.keep_failed, 10,
        "failed tests' databases are kept by default"
    );
}

#[test]
fn cargo_test_parity_flags_reach_cargo() {
    let cli = parse(&[
        "pgtest",
        "--target",
        "x86_64-unknown-linux-gnu",
        "--config",
        "build.jobs=1",
        "-Z",
        "unstable-options",
        "--timings=html",
        "-vv",
        "--bench",
        "load",
        "--benches",
        "--fail-fast",
        "--no-run",
    ]);
    assert_eq!(
        cli.cargo.build_args(),
        [
            "--target",
            "x86_64-unknown-linux-gnu",
            "--config",
            "build.jobs=1",
            "-Z",
            "unstable-options",
            "--timings=html",
            "-vv"
        ]
    );
    assert_eq!(cli.cargo.target_args(), ["--bench", "load", "--benches"]);
    assert!(cli.pgtest.verbose && cli.pgtest.fail_fast && cli.pgtest.no_run);
    let quiet = parse(&["pgtest", "-q", "--timings", "--no-fail-fast"]);
    assert_eq!(quiet.cargo.build_args(), ["--timings", "--quiet"]);
    assert!(!quiet.pgtest.fail_fast && !quiet.pgtest.verbose);
    assert!(
        !parse(&["pgtest", "--fail-fast", "--no-fail-fast"])
            .pgtest
            .fail_fast
    );
}

#[test]
fn list_is_a_leading_word_and_takes_a_runs_arguments() {
    let cli = parse(&["pgtest", "list", "--json", "-p", "app", "users_"]);
    assert!(cli.list);
    assert_eq!(cli.pgtest.json.as_deref(), Some(std::path::Path::new("-")));
    assert_eq!(cli.filter.as_deref(), Some("users_"));
    assert_eq!(cli.cargo.package, ["app"]);
    assert!(cli.command.is_none(), "list's arguments are the run's");
    let filter = parse(&["pgtest", "--", "list"]);
    assert!(!filter.list);
    assert_eq!(filter.test_args, ["list"]);
    let both = parse(&["pgtest", "list", "--no-tests", "pass", "--", "--exact", "a"]);
    assert_eq!(
        (both.pgtest.no_tests, &both.test_args[..]),
        (NoTests::Pass, &["--exact".to_owned(), "a".to_owned()][..])
    );
}

#[test]
fn list_after_options_says_where_it_goes() {
    let error = parse_from(["cargo-pgtest", "pgtest", "--jobs", "2", "list"]).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("`list` comes first") && message.contains("-- list"),
        "{message}"
    );
    assert!(error.use_stderr(), "an error, exit code 2");
}

#[test]
fn the_command_line_passes_clap_s_own_checks() {
    Cli::command().debug_assert();
}

#[test]
fn help_lists_every_command() {
    let help = Cli::command().render_help().to_string();
    let commands = help
        .split_once("Commands:")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no commands in\n{help}"));
    for command in ["list", "psql", "serve", "nextest", "completions"] {
        assert!(
            commands
                .lines()
                .any(|line| line.trim_start().starts_with(&format!("{command} "))),
            "{command} missing from\n{help}"
        );
    }
}

#[test]
fn no_tests_fails_by_default_as_nextest_does() {
    assert_eq!(parse(&[]).pgtest.no_tests, NoTests::Fail);
    assert_eq!(
        parse(&["--no-tests", "warn"]).pgtest.no_tests,
        NoTests::Warn
    );
    assert!(parse_from(["cargo-pgtest", "--no-tests", "maybe"]).is_err());
}

#[test]
fn completions_take_a_shell() {
    match parse(&["pgtest", "completions", "zsh"]).command {
        Some(Command::Completions(args)) => assert_eq!(args.shell, clap_complete::Shell::Zsh),
        other => panic!("expected completions, got {other:?}"),
    }
    assert!(parse_from(["cargo-pgtest", "completions", "tcsh"]).is_err());
}

#[test]
fn doc_tests_run_by_default_like_cargo() {
    assert!(parse(&["pgtest"]).cargo.runs_doc_tests());
    assert!(parse(&["pgtest", "--lib", "--doc"]).cargo.runs_doc_tests());
}

#[test]
fn fetch_postgres_takes_a_major_version() {
    assert_eq!(
        parse(&["pgtest", "--fetch-postgres", "17"])
            .pgtest
            .fetch_postgres,
        Some(17)
    );
    assert_eq!(parse(&["pgtest"]).pgtest.fetch_postgres, None);
    let bad = parse_from(["cargo-pgtest", "--fetch-postgres", "17.2"]);
    assert!(bad.is_err());
}

#[test]
fn nextest_takes_every_argument_after_it_for_nextest() {
    let cli = parse(&[
        "pgtest",
        "--no-tmpfs",
        "nextest",
        "run",
        "-E",
        "test(users_)",
        "--retries",
        "2",
        "--",
        "--exact",
    ]);
    assert!(cli.pgtest.no_tmpfs);
    assert_eq!(cli.filter, None);
    let args = cli.nextest().expect("the nextest subcommand");
    assert_eq!(
        args.args,
        [
            "run",
            "-E",
            "test(users_)",
            "--retries",
            "2",
            "--",
            "--exact"
        ]
    );
    assert!(parse(&["pgtest", "users_"]).nextest().is_none());
    assert_eq!(parse(&["pgtest", "help"]).filter.as_deref(), Some("help"));
    assert_eq!(
        parse(&["pgtest", "nextest"])
            .nextest()
            .map(|a| a.args.len()),
        Some(0)
    );
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
