//! A JUnit XML report (`--junit`) for CI systems, written with quick-junit when the run ends: one `<testsuite>`
//! per test binary, one `<testcase>` per test.
//!
//! The counts match the summary line: FAIL, crashes and TIMEOUT are `<failure>`s (the summary's "failed"),
//! NOT RUN is an `<error>` (it fails the run too, but no assertion of the test's failed), IGNORED is
//! `<skipped>`. A test that did not pass carries its output as `<system-out>`, with terminal escapes and the
//! characters XML cannot hold removed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::{Error, Reporter, Summary};
use crate::events::{Event, Outcome, Phase, TestId};

pub(crate) struct Junit {
    path: PathBuf,
    /// By binary, in name order.
    suites: BTreeMap<String, TestSuite>,
    /// Failed attempts of tests run again (`--retries`): `flakyFailure`s if the test then passes,
    /// `rerunFailure`s if it never does.
    reruns: BTreeMap<TestId, Vec<TestRerun>>,
}

impl Junit {
    pub(crate) fn new(path: PathBuf) -> Self {
        Junit {
            path,
            suites: BTreeMap::new(),
            reruns: BTreeMap::new(),
        }
    }

    fn add(&mut self, test: &TestId, case: TestCase) {
        let suite = self.suites.entry(test.binary.clone()).or_insert_with(|| {
            let mut suite = TestSuite::new(test.binary.as_str());
            suite.set_time(Duration::ZERO);
            suite
        });
        if let (Some(total), Some(time)) = (suite.time, case.time) {
            suite.set_time(total + time);
        }
        suite.add_test_case(case);
    }

    /// The report so far; its time is that of the tests phase, when the run got there.
    fn xml_report(&self, summary: &Summary) -> Report {
        let mut report = Report::new("cargo-pgtest");
        if let Some((_, tests)) = summary.phases.iter().find(|(p, _)| *p == Phase::Tests) {
            report.set_time(*tests);
        }
        report.add_test_suites(self.suites.values().cloned());
        report
    }
}

/// A failed attempt of a test that was run again.
fn rerun(outcome: &Outcome, duration: Option<Duration>, output: &str) -> TestRerun {
    let mut rerun = TestRerun::new(NonSuccessKind::Failure);
    rerun
        .set_message(xml_text(&format!("attempt {}", outcome.label())))
        .set_type(outcome.status());
    if let Some(duration) = duration {
        rerun.set_time(duration);
    }
    if !output.trim().is_empty() {
        rerun.set_system_out(xml_text(output));
    }
    rerun
}

impl Junit {
    /// Marks a test the history found far slower: two properties for tools, and a note in its output
    /// for people (a passing test has no other output here).
    fn mark_slower(&mut self, test: &TestId, now: Duration, median: Duration) {
        let Some(case) = self.suites.get_mut(&test.binary).and_then(|suite| {
            suite
                .test_cases
                .iter_mut()
                .find(|case| case.name.as_str() == test.name)
        }) else {
            return;
        };
        case.add_property(("pgtest.slower", "true"));
        case.add_property((
            "pgtest.history_median_seconds",
            format!("{:.3}", median.as_secs_f64()).as_str(),
        ));
        if case.system_out.is_none() {
            case.set_system_out(format!(
                "SLOWER: {:.3}s, against a median of {:.3}s over its last passing runs",
                now.as_secs_f64(),
                median.as_secs_f64()
            ));
        }
    }
}

/// A test that ran, with what the report says about its outcome.
fn finished_case(
    test: &TestId,
    outcome: &Outcome,
    duration: Option<Duration>,
    output: &str,
) -> TestCase {
    let (kind, message) = match outcome {
        Outcome::Passed => return case(test, TestCaseStatus::success(), duration),
        Outcome::Failed { exit_code } => (
            NonSuccessKind::Failure,
            format!(
                "test failed (exit code {})",
                exit_code.map_or("?".to_owned(), |c| c.to_string())
            ),
        ),
        Outcome::Crashed { signal } => {
            (NonSuccessKind::Failure, format!("test crashed ({signal})"))
        }
        Outcome::TimedOut => (NonSuccessKind::Failure, "test timed out".to_owned()),
        Outcome::NotRun { reason } => (NonSuccessKind::Error, format!("test not run: {reason}")),
    };
    let mut status = TestCaseStatus::non_success(kind);
    status
        .set_message(xml_text(&message))
        .set_type(outcome.status());
    let mut case = case(test, status, duration);
    if !output.trim().is_empty() {
        case.set_system_out(xml_text(output));
    }
    case
}

fn case(test: &TestId, status: TestCaseStatus, duration: Option<Duration>) -> TestCase {
    let mut case = TestCase::new(test.name.as_str(), status);
    case.set_classname(test.binary.as_str());
    if let Some(duration) = duration {
        case.set_time(duration);
    }
    case
}

