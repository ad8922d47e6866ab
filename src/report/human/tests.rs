//! Unit tests of [`super`]: what the human reporter writes.
use super::*;
use crate::events::Phase;

fn render(events: &[Event]) -> String {
    let mut buffer = Vec::new();
    let mut summary = Summary::default();
    {
        let mut human = Human::new(&mut buffer, Styles::new(false, false), false, false);
        for event in events {
            summary.record(event);
            human.report(event);
        }
        human.finish(&summary).unwrap();
    }
    String::from_utf8(buffer).unwrap()
}

fn test(name: &str) -> TestId {
    TestId {
        binary: "probe::isolation".into(),
        name: name.into(),
    }
}

#[test]
fn each_test_gets_an_aligned_line_with_its_time() {
    let text = render(&[
        Event::RunStarted {
            to_run: 3,
            filtered_out: 0,
            jobs: 2,
            shared: false,
        },
        Event::TestFinished {
            test: test("slow_test"),
            outcome: Outcome::Passed,
            duration: Some(Duration::from_millis(348)),
            output: "noise".into(),
        },
        Event::TestFinished {
            test: test("broken"),
            outcome: Outcome::Failed {
                exit_code: Some(101),
            },
            duration: Some(Duration::from_millis(12)),
            output: "expected 3 rows, found 4".into(),
        },
        Event::TestIgnored {
            test: test("later"),
        },
    ]);
    assert!(
        text.contains("   PASS [   0.348s] probe::isolation slow_test\n"),
        "{text}"
    );
    assert!(text.contains("   FAIL [   0.012s] probe::isolation broken\n--- output of probe::isolation broken ---\nexpected 3 rows, found 4\n"), "{text}");
    assert!(
        !text.contains("noise"),
        "a passing test's output is not shown: {text}"
    );
    assert!(
        text.contains("IGNORED [         ] probe::isolation later"),
        "{text}"
    );
    assert!(
        text.contains("1 passed, 1 failed, 1 ignored, 0 filtered out"),
        "{text}"
    );
    assert!(
        text.contains("Slowest    0.348s probe::isolation slow_test"),
        "{text}"
    );
}

#[test]
fn phases_and_the_cluster_are_summarised() {
    let text = render(&[
        Event::RunStarted {
            to_run: 0,
            filtered_out: 0,
            jobs: 2,
            shared: false,
        },
        Event::PhaseFinished {
            phase: Phase::ClusterBoot,
            duration: Duration::from_millis(450),
        },
        Event::PhaseFinished {
            phase: Phase::Build,
            duration: Duration::from_secs(3),
        },
        Event::ClusterReady(crate::events::ClusterFacts {
            version: "PostgreSQL 15.18".into(),
            in_ram: true,
            run_dir: "/dev/shm/x".into(),
            log: "/dev/shm/x/server.log".into(),
            server_user: "postgres".into(),
        }),
    ]);
    assert!(
        text.contains("Phases build 3.000s, cluster boot 0.450s"),
        "{text}"
    );
    assert!(
        text.contains("Cluster PostgreSQL 15.18, data in RAM (tmpfs)"),
        "{text}"
    );
}

#[test]
fn the_progress_line_follows_the_tests_and_is_erased_before_each_line() {
    let mut buffer = Vec::new();
    let mut human =
        Human::new(&mut buffer, Styles::new(false, true), false, false).with_progress(true);
    human.report(&Event::RunStarted {
        to_run: 2,
        filtered_out: 0,
        jobs: 1,
        shared: false,
    });
    human.report(&Event::TestFinished {
        test: test("first"),
        outcome: Outcome::Passed,
        duration: Some(Duration::ZERO),
        output: String::new(),
    });
    human.finish(&Summary::default()).unwrap();
    let text = String::from_utf8(buffer).unwrap();
    let line = "    Progress 0/2 done, 0 running, 0 failed, 0s";
    let erase = eraser(false, line.len());
    assert!(text.contains(&format!("{line}{erase}   PASS")), "{text:?}");
    assert!(
        text.ends_with(&format!(
            "Progress 1/2 done, 0 running, 0 failed, 0s{erase}"
        )),
        "erased at the end: {text:?}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no escape sequence without colour: {text:?}"
    );
}

