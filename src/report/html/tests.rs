//! The reporter and the `report` command render the same page; the page shows what a run needs shown, fetches
//! nothing, and stays small at 10,000 tests.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::events::{ClusterFacts, DatabaseKind, Outcome, Phase, Start, TestId};
use crate::report::json::JsonLines;

fn id(name: &str) -> TestId {
    TestId {
        binary: "app::it".into(),
        name: name.into(),
    }
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn started(name: &str, slot: usize, database: DatabaseKind) -> Event {
    Event::TestStarted {
        test: id(name),
        start: Start::alone(slot, database, Some(ms(2))),
    }
}

fn finished(name: &str, outcome: Outcome, output: &str) -> Event {
    Event::TestFinished {
        test: id(name),
        outcome,
        duration: Some(ms(100)),
        output: output.into(),
    }
}

fn sample(processes_mib: u64, data_dir_mib: u64) -> Event {
    Event::MemorySample {
        processes_bytes: processes_mib << 20,
        data_dir_bytes: data_dir_mib << 20,
    }
}

/// A small run: a pass, a failure whose database was kept, a flaky test, memory, phases; each event with
/// its time in milliseconds.
fn events() -> Vec<(Event, Duration)> {
    let failed = Outcome::Failed {
        exit_code: Some(101),
    };
    let cluster = Event::ClusterReady(ClusterFacts {
        version: "PostgreSQL 15.18".into(),
        in_ram: true,
        run_dir: "/dev/shm/pgtest-x".into(),
        log: "/dev/shm/pgtest-x/log".into(),
        server_user: "postgres".into(),
    });
    let build = Event::PhaseFinished {
        phase: Phase::Build,
        duration: ms(500),
    };
    let run_started = Event::RunStarted {
        to_run: 3,
        filtered_out: 0,
        jobs: 2,
        shared: false,
    };
    let retry = Event::TestRetry {
        test: id("flaky"),
        attempt: 1,
        outcome: failed.clone(),
        duration: Some(ms(50)),
        output: "first try".into(),
    };
    let kept = Event::DatabaseKept {
        test: id("fails"),
        command: "cargo pgtest psql 'app::it fails'".into(),
    };
    let output = "thread 'fails' panicked: <boom> & more";
    [
        (cluster, 300),
        (sample(30, 40), 800),
        (build, 1000),
        (run_started, 1000),
        (started("passes", 0, DatabaseKind::Fresh), 1010),
        (started("fails", 1, DatabaseKind::Reused), 1010),
        (finished("passes", Outcome::Passed, ""), 1110),
        (finished("fails", failed, output), 1120),
        (started("flaky", 0, DatabaseKind::Fresh), 1120),
        (retry, 1170),
        (started("flaky", 0, DatabaseKind::Fresh), 1175),
        (finished("flaky", Outcome::Passed, ""), 1275),
        (sample(35, 60), 1300),
        (kept, 1400),
    ]
    .into_iter()
    .map(|(event, at)| (event, ms(at)))
    .collect()
}

fn summary(events: &[(Event, Duration)]) -> Summary {
    let mut summary = Summary::default();
    for (event, _) in events {
        summary.record(event);
    }
    summary.ended_at = Some(ms(1500));
    summary
}

/// The page without the time it was rendered.
fn untimed(page: &str) -> String {
    let start = page
        .find("<time>")
        .expect("the page says when it was rendered");
    let end = page[start..].find("</time>").unwrap() + start;
    format!("{}{}", &page[..start], &page[end..])
}

#[test]
fn the_reporter_and_the_report_command_render_the_same_page() {
    let dir = tempfile::tempdir().unwrap();
    let (page, json) = (dir.path().join("run.html"), dir.path().join("run.jsonl"));
    let events = events();
    let summary = summary(&events);
    let mut html = HtmlReport::new(Destination::from_flag(Some(page.clone())));
    let mut lines = JsonLines::new(std::fs::File::create(&json).unwrap());
    for (event, at) in &events {
        html.report_at(event, *at);
        lines.report_at(event, *at);
    }
    html.finish(&summary).unwrap();
    lines.finish(&summary).unwrap();
    let written = std::fs::read_to_string(&page).unwrap();
    let again = dir.path().join("again.html");
    render_file(&json, &again).unwrap();
    let rendered = std::fs::read_to_string(&again).unwrap();
    assert_eq!(untimed(&written), untimed(&rendered));
    assert_ne!(written.find("<time>"), None);
}

fn page_of(events: &[(Event, Duration)]) -> String {
    let mut lines: Vec<Value> = events
        .iter()
        .map(|(event, at)| serde_json::from_str(&json::line_text(event, *at).unwrap()).unwrap())
        .collect();
    let summary = json::summary_text(&summary(events)).unwrap();
    lines.push(serde_json::from_str(&summary).unwrap());
    render(&lines, "now")
}

#[test]
fn failures_come_first_with_their_output_and_psql_line() {
    let page = page_of(&events());
    let at = |needle: &str| page.find(needle).unwrap_or_else(|| panic!("no {needle}"));
    assert!(at("id=\"failures\"") < at("id=\"timeline\""));
    assert!(at("id=\"timeline\"") < at("id=\"memory\""));
    assert!(at("id=\"memory\"") < at("id=\"tests\""));
    let failure = &page[at("<details class=\"failure\"")..];
    assert!(failure.contains("app::it</span> fails"), "{failure}");
    assert!(
        failure.contains("thread &#39;fails&#39; panicked: &lt;boom&gt; &amp; more"),
        "the output, escaped"
    );
    assert!(
        failure.contains("<code class=\"psql\">cargo pgtest psql &#39;app::it fails&#39;</code>")
    );
    assert!(
        page.contains("<b class=\"pass\">2 passed</b> (1 flaky), <b class=\"fail\">1 failed</b>")
    );
    assert!(page.contains("PostgreSQL 15.18, data in RAM (tmpfs)"));
    assert!(page.contains("id=\"memory-chart\""));
    assert!(page.contains("<span class=\"verdict fail\">failed</span>"));
}

#[test]
fn the_script_gets_each_attempt_on_its_slot() {
    let page = page_of(&events());
    let start = page.find("id=\"run-data\">").unwrap() + "id=\"run-data\">".len();
    let end = page[start..].find("</script>").unwrap() + start;
    let data: Value = serde_json::from_str(&page[start..end]).unwrap();
    assert_eq!(data["lanes"], 2);
    let runs = data["runs"].as_array().unwrap();
    // passes, fails, and flaky's two attempts; [test, slot, start, end, wait, status, last].
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[1], json!([1, 1, 1010.0, 1120.0, 2.0, 0, 1]));
    assert_eq!(runs[2][6], 0, "flaky's first attempt is not its last");
    let fails = &data["tests"][1];
    assert_eq!(fails[1], "fails");
    assert_eq!(fails[5], 1, "a reused database");
    assert_eq!(fails[10], "cargo pgtest psql 'app::it fails'");
}

