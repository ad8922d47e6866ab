//! Unit tests of [`super`]: the Markdown a synthetic run comes to, exactly.
use super::*;
use crate::events::{ClusterFacts, MemoryPeak, Phase};

fn id(binary: &str, name: &str) -> TestId {
    TestId {
        binary: binary.into(),
        name: name.into(),
    }
}

fn finished(name: &str, outcome: Outcome, millis: u64, output: &str) -> Event {
    Event::TestFinished {
        test: id("app::it", name),
        outcome,
        duration: Some(Duration::from_millis(millis)),
        output: output.into(),
    }
}

fn render(events: &[Event]) -> String {
    let mut reporter = StepSummary::new(PathBuf::from("unused.md"), Styles::new(false, false));
    let mut summary = Summary::default();
    for event in events {
        summary.record(event);
        reporter.report(event);
    }
    reporter.markdown(&summary)
}

/// Twelve lines, coloured, one of them long and one holding a code fence.
fn long_output() -> String {
    let mut lines = vec![
        "\u{1b}[31mthread 'fails' panicked at tests/it.rs:3:5:\u{1b}[0m".to_owned(),
        "expected 3 rows, found 4 ``` not the end".to_owned(),
        "x".repeat(310),
    ];
    lines.extend((4..=12).map(|n| format!("line {n}")));
    lines.join("\n")
}

fn a_run() -> Vec<Event> {
    vec![
        Event::ClusterReady(ClusterFacts {
            version: "PostgreSQL 15.18".into(),
            in_ram: true,
            run_dir: "/dev/shm/x".into(),
            log: "/dev/shm/x/log".into(),
            server_user: "postgres".into(),
        }),
        Event::RunStarted {
            to_run: 5,
            filtered_out: 2,
            jobs: 2,
            shared: false,
        },
        finished("passes", Outcome::Passed, 30, "noise"),
        finished(
            "fails",
            Outcome::Failed {
                exit_code: Some(101),
            },
            250,
            &long_output(),
        ),
        finished(
            "aborts",
            Outcome::Crashed {
                signal: "SIGABRT".into(),
            },
            5,
            "about to abort",
        ),
        Event::TestRetry {
            test: id("app::it", "flaky"),
            attempt: 1,
            outcome: Outcome::Failed {
                exit_code: Some(101),
            },
            duration: Some(Duration::from_millis(5)),
            output: "first try".into(),
        },
        finished("flaky", Outcome::Passed, 7, ""),
        finished(
            "stranded",
            Outcome::NotRun {
                reason: "the server stopped".into(),
            },
            0,
            "",
        ),
        Event::TestIgnored {
            test: id("app::it", "later"),
        },
        Event::TestSlower {
            test: id("app::it", "passes"),
            duration: Duration::from_millis(30),
            median: Duration::from_millis(3),
        },
        Event::PhaseFinished {
            phase: Phase::ClusterBoot,
            duration: Duration::from_millis(400),
        },
        Event::PhaseFinished {
            phase: Phase::Build,
            duration: Duration::from_millis(1500),
        },
        Event::PhaseFinished {
            phase: Phase::Tests,
            duration: Duration::from_millis(300),
        },
        Event::ClusterMemory {
            peak_bytes: 1 << 20,
            ram: MemoryPeak {
                ram_peak_bytes: 3 << 20,
                processes_bytes: 1 << 20,
                data_dir_bytes: 2 << 20,
            },
            phases: Vec::new(),
        },
    ]
}

