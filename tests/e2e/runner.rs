//! cargo-pgtest as cargo's target runner, end to end: plain `cargo test`, the command lines editors issue
//! (rust-analyzer's ▶ Run Test and test explorer, RustRover's), `cargo run` left alone, `--list`, Ctrl-C,
//! and `cargo llvm-cov` over the runner. Every run is on a copy of `fixtures/runner-probe`, whose tests
//! each record themselves and check they are alone in their database (and note its name in `PROBE_DIR`).

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::{poll, postgres_available, processes_mentioning, skip, Project, BINARY};

crate::tests! {
    plain_cargo_test_runs_every_test_in_its_own_database,
    cargo_run_and_listing_are_left_to_the_program,
    editor_run_buttons_replayed_run_each_test_in_its_own_database,
    test_explorers_get_libtest_json_and_a_database_per_test,
    ctrl_c_leaves_nothing_behind,
    a_tool_that_wraps_cargo_test_goes_through_the_runner,
    llvm_cov_over_the_runner_sees_what_only_database_tests_reach,
}

/// A private copy of the probe project ([`Project::copy_of`]) with cargo-pgtest configured as its runner in
/// `.cargo/config.toml`, as the README says.
struct Probe(Project);

impl std::ops::Deref for Probe {
    type Target = Project;

    fn deref(&self) -> &Project {
        &self.0
    }
}

impl Probe {
    fn new() -> Probe {
        let project = Project::copy_of("runner-probe");
        std::fs::create_dir(project.dir.join(".cargo")).unwrap();
        let config = format!("[target.'cfg(all())']\nrunner = [{BINARY:?}, \"runner\"]\n");
        std::fs::write(project.dir.join(".cargo/config.toml"), config).unwrap();
        Probe(project)
    }

    /// `cargo ARGS` in the project, building into a target directory of its own: copies of one package
    /// building into a shared one replace each other's test binaries while a runner is about to start
    /// them ("could not start …: No such file"). The probe has no dependencies, so it builds in a second.
    fn cargo(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO"));
        crate::support::lean_builds(&mut command)
            .args(args)
            .current_dir(&self.dir)
            .env("CARGO_TARGET_DIR", self.dir.join("target"))
            .env("PGTEST_TMPDIR", self.cluster_parent.path())
            .env("PROBE_DIR", &self.probe_dir)
            .env("CARGO_TERM_COLOR", "never")
            .env_remove("RUNNER_PROBE_FAIL")
            .env_remove("RUNNER_PROBE_SLEEP")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        self.cargo(args)
            .envs(envs.iter().copied())
            .output()
            .unwrap()
    }

    /// The databases the tests noted, by test.
    fn databases(&self) -> Vec<(String, String)> {
        let mut noted: Vec<(String, String)> = std::fs::read_dir(&self.probe_dir)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let test = entry.file_name().to_string_lossy().into_owned();
                (test, std::fs::read_to_string(entry.path()).unwrap())
            })
            .collect();
        noted.sort();
        noted
    }

    /// Whether the cluster's parent directory is empty again and no process runs from it.
    fn nothing_left(&self) -> bool {
        let parent = self.cluster_parent.path();
        let empty = std::fs::read_dir(parent).unwrap().next().is_none();
        empty && processes_mentioning(parent).is_empty()
    }
}

/// A run's exit code and output, for a failed assertion's message (libtest-mimic shows what a test prints).
fn described(output: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// (test, result) pairs as the parsed output holds them.
fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let own = |(test, result): &(&str, &str)| (test.to_string(), result.to_string());
    pairs.iter().map(own).collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `test NAME ... RESULT` lines libtest's pretty format prints, as (name, result).
fn results(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("test ")?.split_once(" ... "))
        .map(|(name, result)| (name.to_owned(), result.to_owned()))
        .collect()
}

/// The tests of `tests/db.rs` that run by default, each noting its database.
const DB_TESTS: [&str; 5] = [
    "fails_on_request",
    "first_is_alone",
    "nested::third_is_alone",
    "second_is_alone",
    "sleeps_on_request",
];

/// Every database a run's tests noted is a different one: each test had its own.
fn each_alone(probe: &Probe, tests: &[&str]) {
    let noted = probe.databases();
    let names: Vec<&str> = noted.iter().map(|(test, _)| test.as_str()).collect();
    assert_eq!(names, tests, "the tests that noted their database");
    let distinct: BTreeSet<&String> = noted.iter().map(|(_, database)| database).collect();
    assert_eq!(
        distinct.len(),
        noted.len(),
        "a database per test: {noted:?}"
    );
}