#[test]
fn the_page_fetches_nothing() {
    let page = page_of(&events());
    for remote in [
        "src=",
        "<link",
        "@import",
        "url(",
        "href=\"http",
        "href=\"//",
    ] {
        assert!(!page.contains(remote), "the page has {remote}");
    }
}

/// 10,000 tests with everything a test can have: times, history, a reused database, some failures.
fn ten_thousand() -> Vec<Value> {
    let mut lines = vec![
        json!({ "type": "run_started", "to_run": 10000, "filtered_out": 0, "jobs": 8, "isolation": "test", "at_seconds": 1.0 }),
    ];
    for n in 0..10_000u32 {
        let test = json!({ "binary": format!("app::suite_{}", n % 7), "name": format!("module_{}::case_{n}", n % 97) });
        let at = 1.0 + f64::from(n) * 0.0123;
        lines.push(json!({ "type": "test_started", "test": test, "database_wait_seconds": 0.0021, "slot": n % 8, "database": "reused", "batch": null, "at_seconds": at }));
        let status = if n % 100 == 0 { "failed" } else { "passed" };
        let output = if n % 100 == 0 {
            "thread panicked at tests/it.rs:10:5:\nassertion failed"
        } else {
            ""
        };
        lines.push(json!({ "type": "test_finished", "test": test, "status": status, "seconds": 0.0934, "output": output, "at_seconds": at + 0.0951 }));
        let history: Vec<f64> = (0..10).map(|k| 0.09 + f64::from(k) * 0.0011).collect();
        lines.push(json!({ "type": "test_history", "test": test, "seconds": history, "at_seconds": 130.0 }));
    }
    lines.push(json!({ "type": "summary", "passed": 9900, "failed": 100, "at_seconds": 131.0 }));
    lines
}

#[test]
fn ten_thousand_tests_make_a_page_under_two_megabytes() {
    let page = render(&ten_thousand(), "now");
    assert!(page.len() < 2 << 20, "{} bytes", page.len());
}

#[test]
fn the_destination_is_the_flag_else_the_key_and_nothing_is_kept_without_one() {
    let flag = Destination::from_flag(Some("flag.html".into()));
    flag.configured(Some(Path::new("key.html")));
    assert_eq!(flag.path(), Some(PathBuf::from("flag.html")));
    let key = Destination::from_flag(None);
    assert_eq!(key.path(), None, "not known before the configuration");
    key.configured(Some(Path::new("key.html")));
    assert_eq!(key.path(), Some(PathBuf::from("key.html")));
    let none = Destination::from_flag(None);
    let mut reporter = HtmlReport::new(none.clone());
    reporter.report(&Event::FilteredOut { count: 1 });
    assert_eq!(
        reporter.lines.len(),
        1,
        "kept until the configuration is read"
    );
    none.configured(None);
    reporter.report(&Event::FilteredOut { count: 1 });
    assert!(reporter.lines.is_empty());
    reporter.finish(&Summary::default()).unwrap();
}

#[test]
fn an_event_file_that_is_not_one_is_refused_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("page.html");
    let error = render_file(&dir.path().join("missing.jsonl"), &out).unwrap_err();
    assert!(
        error.to_string().contains("could not read the event file"),
        "{error}"
    );
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"type\":\"info\",\"at_seconds\":1}\nnot json\n").unwrap();
    let error = render_file(&bad, &out).unwrap_err().to_string();
    assert!(error.contains("line 2 of"), "{error}");
    let old = dir.path().join("old.jsonl");
    std::fs::write(
        &old,
        "{\"type\":\"info\",\"message\":\"x\",\"format_version\":1}\n",
    )
    .unwrap();
    let error = render_file(&old, &out).unwrap_err().to_string();
    assert!(error.contains("no events with times"), "{error}");
    assert!(!out.exists());
}
