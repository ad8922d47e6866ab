//! What the README promises about cargo-pgtest's output, checked on real runs of `fixtures/failing` (one
//! test passes, two fail, one aborts): colour (`--color`, `NO_COLOR`, a terminal or a pipe), the JSON
//! events (`--json PATH`, `--json -`), the JUnit report (`--junit PATH`, read by a real XML parser), the
//! summary's peak-memory line, and `--which-postgres`.
//!
//! The JSON and JUnit formats are checked for their structure and the tests' results only (name and
//! outcome), not for every field, so a reporter may grow or rename the rest.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{self, Project};
use serde_json::Value;

/// `fixtures/failing`'s tests and the outcome each one has.
const RESULTS: [(&str, &str); 4] = [
    ("passes", "passed"),
    ("fails_an_assertion", "failed"),
    ("panics", "failed"),
    ("aborts", "crashed"),
];
/// The start of an ANSI escape sequence (colours among them).
const ESCAPE: &str = "\u{1b}[";

/// The line of `output` that contains `needle` (our `Summary` line, cargo's `Finished` line).
fn line_with<'a>(output: &'a str, needle: &str) -> &'a str {
    output
        .lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{output}"))
}

/// Fails unless our summary line and cargo's `Finished` line are coloured (`true`) or not (`false`).
fn assert_colour(output: &str, coloured: bool, how: &str) {
    for needle in ["Summary", "Finished"] {
        let line = line_with(output, needle);
        assert_eq!(
            line.contains(ESCAPE),
            coloured,
            "{how}: the {needle:?} line must {}be coloured: {line:?}\n{output}",
            if coloured { "" } else { "not " }
        );
    }
    if !coloured {
        assert!(!output.contains(ESCAPE), "{how}: escape codes in\n{output}");
    }
}

fn colour_always_colours_our_lines_and_cargos_even_in_a_pipe() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    let mut command = project.command(&["--color", "always"]);
    command.env_remove("NO_COLOR");
    let run = support::Run::from(command.output().unwrap());
    run.expect(100, &["1 passed, 3 failed"]);
    assert_colour(&run.stderr, true, "--color always");
}

fn a_pipe_gets_no_colour_by_default() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    let mut command = project.command(&[]);
    command.env_remove("NO_COLOR");
    let run = support::Run::from(command.output().unwrap());
    run.expect(100, &["1 passed, 3 failed"]);
    assert_colour(&format!("{}\n{}", run.stdout, run.stderr), false, "a pipe");
}

fn a_terminal_gets_colour_unless_never_or_no_color_says_otherwise() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    // (arguments, variable set, coloured, what the case is)
    type Case<'a> = (&'a [&'a str], Option<(&'a str, &'a str)>, bool, &'a str);
    let cases: [Case; 4] = [
        (&[], None, true, "a terminal"),
        (
            &["--color", "never"],
            None,
            false,
            "--color never in a terminal",
        ),
        (
            &[],
            Some(("NO_COLOR", "1")),
            false,
            "NO_COLOR=1 in a terminal",
        ),
        (
            &[],
            Some(("CARGO_TERM_COLOR", "never")),
            false,
            "CARGO_TERM_COLOR=never in a terminal",
        ),
    ];
    for (args, variable, coloured, how) in cases {
        let mut command = project.command(args);
        command
            .env_remove("NO_COLOR")
            .env_remove("CARGO_TERM_COLOR");
        if let Some((name, value)) = variable {
            command.env(name, value);
        }
        let (code, output) = support::terminal::run_in_terminal(command);
        assert_eq!(code, Some(100), "{how}: exit code\n{output}");
        assert_colour(&output, coloured, how);
    }
}

/// The name and outcome of a test result among JSON events: an object naming a test (`name`, at its top
/// or under `test`) with an outcome (`status` or `outcome`, a string).
fn result_of(event: &Value) -> Option<(&str, &str)> {
    let name = event
        .get("test")
        .and_then(|test| test.get("name"))
        .or_else(|| event.get("name"))?
        .as_str()?;
    let outcome = event
        .get("status")
        .or_else(|| event.get("outcome"))?
        .as_str()?;
    Some((name, outcome))
}

/// Fails unless every line of `text` is a JSON object and each of `fixtures/failing`'s tests has its
/// result among them.
fn assert_json_events(text: &str, from: &str) {
    let events: Vec<Value> = text
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{from}: not JSON ({e}): {line:?}"));
            assert!(value.is_object(), "{from}: not a JSON object: {line:?}");
            value
        })
        .collect();
    assert!(!events.is_empty(), "{from} is empty");
    for (test, outcome) in RESULTS {
        let results: Vec<&str> = events
            .iter()
            .filter_map(result_of)
            .filter(|(name, _)| *name == test)
            .map(|(_, outcome)| outcome)
            .collect();
        assert_eq!(results, [outcome], "{from}: the result of {test}\n{text}");
    }
}

fn json_to_a_file_holds_one_object_per_line_with_every_result() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    let run = project.run(&["--json", "events.jsonl"]);
    run.expect(100, &["1 passed, 3 failed"]);
    let path = project.dir.join("events.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("--json events.jsonl wrote no {}: {e}", path.display()));
    assert_json_events(&text, "the --json file");
}