fn plain_cargo_test_runs_every_test_in_its_own_database() {
    if !postgres_available() {
        return;
    }
    let probe = Probe::new();
    let output = probe.run(&["test"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", described(&output));
    let text = stdout(&output);
    let mut ran = results(&text);
    ran.sort();
    let expected = [
        ("fails_on_request", "ok"),
        ("first_is_alone", "ok"),
        ("ignored_unless_asked", "ignored"),
        ("nested::third_is_alone", "ok"),
        ("second_is_alone", "ok"),
        ("sleeps_on_request", "ok"),
        ("tests::unit_test_gets_its_own_database", "ok"),
    ];
    assert_eq!(ran, owned(&expected));
    assert!(
        text.contains(
            "test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out;"
        ),
        "libtest's result line"
    );
    each_alone(&probe, &DB_TESTS);
    assert!(probe.nothing_left(), "the cluster is gone");

    // A failure: libtest's FAILED line, its output under `failures:`, and cargo's exit code 101.
    let output = probe.run(&["test", "--test", "db"], &[("RUNNER_PROBE_FAIL", "1")]);
    assert_eq!(output.status.code(), Some(101), "{}", described(&output));
    let text = stdout(&output);
    assert!(text.contains("test fails_on_request ... FAILED"), "{text}");
    assert!(
        text.contains("---- fails_on_request stdout ----\nfailing as asked"),
        "{text}"
    );
    assert!(
        text.contains("\nfailures:\n    fails_on_request\n"),
        "{text}"
    );
    assert!(
        text.contains("test result: FAILED. 4 passed; 1 failed; 1 ignored;"),
        "{text}"
    );
}

fn cargo_run_and_listing_are_left_to_the_program() {
    let probe = Probe::new();
    let output = probe.run(&["run", "--quiet", "--bin", "runner-probe"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", described(&output));
    assert_eq!(stdout(&output), "runner-probe main: no DATABASE_URL\n");

    let output = probe.run(&["test", "--test", "db", "--", "--list"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", described(&output));
    let text = stdout(&output);
    assert!(text.contains("first_is_alone: test\n"), "{text}");
    assert!(text.contains("nested::third_is_alone: test\n"), "{text}");
    assert!(
        text.contains("6 tests, 0 benchmarks"),
        "libtest's own list: {text}"
    );
    assert!(probe.databases().is_empty(), "no test ran");
}

fn editor_run_buttons_replayed_run_each_test_in_its_own_database() {
    if !postgres_available() {
        return;
    }
    let probe = Probe::new();
    // rust-analyzer's ▶ Run Test on one test, then on a module (older versions said --show-output).
    let one = [
        "test",
        "--package",
        "runner-probe",
        "--test",
        "db",
        "--",
        "nested::third_is_alone",
        "--exact",
        "--nocapture",
    ];
    let output = probe.run(&one, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", described(&output));
    let text = stdout(&output);
    assert!(text.contains("running 1 test\n"), "{text}");
    assert_eq!(
        results(&text),
        [("nested::third_is_alone".to_owned(), "ok".to_owned())]
    );
    let module = [
        "test",
        "--package",
        "runner-probe",
        "--test",
        "db",
        "--",
        "nested",
        "--show-output",
    ];
    let output = probe.run(&module, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", described(&output));
    assert!(
        stdout(&output).contains("\nsuccesses:\n"),
        "--show-output's section"
    );
    // A unit test of the library, as rust-analyzer runs it.
    let lib = [
        "test",
        "--package",
        "runner-probe",
        "--lib",
        "--",
        "tests::unit_test_gets_its_own_database",
        "--exact",
        "--nocapture",
    ];
    let output = probe.run(&lib, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", described(&output));
}

fn test_explorers_get_libtest_json_and_a_database_per_test() {
    if !postgres_available() {
        return;
    }
    let probe = Probe::new();
    // rust-analyzer's test explorer and RustRover: libtest's JSON, one object per line.
    let explorer = [
        "test",
        "--package",
        "runner-probe",
        "--test",
        "db",
        "--",
        "-Z",
        "unstable-options",
        "--format=json",
        "--show-output",
    ];
    let rustrover = [
        "test",
        "--color=always",
        "--package",
        "runner-probe",
        "--test",
        "db",
        "--no-fail-fast",
        "--",
        "--format=json",
        "--exact",
        "-Z",
        "unstable-options",
        "--show-output",
    ];
    for (args, envs) in [
        (&explorer[..], &[][..]),
        (&rustrover[..], &[("RUSTC_BOOTSTRAP", "1")][..]),
    ] {
        std::fs::remove_dir_all(&probe.probe_dir).unwrap();
        std::fs::create_dir(&probe.probe_dir).unwrap();
        let output = probe.run(args, envs);
        assert_eq!(output.status.code(), Some(0), "{}", described(&output));
        let events: Vec<serde_json::Value> = stdout(&output)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
            .collect();
        let mut ends: Vec<(String, String)> = events
            .iter()
            .filter(|e| e["type"] == "test" && e["event"] != "started")
            .map(|e| {
                (
                    e["name"].as_str().unwrap().into(),
                    e["event"].as_str().unwrap().into(),
                )
            })
            .collect();
        ends.sort();
        let expected = [
            ("fails_on_request", "ok"),
            ("first_is_alone", "ok"),
            ("ignored_unless_asked", "ignored"),
            ("nested::third_is_alone", "ok"),
            ("second_is_alone", "ok"),
            ("sleeps_on_request", "ok"),
        ];
        assert_eq!(ends, owned(&expected), "one ok/failed/ignored per test");
        assert_eq!(events.last().unwrap()["event"], "ok");
        each_alone(&probe, &DB_TESTS);
    }
}

fn ctrl_c_leaves_nothing_behind() {
    if !postgres_available() {
        return;
    }
    let probe = Probe::new();
    let mut command = probe.cargo(&["test", "--test", "db", "--", "sleeps_on_request"]);
    command
        .env("RUNNER_PROBE_SLEEP", "60")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = command.spawn().unwrap();
    let noted = probe.probe_dir.join("sleeps_on_request");
    let started = poll(Duration::from_secs(300), || match noted.exists() {
        true => Ok(()),
        false => Err("the test never started".to_owned()),
    });
    started.unwrap();
    // A terminal's Ctrl-C: SIGINT to the whole foreground process group.
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGINT).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success(), "{}", described(&output));
    let gone = poll(Duration::from_secs(30), || match probe.nothing_left() {
        true => Ok(()),
        false => Err(format!(
            "left behind: {:?}",
            processes_mentioning(probe.cluster_parent.path())
        )),
    });
    gone.unwrap_or_else(|left| panic!("{left}\n{}", described(&output)));
}

/// Whether the cargo subcommand `tool` (`cargo-<tool>`) is installed; outside CI a test without it skips.
fn cargo_tool(tool: &str) -> bool {
    let found = Command::new(env!("CARGO"))
        .args([tool, "--version"])
        .output();
    let found = found.is_ok_and(|output| output.status.success());
    if !found {
        skip(&format!(
            "cargo-{tool} is missing (cargo install cargo-{tool} --locked)"
        ));
    }
    found
}

fn a_tool_that_wraps_cargo_test_goes_through_the_runner() {
    if !postgres_available() || !cargo_tool("hack") {
        return;
    }
    let probe = Probe::new();
    let output = probe.run(&["hack", "test", "--test", "db"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", described(&output));
    assert!(stdout(&output).contains("test result: ok. 5 passed; 0 failed; 1 ignored;"));
    each_alone(&probe, &DB_TESTS);
}

fn llvm_cov_over_the_runner_sees_what_only_database_tests_reach() {
    if !postgres_available() || !cargo_tool("llvm-cov") {
        return;
    }
    let probe = Probe::new();
    let lcov = probe.probe_dir.with_file_name("coverage.lcov");
    let lcov_arg = lcov.to_string_lossy().into_owned();
    let args = [
        "llvm-cov",
        "--test",
        "db",
        "--lcov",
        "--output-path",
        &lcov_arg,
    ];
    let output = probe.run(&args, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", described(&output));
    assert_eq!(
        probe.databases().len(),
        5,
        "the tests ran through the runner"
    );
    // The line of `visit_alone` that inserts: reached only by a test with a database.
    let source = std::fs::read_to_string(probe.dir.join("src/lib.rs")).unwrap();
    let line = 1 + source
        .lines()
        .position(|l| l.contains("INSERT INTO visits"))
        .unwrap();
    let report = std::fs::read_to_string(&lcov).unwrap();
    let lib = report
        .split("end_of_record")
        .find(|record| record.contains("runner-probe/src/lib.rs"))
        .expect("src/lib.rs in the report");
    let hits: u64 = lib
        .lines()
        .find_map(|l| l.strip_prefix(&format!("DA:{line},")))
        .and_then(|count| count.split(',').next()?.parse().ok())
        .unwrap_or(0);
    assert!(hits >= 5, "line {line} reached {hits} times:\n{lib}");
}