/// `text` without the two characters quick-junit keeps that XML 1.0 does not allow (it removes terminal
/// escapes and the other control characters itself).
fn xml_text(text: &str) -> String {
    text.replace(['\u{fffe}', '\u{ffff}'], "\u{fffd}")
}

impl Reporter for Junit {
    fn report(&mut self, event: &Event) {
        match event {
            Event::TestFinished {
                test,
                outcome,
                duration,
                output,
            } => {
                let mut case = finished_case(test, outcome, *duration, output);
                case.status
                    .add_reruns(self.reruns.remove(test).unwrap_or_default());
                self.add(test, case);
            }
            Event::TestRetry {
                test,
                outcome,
                duration,
                output,
                ..
            } => {
                let rerun = rerun(outcome, *duration, output);
                self.reruns.entry(test.clone()).or_default().push(rerun);
            }
            Event::TestIgnored { test } => {
                let mut status = TestCaseStatus::skipped();
                status.set_message("ignored");
                self.add(test, case(test, status, None));
            }
            Event::TestSlower {
                test,
                duration,
                median,
            } => self.mark_slower(test, *duration, *median),
            _ => {}
        }
    }

    fn finish(&mut self, summary: &Summary) -> Result<(), Error> {
        let path = self.path.clone();
        let xml = self
            .xml_report(summary)
            .to_string()
            .map_err(|source| Error::JunitXml {
                path: path.clone(),
                source,
            })?;
        std::fs::write(&self.path, xml).map_err(|source| Error::Junit { path, source })
    }
}

#[cfg(test)]
mod tests {
    use roxmltree::{Document, Node};

    use super::*;

    fn id(binary: &str, name: &str) -> TestId {
        TestId {
            binary: binary.into(),
            name: name.into(),
        }
    }

    fn finished(name: &str, outcome: Outcome, output: &str) -> Event {
        Event::TestFinished {
            test: id("app::it", name),
            outcome,
            duration: Some(Duration::from_millis(250)),
            output: output.into(),
        }
    }

    /// Hostile output: a CDATA end, markup, terminal colours, control characters, and text that comes from a
    /// lossy decoding of bytes that were not UTF-8.
    const OUTPUT: &str = "a ]]> b <c> & 'd' \"e\"\n\u{1b}[31mred\u{1b}[0m \u{0}\u{7}\u{b}\u{fffe}\u{ffff} caf\u{e9} \u{fffd}\u{fffd} \u{1f418}";

    /// The events of a run with every kind of result, in two binaries, and its summary.
    fn run() -> (Junit, Summary) {
        let events = [
            finished("passes", Outcome::Passed, "noise"),
            finished(
                "fails",
                Outcome::Failed {
                    exit_code: Some(101),
                },
                OUTPUT,
            ),
            finished(
                "aborts",
                Outcome::Crashed {
                    signal: "SIGABRT".into(),
                },
                "about to abort",
            ),
            finished("hangs", Outcome::TimedOut, ""),
            finished(
                "stranded",
                Outcome::NotRun {
                    reason: "the server stopped".into(),
                },
                "",
            ),
            Event::TestIgnored {
                test: id("app::it", "later"),
            },
            Event::TestFinished {
                test: id("app", "doc_test"),
                outcome: Outcome::Passed,
                duration: None,
                output: String::new(),
            },
            Event::PhaseFinished {
                phase: Phase::Tests,
                duration: Duration::from_secs(2),
            },
        ];
        let mut junit = Junit::new(PathBuf::from("unused.xml"));
        let mut summary = Summary::default();
        for event in &events {
            summary.record(event);
            junit.report(event);
        }
        (junit, summary)
    }

    fn attribute<'a>(node: Node<'a, '_>, name: &str) -> &'a str {
        node.attribute(name)
            .unwrap_or_else(|| panic!("no {name} on {node:?}"))
    }

    fn case<'a, 'input>(document: &'a Document<'input>, name: &str) -> Node<'a, 'input> {
        document
            .descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no testcase {name}"))
    }

    fn child<'a, 'input>(node: Node<'a, 'input>, tag: &str) -> Option<Node<'a, 'input>> {
        node.children().find(|n| n.has_tag_name(tag))
    }

