//! Shipping cargo-pgtest, end to end with the real binary: the GitHub job summary (`GITHUB_STEP_SUMMARY`) of
//! runs of `fixtures/failing` and `fixtures/flaky-retry`, `--no-tests` and its exit codes, `CLICOLOR_FORCE`
//! in a pipe, the shell completions (bash and fish completing for real, zsh parsing), `action.yml`:
//! valid YAML whose inputs are the README's, whose scripts parse and take inputs only from the environment,
//! and whose steps, run here with a stand-in cargo, pass the inputs on as documented; and, as cargo's target
//! runner, neither `--no-tests` nor the job summary (a test binary has neither).
//!
//! Tests that need PostgreSQL, fish or zsh are skipped with a note when they are missing, except in CI, where
//! that fails.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_yaml_ng::Value;

use crate::support::{postgres_available, skip, Project, BINARY, REPO};

crate::tests! {
    the_job_summary_of_a_failing_run_shows_each_failure_with_its_first_lines,
    the_job_summary_lists_flaky_tests_beside_the_failure,
    without_github_step_summary_nothing_is_written_and_list_writes_none,
    a_run_that_selects_no_test_exits_as_no_tests_says,
    clicolor_force_colours_a_pipe_and_no_color_still_wins,
    every_shell_gets_a_completion_script,
    bash_completes_flags_commands_and_values,
    fish_completes_cargo_pgtest_and_zsh_parses_its_script,
    action_yml_is_a_composite_action_with_the_inputs_the_readme_documents,
    every_input_is_used_and_scripts_read_them_from_the_environment_only,
    the_run_step_passes_each_input_on_and_splits_args_as_a_shell_would,
    the_paths_step_finds_the_target_directory_and_keys_the_cache_on_lock_files_and_migrations,
    as_cargo_s_runner_a_binary_that_selects_no_test_passes_and_writes_no_job_summary,
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

/// Whether `program` is on PATH; skipped (failing in CI) when not.
fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        skip(&format!("{program} is not installed"));
    }
    found
}