#[test]
fn a_run_with_every_kind_of_result_comes_to_this_markdown() {
    let long_line = format!("{}…", "x".repeat(300));
    let expected = format!(
        "### cargo pgtest: 3 of 5 tests did not pass

2 passed (1 flaky), 2 failed, 1 not run, 1 ignored, 2 filtered out (of the failed: 1 crashed) in 2.200s

#### Failures

**FAIL** `app::it fails` after 0.250s

````text
thread 'fails' panicked at tests/it.rs:3:5:
expected 3 rows, found 4 ``` not the end
{long_line}
line 4
line 5
line 6
line 7
line 8
line 9
line 10
… 2 more lines in the job's log
````

**SIGABRT** `app::it aborts` after 0.005s

```text
about to abort
```

**NOT RUN** `app::it stranded` after 0.000s

```text
the server stopped
```

#### Flaky

Passed on a retry; they do not fail the run.

| test | failed attempts |
|---|---:|
| `app::it flaky` | 1 |

#### Slower

Far slower than their last passing runs (at least 3× their median and 100 ms more).

| test | time | median before |
|---|---:|---:|
| `app::it passes` | 0.030s | 0.003s |

#### Slowest

| test | time |
|---|---:|
| `app::it fails` | 0.250s |
| `app::it passes` | 0.030s |
| `app::it flaky` | 0.007s |
| `app::it aborts` | 0.005s |
| `app::it stranded` | 0.000s |

#### Phases

| build | cluster boot | tests |
|---:|---:|---:|
| 1.500s | 0.400s | 0.300s |

**Cluster**: PostgreSQL 15.18, data in RAM (tmpfs), peak RAM 3.0 MiB (server processes 1.0 MiB + data directory 2.0 MiB)

"
    );
    let markdown = render(&a_run());
    assert_eq!(markdown, expected, "got:\n{markdown}");
}

#[test]
fn a_green_run_says_so_and_lists_no_failures() {
    let markdown = render(&[
        Event::RunStarted {
            to_run: 1,
            filtered_out: 0,
            jobs: 1,
            shared: false,
        },
        finished("passes", Outcome::Passed, 30, "noise"),
    ]);
    assert_eq!(
        markdown,
        "### cargo pgtest: 1 test passed\n\n1 passed, 0 failed, 0 ignored, 0 filtered out in 0.000s\n\n"
    );
}

#[test]
fn a_run_stopped_before_the_tests_or_by_a_signal_says_that() {
    assert_eq!(
        render(&[]),
        "### cargo pgtest: stopped before running any test\n\nThe build or the setup failed; the job's log says why.\n\n"
    );
    let markdown = render(&[
        Event::RunStarted {
            to_run: 3,
            filtered_out: 0,
            jobs: 1,
            shared: false,
        },
        Event::Interrupted {
            signal: "SIGINT".into(),
        },
    ]);
    assert!(
        markdown.starts_with("### cargo pgtest: stopped by SIGINT\n"),
        "{markdown}"
    );
    let none = render(&[Event::RunStarted {
        to_run: 0,
        filtered_out: 4,
        jobs: 1,
        shared: false,
    }]);
    assert!(
        none.starts_with("### cargo pgtest: no tests ran\n"),
        "{none}"
    );
}

#[test]
fn durations_follow_the_redaction_switch() {
    let mut reporter = StepSummary::new(PathBuf::from("unused.md"), Styles::new(false, true));
    let mut summary = Summary::default();
    for event in a_run() {
        summary.record(&event);
        reporter.report(&event);
    }
    let markdown = reporter.markdown(&summary);
    assert!(
        markdown.contains("| `app::it fails` | 0.000s |"),
        "{markdown}"
    );
    assert!(!markdown.contains("0.250s"), "{markdown}");
}

#[test]
fn long_lists_are_cut_short() {
    let mut events: Vec<Event> = (0..(FAILURES_WITH_OUTPUT + ROWS + 5))
        .map(|n| {
            finished(
                &format!("t{n:03}"),
                Outcome::Failed {
                    exit_code: Some(101),
                },
                1,
                "boom",
            )
        })
        .collect();
    events.insert(
        0,
        Event::RunStarted {
            to_run: events.len(),
            filtered_out: 0,
            jobs: 1,
            shared: false,
        },
    );
    let markdown = render(&events);
    assert_eq!(markdown.matches("```text").count(), FAILURES_WITH_OUTPUT);
    assert_eq!(markdown.matches("\n- **FAIL**").count(), ROWS);
    assert!(
        markdown.contains("…and 5 more (see the job's log)"),
        "{markdown}"
    );
}

#[test]
fn names_and_output_cannot_break_out_of_their_markdown() {
    assert_eq!(code("a `b` c"), "``a `b` c``");
    assert_eq!(code("`edge"), "`` `edge ``");
    assert_eq!(cell(&id("a|b", "c")), "`a\\|b c`");
    assert_eq!(
        strip_escapes("\u{1b}[1;31mred\u{1b}[0m\u{7} \tend"),
        "red \tend"
    );
}

#[test]
fn finish_appends_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.md");
    std::fs::write(&path, "earlier step\n").unwrap();
    let mut reporter = StepSummary::new(path.clone(), Styles::new(false, false));
    reporter.finish(&Summary::default()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("earlier step\n### cargo pgtest: stopped"),
        "{text}"
    );
    reporter.path = dir.path().join("missing").join("summary.md");
    let error = reporter
        .finish(&Summary::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("GITHUB_STEP_SUMMARY"), "{error}");
}