    #[test]
    fn the_report_parses_and_counts_like_the_summary() {
        let (junit, summary) = run();
        let xml = junit.xml_report(&summary).to_string().unwrap();
        let document = Document::parse(&xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
        let root = document.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        let counts = ["tests", "failures", "errors", "skipped"].map(|a| attribute(root, a));
        assert_eq!(counts, ["7", "3", "1", "1"], "{xml}");
        let failed = summary.failed + summary.crashed + summary.timed_out;
        assert_eq!(
            (failed, summary.not_run),
            (3, 1),
            "the same counts as the summary line"
        );
        assert_eq!(attribute(root, "time"), "2.000");
        let suites: Vec<(&str, &str)> = root
            .children()
            .filter(|n| n.has_tag_name("testsuite"))
            .map(|n| (attribute(n, "name"), attribute(n, "tests")))
            .collect();
        assert_eq!(suites, [("app", "1"), ("app::it", "6")]);
        let it = root
            .children()
            .find(|n| n.attribute("name") == Some("app::it"))
            .unwrap();
        assert_eq!(
            attribute(it, "time"),
            "1.250",
            "the sum of its tests' times"
        );
    }

    #[test]
    fn each_result_has_its_element_message_and_time() {
        let (junit, summary) = run();
        let xml = junit.xml_report(&summary).to_string().unwrap();
        let document = Document::parse(&xml).unwrap();
        let passes = case(&document, "passes");
        assert_eq!(attribute(passes, "classname"), "app::it");
        assert_eq!(attribute(passes, "time"), "0.250");
        assert_eq!(
            passes.children().filter(|n| n.is_element()).count(),
            0,
            "{xml}"
        );
        let expected = [
            ("fails", "failure", "failed", "test failed (exit code 101)"),
            ("aborts", "failure", "crashed", "test crashed (SIGABRT)"),
            ("hangs", "failure", "timed_out", "test timed out"),
            (
                "stranded",
                "error",
                "not_run",
                "test not run: the server stopped",
            ),
        ];
        for (name, tag, kind, message) in expected {
            let node = child(case(&document, name), tag).unwrap_or_else(|| panic!("{name}: {xml}"));
            assert_eq!(
                (attribute(node, "type"), attribute(node, "message")),
                (kind, message)
            );
        }
        let later = child(case(&document, "later"), "skipped").unwrap();
        assert_eq!(attribute(later, "message"), "ignored");
        let out = |name| child(case(&document, name), "system-out").and_then(|n| n.text());
        assert_eq!(out("aborts"), Some("about to abort"));
        assert_eq!(out("passes"), None, "a passing test's output is left out");
        assert_eq!(
            case(&document, "doc_test").attribute("time"),
            None,
            "no time known"
        );
    }

    #[test]
    fn hostile_output_stays_valid_xml_and_keeps_its_text() {
        let (junit, summary) = run();
        let xml = junit.xml_report(&summary).to_string().unwrap();
        let document = Document::parse(&xml).unwrap();
        let out = child(case(&document, "fails"), "system-out").and_then(|n| n.text());
        assert_eq!(
            out,
            Some("a ]]> b <c> & 'd' \"e\"\nred \u{fffd}\u{fffd} caf\u{e9} \u{fffd}\u{fffd} \u{1f418}"),
            "{xml}"
        );
    }

    #[test]
    fn finish_writes_the_file_or_names_it_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut junit, summary) = run();
        junit.path = dir.path().join("report.xml");
        junit.finish(&summary).unwrap();
        let written = std::fs::read_to_string(&junit.path).unwrap();
        assert!(Document::parse(&written).is_ok(), "{written}");
        junit.path = dir.path().join("missing").join("report.xml");
        let error = junit.finish(&summary).unwrap_err().to_string();
        assert!(error.contains(&junit.path.display().to_string()), "{error}");
    }

    #[test]
    fn retried_attempts_are_flaky_failures_or_rerun_failures() {
        let retry = |name: &str, output: &str| Event::TestRetry {
            test: id("app::it", name),
            attempt: 1,
            outcome: Outcome::Failed {
                exit_code: Some(101),
            },
            duration: Some(Duration::from_millis(5)),
            output: output.into(),
        };
        let events = [
            retry("flaky", "first try failed"),
            finished("flaky", Outcome::Passed, ""),
            retry("broken", "failed again"),
            finished(
                "broken",
                Outcome::Failed {
                    exit_code: Some(101),
                },
                "failed twice",
            ),
        ];
        let mut junit = Junit::new(PathBuf::from("unused.xml"));
        let mut summary = Summary::default();
        for event in &events {
            summary.record(event);
            junit.report(event);
        }
        let xml = junit.xml_report(&summary).to_string().unwrap();
        let document = Document::parse(&xml).unwrap();
        let flaky = case(&document, "flaky");
        let rerun = child(flaky, "flakyFailure").expect("a flakyFailure");
        assert!(child(flaky, "failure").is_none(), "{xml}");
        assert_eq!(
            child(rerun, "system-out").unwrap().text(),
            Some("first try failed")
        );
        let broken = case(&document, "broken");
        assert!(child(broken, "failure").is_some(), "{xml}");
        assert!(child(broken, "rerunFailure").is_some(), "{xml}");
        assert_eq!(summary.flaky.len(), 1);
    }
}