#[test]
fn quiet_leaves_out_passing_tests_only() {
    let mut buffer = Vec::new();
    let mut human = Human::new(&mut buffer, Styles::new(false, true), false, false).quiet(true);
    for (name, outcome) in [
        ("good", Outcome::Passed),
        ("bad", Outcome::Failed { exit_code: Some(1) }),
    ] {
        human.report(&Event::TestFinished {
            test: test(name),
            outcome,
            duration: Some(Duration::ZERO),
            output: String::new(),
        });
    }
    let text = String::from_utf8(buffer).unwrap();
    assert!(!text.contains("good"), "{text}");
    assert!(
        text.contains("FAIL [   0.000s] probe::isolation bad"),
        "{text}"
    );
    assert!(!text.contains("Progress"), "{text}");
}

#[test]
fn the_cluster_line_counts_the_data_directory_and_slower_tests_are_listed() {
    let peak = |processes: u64, data: u64| MemoryPeak {
        ram_peak_bytes: (processes + data) << 20,
        processes_bytes: processes << 20,
        data_dir_bytes: data << 20,
    };
    let events = [
        Event::RunStarted {
            to_run: 1,
            filtered_out: 0,
            jobs: 2,
            shared: false,
        },
        Event::ClusterReady(crate::events::ClusterFacts {
            version: "PostgreSQL 15.18".into(),
            in_ram: true,
            run_dir: "/dev/shm/x".into(),
            log: "/dev/shm/x/server.log".into(),
            server_user: "postgres".into(),
        }),
        Event::TestSlower {
            test: test("varies"),
            duration: Duration::from_millis(1500),
            median: Duration::from_millis(50),
        },
        Event::ClusterMemory {
            peak_bytes: 45 << 20,
            ram: peak(40, 60),
            phases: vec![crate::events::PhaseMemory {
                phase: Phase::Template,
                peak: peak(30, 50),
            }],
        },
    ];
    let text = render(&events);
    assert!(
        text.contains("data in RAM (tmpfs), peak RAM 100.0 MiB (server processes 40.0 MiB + data directory 60.0 MiB)"),
        "{text}"
    );
    assert!(
        text.contains(
            " SLOWER [   1.500s] probe::isolation varies (median of its last passing runs: 0.050s)"
        ),
        "{text}"
    );
    assert!(!text.contains("peak per phase"), "only with -v: {text}");
    let mut buffer = Vec::new();
    let mut summary = Summary::default();
    let mut human = Human::new(&mut buffer, Styles::new(false, false), true, false);
    for event in &events {
        summary.record(event);
        human.report(event);
    }
    human.finish(&summary).unwrap();
    let verbose = String::from_utf8(buffer).unwrap();
    assert!(
        verbose
            .contains("Memory peak per phase: migrations+fixtures 80.0 MiB (30.0 MiB + 50.0 MiB)"),
        "{verbose}"
    );
}

#[test]
fn no_summary_when_the_run_stopped_before_the_tests() {
    let text = render(&[Event::PhaseFinished {
        phase: Phase::ClusterBoot,
        duration: Duration::from_millis(450),
    }]);
    assert!(!text.contains("Summary"), "{text}");
}

fn retry(name: &str, attempt: usize, output: &str) -> Event {
    Event::TestRetry {
        test: test(name),
        attempt,
        outcome: Outcome::Failed {
            exit_code: Some(101),
        },
        duration: Some(Duration::from_millis(5)),
        output: output.into(),
    }
}

#[test]
fn a_test_passing_on_a_retry_is_flaky_with_its_failed_attempts_output() {
    let text = render(&[
        Event::RunStarted {
            to_run: 1,
            filtered_out: 0,
            jobs: 1,
            shared: false,
        },
        retry("flaky", 1, "boom on attempt 1"),
        Event::TestFinished {
            test: test("flaky"),
            outcome: Outcome::Passed,
            duration: Some(Duration::from_millis(7)),
            output: String::new(),
        },
    ]);
    assert!(
        text.contains("TRY 1 FAIL [   0.005s] probe::isolation flaky"),
        "{text}"
    );
    assert!(
        text.contains("  FLAKY [   0.007s] probe::isolation flaky"),
        "{text}"
    );
    assert!(
        text.contains("--- attempt 1: FAIL ---\nboom on attempt 1"),
        "{text}"
    );
    assert!(text.contains("1 passed (1 flaky), 0 failed"), "{text}");
    assert!(!text.contains(" PASS "), "{text}");
}
