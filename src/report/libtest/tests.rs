use std::time::Duration;

use super::*;

fn id(name: &str) -> TestId {
    TestId {
        binary: "app::it".into(),
        name: name.into(),
    }
}

fn finished(name: &str, outcome: Outcome, output: &str) -> Event {
    Event::TestFinished {
        test: id(name),
        outcome,
        duration: Some(Duration::from_millis(20)),
        output: output.into(),
    }
}

/// A run of three tests (one passes, one fails with output, one is ignored), reported in `format`.
fn render(format: Format, show_output: bool) -> String {
    let args = TestArgs {
        show_output,
        ..TestArgs::default()
    };
    render_with(format, &args)
}

fn render_with(format: Format, args: &TestArgs) -> String {
    let mut out = Vec::new();
    let mut summary = Summary::default();
    let mut reporter = Libtest::new(&mut out, format, args);
    let events = [
        Event::RunStarted {
            to_run: 2,
            filtered_out: 3,
            jobs: 2,
            shared: false,
        },
        Event::TestIgnored { test: id("slow") },
        Event::TestStarted {
            test: id("adds"),
            start: crate::events::Start::alone(0, crate::events::DatabaseKind::Fresh, None),
        },
        Event::TestStarted {
            test: id("breaks"),
            start: crate::events::Start::alone(0, crate::events::DatabaseKind::Fresh, None),
        },
        finished("adds", Outcome::Passed, "said hello\n"),
        finished(
            "breaks",
            Outcome::Failed {
                exit_code: Some(101),
            },
            "thread 'breaks' panicked\n",
        ),
    ];
    for event in &events {
        summary.record(event);
        reporter.report(event);
    }
    reporter.finish(&summary).unwrap();
    drop(reporter);
    let text = String::from_utf8(out).unwrap();
    // The run's time is the one thing that differs from run to run.
    let time = text
        .rfind("finished in ")
        .map(|at| at + "finished in ".len());
    match time {
        Some(at) if format != Format::Json => {
            let end = at + text[at..].find('s').unwrap();
            format!("{}T{}", &text[..at], &text[end..])
        }
        _ => text,
    }
}

#[test]
fn pretty_is_libtest_s_own_text() {
    assert_eq!(
        render(Format::Pretty, false),
        "\nrunning 3 tests\ntest slow ... ignored\ntest adds ... ok\ntest breaks ... FAILED\n\nfailures:\n\n\
         ---- breaks stdout ----\nthread 'breaks' panicked\n\n\nfailures:\n    breaks\n\n\
         test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 3 filtered out; finished in Ts\n\n"
    );
}

#[test]
fn show_output_adds_the_successes_section() {
    let text = render(Format::Pretty, true);
    assert!(
        text.contains(
            "\nsuccesses:\n\n---- adds stdout ----\nsaid hello\n\n\nsuccesses:\n    adds\n"
        ),
        "{text}"
    );
    assert!(!render(Format::Pretty, false).contains("said hello"));
}

#[test]
fn nocapture_shows_output_where_it_came_and_not_again() {
    let args = TestArgs {
        nocapture: true,
        ..TestArgs::default()
    };
    let text = render_with(Format::Pretty, &args);
    assert!(text.contains("said hello\ntest adds ... ok\n"), "{text}");
    assert!(
        text.contains("thread 'breaks' panicked\ntest breaks ... FAILED\n"),
        "{text}"
    );
    assert!(!text.contains("---- breaks stdout ----"), "{text}");
    assert!(text.ends_with("failures:\n    breaks\n\ntest result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 3 filtered out; finished in Ts\n\n"), "{text}");
}

#[test]
fn terse_is_a_character_per_test() {
    let text = render(Format::Terse, false);
    assert!(
        text.starts_with("\nrunning 3 tests\ni.F\nfailures:\n"),
        "{text}"
    );
    assert!(text.ends_with("finished in Ts\n\n"), "{text}");
}

#[test]
fn json_has_one_object_per_line_and_one_end_per_test() {
    let text = render(Format::Json, false);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        json!({"type": "suite", "event": "started", "test_count": 3})
    );
    let ends: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["type"] == "test" && l["event"] != "started")
        .map(|l| {
            (
                l["name"].as_str().unwrap().into(),
                l["event"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = [("slow", "ignored"), ("adds", "ok"), ("breaks", "failed")];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, e)| (n.to_string(), e.to_string()))
        .collect();
    assert_eq!(ends, expected);
    let starts = lines
        .iter()
        .filter(|l| l["event"] == "started" && l["type"] == "test")
        .count();
    assert_eq!(starts, 3, "every test has one started line");
    let broken = lines
        .iter()
        .find(|l| l["name"] == "breaks" && l["event"] == "failed")
        .unwrap();
    assert_eq!(broken["stdout"], "thread 'breaks' panicked\n");
    assert!(broken["exec_time"].as_f64().unwrap() > 0.0);
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "suite");
    assert_eq!(last["event"], "failed");
    assert_eq!(
        (
            last["passed"].as_u64(),
            last["failed"].as_u64(),
            last["ignored"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(last["filtered_out"], 3);
}

#[test]
fn a_test_not_run_is_a_failure_with_its_reason() {
    let (verdict, output) = verdict_of(
        &Outcome::NotRun {
            reason: "stopped by SIGINT".into(),
        },
        "",
    );
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(output, "not run: stopped by SIGINT");
    assert_eq!(Format::parse("json"), Some(Format::Json));
    assert_eq!(Format::parse("junit"), None);
}