fn json_to_stdout_is_all_stdout_holds() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    let run = project.run(&["--json", "-"]);
    run.expect(100, &["1 passed, 3 failed"]);
    assert_json_events(&run.stdout, "stdout with --json -");
}

fn junit_is_xml_with_a_testcase_per_test_and_the_failures_marked() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    let run = project.run(&["--junit", "report.xml"]);
    run.expect(100, &["1 passed, 3 failed"]);
    let path = project.dir.join("report.xml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("--junit report.xml wrote no {}: {e}", path.display()));
    let xml = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("the JUnit report is not XML: {e}\n{text}"));
    let root = xml.root_element();
    assert!(
        matches!(root.tag_name().name(), "testsuites" | "testsuite"),
        "root element <{}>\n{text}",
        root.tag_name().name()
    );
    let cases: Vec<roxmltree::Node> = root
        .descendants()
        .filter(|node| node.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), RESULTS.len(), "one testcase per test\n{text}");
    for (test, outcome) in RESULTS {
        let case = cases
            .iter()
            .find(|case| case.attribute("name").is_some_and(|n| n.ends_with(test)))
            .unwrap_or_else(|| panic!("no testcase for {test}\n{text}"));
        let failed = case
            .children()
            .any(|child| child.has_tag_name("failure") || child.has_tag_name("error"));
        assert_eq!(
            failed,
            outcome != "passed",
            "{test} ({outcome}) is marked failed: {failed}\n{text}"
        );
    }
}

fn the_summary_gives_the_clusters_peak_memory_processes_and_data_directory() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("failing");
    let run = project.run(&[]);
    run.expect(100, &["1 passed, 3 failed"]);
    let summary = run
        .stderr
        .split_once("Summary")
        .unwrap_or_else(|| panic!("no summary in\n{}", run.stderr))
        .1;
    if line_with(summary, "Cluster").contains("on disk") {
        // No tmpfs here: the processes are the RAM, the data directory is told apart.
        assert!(line_with(summary, "peak memory ").contains("data directory"));
        return;
    }
    // On tmpfs: `peak RAM <sum> MiB (server processes <a> MiB + data directory <b> MiB)`.
    let line = line_with(summary, "peak RAM ");
    let mebibytes: Vec<f64> = line
        .split_once("peak RAM ")
        .map(|(_, rest)| {
            rest.split(" MiB").filter_map(|part| {
                part.rsplit(' ')
                    .next()
                    .and_then(|n| n.trim_start_matches('(').parse().ok())
            })
        })
        .map(Iterator::collect)
        .unwrap_or_default();
    let [sum, processes, data_dir] = mebibytes[..] else {
        panic!(
            "no `peak RAM <n> MiB (server processes <n> MiB + data directory <n> MiB)` in {line:?}"
        );
    };
    assert!(processes > 0.0 && data_dir > 0.0, "{line}");
    assert!((sum - processes - data_dir).abs() < 0.15, "{line}");
}

fn which_postgres_names_the_version_and_a_bin_directory_with_the_server() {
    if !support::postgres_available() {
        return;
    }
    let output = support::tool_command(&["--which-postgres"], Path::new(support::REPO))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run = support::Run::from(output);
    run.expect(0, &[]);
    let line = run.stdout.trim();
    let (version, bin_dir) = support::parse_which(line)
        .unwrap_or_else(|| panic!("not `PostgreSQL <version> in <bin dir>`: {line:?}"));
    for program in ["postgres", "initdb"] {
        let path = bin_dir.join(program);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert!(
            path.is_file() && mode & 0o111 != 0,
            "{} is not an executable file",
            path.display()
        );
    }
    let postgres = Command::new(bin_dir.join("postgres"))
        .arg("--version")
        .output()
        .unwrap();
    let says = String::from_utf8_lossy(&postgres.stdout);
    assert!(
        says.split_whitespace().any(|word| word == version.as_str()),
        "{line:?}, but the server there says {says:?}"
    );
}

fn which_postgres_with_a_bad_pgtest_pg_bin_fails_with_a_clear_message() {
    let output = support::tool_command(&["--which-postgres"], Path::new(support::REPO))
        .env("PGTEST_PG_BIN", "/nonexistent/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run = support::Run::from(output);
    run.expect(
        2,
        &[
            "/nonexistent/bin (from PGTEST_PG_BIN) has no `initdb` program",
            "point it at the bin directory of a PostgreSQL server installation",
        ],
    );
    assert!(run.stdout.trim().is_empty(), "stdout: {}", run.stdout);
}

crate::tests! {
    colour_always_colours_our_lines_and_cargos_even_in_a_pipe,
    a_pipe_gets_no_colour_by_default,
    a_terminal_gets_colour_unless_never_or_no_color_says_otherwise,
    json_to_a_file_holds_one_object_per_line_with_every_result,
    json_to_stdout_is_all_stdout_holds,
    junit_is_xml_with_a_testcase_per_test_and_the_failures_marked,
    the_summary_gives_the_clusters_peak_memory_processes_and_data_directory,
    which_postgres_names_the_version_and_a_bin_directory_with_the_server,
    which_postgres_with_a_bad_pgtest_pg_bin_fails_with_a_clear_message,
}