/// What a command printed and how it ended, shown whole when a check fails.
struct Ran {
    command: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn of(command: &mut Command) -> Ran {
        let shown = format!("{command:?}");
        let Output {
            status,
            stdout,
            stderr,
        } = command
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{shown}: {e}"));
        Ran {
            command: shown,
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    fn expect_code(&self, code: i32) -> &Ran {
        assert_eq!(self.code, Some(code), "exit code of {self}");
        self
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nexit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// The run's command: as `Project::command`, with durations redacted.
fn command(project: &Project, args: &[&str]) -> Command {
    let mut command = project.command(args);
    command.env("CARGO_PGTEST_REDACT", "1");
    command
}

/// Where a project's runs write their job summary: beside its copy, not in it.
fn summary_path(project: &Project) -> PathBuf {
    project.probe_dir.with_file_name("step-summary.md")
}

/// A run with `GITHUB_STEP_SUMMARY` naming a file that an earlier step already wrote to; the run and the
/// file's text after it.
fn run_with_summary(project: &Project, args: &[&str]) -> (Ran, String) {
    let path = summary_path(project);
    fs::write(&path, "earlier step\n").unwrap();
    let ran = Ran::of(command(project, args).env("GITHUB_STEP_SUMMARY", &path));
    let text = fs::read_to_string(&path).unwrap();
    (ran, text)
}

/// Fails unless `text` holds each of `parts`, in this order.
fn assert_in_order(text: &str, parts: &[&str], context: &dyn std::fmt::Display) {
    let mut rest = text;
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => panic!("{part:?} missing (or out of order) in\n{text}\n\n{context}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The job summary

fn the_job_summary_of_a_failing_run_shows_each_failure_with_its_first_lines() {
    if !postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    let (ran, text) = run_with_summary(&project, &[]);
    ran.expect_code(100);
    assert_in_order(
        &text,
        &[
            "earlier step\n### cargo pgtest: 3 of 4 tests did not pass\n\n",
            "1 passed, 3 failed, 0 ignored, 0 filtered out (of the failed: 1 crashed) in 0.000s\n\n",
            "#### Failures\n\n",
            "**SIGABRT** `failing::outcomes aborts` after 0.000s\n\n```text\nabout to abort\n```\n\n",
            "#### Slowest\n\n| test | time |\n|---|---:|\n",
            "#### Phases\n\n| build | cluster boot | migrations+fixtures | tests | teardown |\n\
             |---:|---:|---:|---:|---:|\n| 0.000s | 0.000s | 0.000s | 0.000s | 0.000s |\n\n",
            "**Cluster**: PostgreSQL ",
            ", peak RAM ",
        ],
        &ran,
    );
    for failed in ["fails_an_assertion", "panics"] {
        let heading = format!("**FAIL** `failing::outcomes {failed}` after 0.000s\n\n```text\n");
        assert!(text.contains(&heading), "{heading:?} missing in\n{text}");
    }
    assert!(text.contains("expected 3 rows, found 4"), "{text}");
    assert!(
        text.contains("the flux capacitor ran out of plutonium"),
        "{text}"
    );
    assert!(!text.contains("#### Flaky"), "{text}");
    assert!(text.ends_with(" MiB)\n\n"), "{text:?}");
}

fn the_job_summary_lists_flaky_tests_beside_the_failure() {
    if !postgres_available() {
        return;
    }
    let project = Project::copy_of("flaky-retry");
    let (ran, text) = run_with_summary(&project, &["--retries", "1"]);
    ran.expect_code(100);
    assert_in_order(
        &text,
        &[
            "earlier step\n### cargo pgtest: 1 of 4 tests did not pass\n\n",
            "3 passed (2 flaky), 1 failed, 0 ignored, 0 filtered out in 0.000s\n\n",
            "#### Failures\n\n**FAIL** `flaky-retry::flaky always_fails` after 0.000s\n\n```text\n",
            "attempt 1 fails on purpose",
            "#### Flaky\n\nPassed on a retry; they do not fail the run.\n\n| test | failed attempts |\n|---|---:|\n",
            "#### Phases\n\n",
        ],
        &ran,
    );
    for flaky in ["fails_once_then_passes", "sqlx_fails_once_then_passes"] {
        let row = format!("| `flaky-retry::flaky {flaky}` | 1 |\n");
        assert!(text.contains(&row), "{row:?} missing in\n{text}");
    }
}

fn without_github_step_summary_nothing_is_written_and_list_writes_none() {
    if !postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    let path = summary_path(&project);
    let listed = Ran::of(command(&project, &["list"]).env("GITHUB_STEP_SUMMARY", &path));
    listed.expect_code(0);
    assert!(!path.exists(), "list wrote a job summary\n{listed}");
    // Empty, as outside GitHub Actions: no file is made in the working directory.
    let ran = Ran::of(command(&project, &["passes"]).env("GITHUB_STEP_SUMMARY", ""));
    ran.expect_code(0);
    assert!(fs::read_dir(&project.dir).unwrap().all(|entry| !entry
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".md")));
}

// ---------------------------------------------------------------------------------------------------------
// --no-tests, and colour forced into a pipe

fn a_run_that_selects_no_test_exits_as_no_tests_says() {
    if !postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    let message = "no tests to run (4 filtered out, 0 ignored)";
    for (args, code, said) in [
        (&["nothing_matches"][..], 4, Some("error:")),
        (
            &["nothing_matches", "--no-tests", "fail"][..],
            4,
            Some("error:"),
        ),
        (
            &["nothing_matches", "--no-tests", "warn"][..],
            0,
            Some("warning:"),
        ),
        (&["nothing_matches", "--no-tests", "pass"][..], 0, None),
    ] {
        let ran = Ran::of(&mut command(&project, args));
        ran.expect_code(code);
        match said {
            Some(level) => assert!(
                ran.stderr.contains(&format!("{level} {message}")),
                "{level} {message}\n{ran}"
            ),
            None => assert!(!ran.stderr.contains(message), "{ran}"),
        }
        assert!(
            ran.stderr
                .contains("0 passed, 0 failed, 0 ignored, 4 filtered out"),
            "{ran}"
        );
    }
    // A run that does select tests is not concerned, and the job summary says when none ran.
    Ran::of(&mut command(&project, &["passes", "--no-tests", "fail"])).expect_code(0);
    let (ran, text) = run_with_summary(&project, &["nothing_matches"]);
    ran.expect_code(4);
    assert!(
        text.starts_with("earlier step\n### cargo pgtest: no tests ran\n\n0 passed, 0 failed, 0 ignored, 4 filtered out in"),
        "{text}"
    );
}

fn clicolor_force_colours_a_pipe_and_no_color_still_wins() {
    if !postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    let forced = |no_color: Option<&str>| {
        let mut command = command(&project, &["passes"]);
        command
            .env_remove("NO_COLOR")
            .env_remove("CARGO_TERM_COLOR")
            .env("CLICOLOR_FORCE", "1");
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        Ran::of(&mut command)
    };
    let ran = forced(None);
    ran.expect_code(0);
    let summary = ran
        .stderr
        .lines()
        .find(|l| l.contains("Summary"))
        .unwrap_or_default();
    assert!(
        summary.contains("\u{1b}["),
        "a coloured summary line\n{ran}"
    );
    let ran = forced(Some("1"));
    ran.expect_code(0);
    assert!(
        !ran.stderr.contains("\u{1b}["),
        "NO_COLOR comes first\n{ran}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Shell completions

fn completions(shell: &str) -> String {
    let ran = Ran::of(Command::new(BINARY).args(["pgtest", "completions", shell]));
    ran.expect_code(0);
    assert!(ran.stdout.len() > 1000, "{ran}");
    for known in ["--partition", "--no-tests", "--manifest-path"] {
        let name = known.trim_start_matches('-');
        assert!(ran.stdout.contains(name), "{shell}: no {known}\n{ran}");
    }
    ran.stdout
}

fn every_shell_gets_a_completion_script() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        completions(shell);
    }
    let unknown = Ran::of(Command::new(BINARY).args(["pgtest", "completions", "tcsh"]));
    unknown.expect_code(2);
}

/// What bash completes for `words` (the last one being completed), with the script loaded the way cargo's
/// own completion hands `cargo pgtest …` over: the words from `cargo-pgtest` on.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let program = r#"source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
_cargo__pgtest cargo-pgtest "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}""#;
    let ran = Ran::of(
        Command::new("bash")
            .args(["-c", program, "bash"])
            .arg(script)
            .args(words),
    );
    ran.expect_code(0);
    ran.stdout.lines().map(str::to_owned).collect()
}

fn bash_completes_flags_commands_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cargo-pgtest.bash");
    fs::write(&script, completions("bash")).unwrap();
    assert_eq!(
        bash_completes(&script, &["cargo-pgtest", "--parti"]),
        ["--partition"]
    );
    assert_eq!(
        bash_completes(&script, &["cargo-pgtest", "comp"]),
        ["completions"]
    );
    assert_eq!(
        bash_completes(&script, &["cargo-pgtest", "--no-tests", ""]),
        ["fail", "warn", "pass"]
    );
    assert_eq!(
        bash_completes(&script, &["cargo-pgtest", "list", "--no-tes"]),
        ["--no-tests"]
    );
    let shells = bash_completes(&script, &["cargo-pgtest", "completions", ""]);
    assert!(shells.contains(&"powershell".to_owned()), "{shells:?}");
}

fn fish_completes_cargo_pgtest_and_zsh_parses_its_script() {
    if have("fish") {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("cargo-pgtest.fish");
        fs::write(&script, completions("fish")).unwrap();
        let complete = |line: &str| {
            let program = format!("source {}; complete -C '{line}'", script.display());
            let ran = Ran::of(Command::new("fish").args(["--no-config", "-c", &program]));
            ran.expect_code(0);
            ran.stdout
        };
        assert!(complete("cargo pgtest --parti").starts_with("--partition\t"));
        let values = complete("cargo pgtest --no-tests ");
        let values: BTreeSet<&str> = values.lines().collect();
        assert_eq!(values, BTreeSet::from(["fail", "warn", "pass"]));
        assert!(complete("cargo pgtest list --no-tes").starts_with("--no-tests\t"));
    }
    if have("zsh") {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("_cargo-pgtest");
        fs::write(&script, completions("zsh")).unwrap();
        Ran::of(Command::new("zsh").arg("-n").arg(&script)).expect_code(0);
    }
}

// ---------------------------------------------------------------------------------------------------------
// action.yml

fn action() -> Value {
    let text = fs::read_to_string(Path::new(REPO).join("action.yml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("action.yml is not valid YAML: {e}"))
}

/// The names in the first column of the README's table of the action's inputs.
fn readme_inputs() -> BTreeSet<String> {
    let readme = fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let section = readme
        .split_once("### The GitHub Action")
        .expect("README has a section on the action")
        .1;
    let table = section
        .split_once("| input | meaning | default |")
        .expect("the section has a table of inputs")
        .1;
    table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let name = line.split('|').nth(1).unwrap().trim();
            name.trim_matches('`').to_owned()
        })
        .collect()
}

fn action_yml_is_a_composite_action_with_the_inputs_the_readme_documents() {
    let action = action();
    assert_eq!(action["runs"]["using"].as_str(), Some("composite"));
    let inputs = action["inputs"].as_mapping().expect("inputs");
    let declared: BTreeSet<String> = inputs
        .iter()
        .map(|(name, _)| name.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        declared,
        readme_inputs(),
        "action.yml's inputs against README's table"
    );
    for (name, input) in inputs {
        let description = input["description"].as_str().unwrap_or_default();
        assert!(description.len() > 20, "{name:?} has no real description");
        assert!(
            input["default"].as_str().is_some(),
            "{name:?} has no default"
        );
    }
    for expected in [
        "partition",
        "retries",
        "junit",
        "html",
        "args",
        "version",
        "postgres",
        "cache",
    ] {
        assert!(declared.contains(expected), "no input {expected}");
    }
}

/// Every step of the action.
fn steps() -> Vec<Value> {
    action()["runs"]["steps"].as_sequence().unwrap().clone()
}

/// The `${{ inputs.NAME }}` names `text` uses.
fn inputs_used(text: &str) -> BTreeSet<String> {
    text.split("inputs.")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect()
        })
        .collect()
}

fn every_input_is_used_and_scripts_read_them_from_the_environment_only() {
    let text = fs::read_to_string(Path::new(REPO).join("action.yml")).unwrap();
    let used = inputs_used(&text);
    assert_eq!(
        used,
        readme_inputs(),
        "inputs used by the steps against README's table"
    );
    let mut scripts = 0;
    for step in steps() {
        let Some(script) = step["run"].as_str() else {
            assert!(
                step["uses"].as_str().is_some(),
                "a step runs or uses: {step:?}"
            );
            continue;
        };
        scripts += 1;
        assert_eq!(step["shell"].as_str(), Some("bash"), "{step:?}");
        // An expression in a script is pasted into it before bash reads it: an input holding quotes or
        // `$(…)` would run as code. Inputs reach scripts through `env:`.
        assert!(
            !script.contains("${{"),
            "an expression inside a script:\n{script}"
        );
        let ran = Ran::of(Command::new("bash").args(["-n", "-c", script]));
        assert_eq!(
            ran.code,
            Some(0),
            "bash cannot parse a step of action.yml\n{ran}"
        );
    }
    assert!(scripts >= 3, "{scripts} scripts");
    for step in steps()
        .iter()
        .filter(|step| step["uses"].as_str().is_some())
    {
        let uses = step["uses"].as_str().unwrap();
        assert!(
            uses.starts_with("actions/cache/") || uses.starts_with("actions/upload-artifact@"),
            "{uses}"
        );
        let version = uses.rsplit_once('@').map(|(_, v)| v);
        assert_eq!(version, Some("v4"), "{uses}");
    }
}

/// The step named `name`.
fn step(name: &str) -> Value {
    steps()
        .into_iter()
        .find(|step| step["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no step {name:?} in action.yml"))
}

/// A directory holding a `cargo` that prints its arguments, one per line, and then exits with `code`.
fn stand_in_cargo(code: i32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let cargo = dir.path().join("cargo");
    fs::write(
        &cargo,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\"\nexit {code}\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs the step named `name` with bash in `cwd`, `PATH` starting with `path_first`, and `env`.
fn run_step(name: &str, cwd: &Path, path_first: &Path, env: &[(&str, &str)]) -> Ran {
    let script = step(name)["run"].as_str().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        path_first.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Ran::of(
        Command::new("bash")
            .args(["-c", &script])
            .current_dir(cwd)
            .env("PATH", path)
            .envs(env.iter().copied()),
    )
}

fn the_run_step_passes_each_input_on_and_splits_args_as_a_shell_would() {
    let cargo = stand_in_cargo(0);
    let work = tempfile::tempdir().unwrap();
    let ran = run_step(
        "cargo pgtest",
        work.path(),
        cargo.path(),
        &[
            ("PARTITION", "hash:2/3"),
            ("RETRIES", "2"),
            ("JUNIT", "reports/shard 2/junit.xml"),
            ("HTML", "pages/run.html"),
            (
                "ARGS",
                r#"--locked -p "my app" -- --skip 'slow one' $HOME \$(id)"#,
            ),
        ],
    );
    ran.expect_code(0);
    let argv: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(
        argv,
        [
            "pgtest",
            "--partition",
            "hash:2/3",
            "--retries",
            "2",
            "--junit",
            "reports/shard 2/junit.xml",
            "--html",
            "pages/run.html",
            "--locked",
            "-p",
            "my app",
            "--",
            "--skip",
            "slow one",
            "$HOME",
            "$(id)",
        ],
        "{ran}"
    );
    assert!(
        work.path().join("reports/shard 2").is_dir(),
        "the JUnit report's directory is made"
    );
    // Empty inputs add nothing, and cargo pgtest's exit code is the step's.
    let failing = stand_in_cargo(100);
    let ran = run_step(
        "cargo pgtest",
        work.path(),
        failing.path(),
        &[
            ("PARTITION", ""),
            ("RETRIES", ""),
            ("JUNIT", ""),
            ("HTML", ""),
            ("ARGS", ""),
        ],
    );
    ran.expect_code(100);
    assert_eq!(ran.stdout, "pgtest\n", "{ran}");
}

/// The `key=value` lines a step wrote to `GITHUB_OUTPUT`.
fn outputs(file: &Path) -> std::collections::BTreeMap<String, String> {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

fn the_paths_step_finds_the_target_directory_and_keys_the_cache_on_lock_files_and_migrations() {
    let project = Project::copy_of("sqlx-app");
    let target = project.probe_dir.with_file_name("elsewhere");
    let keys = |partition: &str| {
        let output = project.probe_dir.with_file_name("github-output");
        fs::write(&output, "").unwrap();
        let ran = Ran::of(
            Command::new("bash")
                .args([
                    "-c",
                    step("Where cargo-pgtest keeps its state")["run"]
                        .as_str()
                        .unwrap(),
                ])
                .current_dir(&project.dir)
                .env("GITHUB_OUTPUT", &output)
                .env("GITHUB_ACTION_PATH", REPO)
                .env("RUNNER_OS", "Linux")
                .env("RUNNER_ARCH", "X64")
                .env("CARGO_TARGET_DIR", &target)
                .env("PARTITION", partition)
                .env("VERSION", ""),
        );
        ran.expect_code(0);
        outputs(&output)
    };
    let first = keys("hash:1/3");
    assert_eq!(first["pgtest"], format!("{}/pgtest", target.display()));
    assert_eq!(first["shard"], "hash-1-3");
    assert!(
        first["tool-key"].starts_with("cargo-pgtest-bin-v1-Linux-X64-"),
        "{first:?}"
    );
    assert_eq!(keys("")["shard"], "all");
    assert_eq!(keys("hash:1/3")["project"], first["project"], "stable");
    let migrations = project.dir.join("migrations");
    let migration = fs::read_dir(&migrations)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::write(
        &migration,
        fs::read_to_string(&migration).unwrap() + "\n-- edited\n",
    )
    .unwrap();
    let edited = keys("hash:1/3");
    assert_ne!(edited["project"], first["project"], "a migration changed");
    assert_eq!(edited["tool-key"], first["tool-key"], "the tool did not");
}

// ---------------------------------------------------------------------------------------------------------
// As cargo's target runner

fn as_cargo_s_runner_a_binary_that_selects_no_test_passes_and_writes_no_job_summary() {
    if !postgres_available() {
        return;
    }
    let project = Project::copy_of("runner-probe");
    fs::create_dir(project.dir.join(".cargo")).unwrap();
    let config = format!("[target.'cfg(all())']\nrunner = [{BINARY:?}, \"runner\"]\n");
    fs::write(project.dir.join(".cargo/config.toml"), config).unwrap();
    let summary = summary_path(&project);
    // cargo runs every test binary with the filter; libtest ends one that selects nothing with 0.
    let ran = Ran::of(
        crate::support::lean_builds(&mut Command::new(env!("CARGO")))
            .args(["test", "--", "nothing_matches"])
            .current_dir(&project.dir)
            // A target directory of its own: copies of one package building into a shared one replace
            // each other's test binaries, under the feet of runner.rs's runs of it.
            .env(
                "CARGO_TARGET_DIR",
                project.probe_dir.with_file_name("target"),
            )
            .env("PGTEST_TMPDIR", project.cluster_parent.path())
            .env("PROBE_DIR", &project.probe_dir)
            .env("CARGO_TERM_COLOR", "never")
            .env("GITHUB_STEP_SUMMARY", &summary),
    );
    ran.expect_code(0);
    assert!(ran.stdout.contains("0 passed"), "{ran}");
    assert!(
        !summary.exists(),
        "a test binary writes no job summary\n{ran}"
    );
}
