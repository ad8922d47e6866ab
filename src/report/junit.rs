//! A JUnit XML report (one `<testsuite>` per test binary), written when the run ends, for CI systems.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::{Reporter, Summary};
use crate::runner::events::{Event, Outcome};

struct Case {
    name: String,
    outcome: Option<Outcome>,
    duration: Option<Duration>,
    output: String,
}

pub struct Junit {
    path: PathBuf,
    suites: BTreeMap<String, Vec<Case>>,
}

impl Junit {
    pub fn new(path: PathBuf) -> Self {
        Junit {
            path,
            suites: BTreeMap::new(),
        }
    }

    pub fn render(&self) -> String {
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"cargo-pgtest\">\n",
        );
        for (suite, cases) in &self.suites {
            let failures = cases
                .iter()
                .filter(|c| c.outcome.as_ref().is_some_and(|o| !o.is_success()))
                .count();
            let skipped = cases.iter().filter(|c| c.outcome.is_none()).count();
            let time: f64 = cases
                .iter()
                .filter_map(|c| c.duration)
                .map(|d| d.as_secs_f64())
                .sum();
            xml.push_str(&format!(
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time:.3}\">\n",
                escape(suite),
                cases.len()
            ));
            for case in cases {
                let time = case.duration.map_or(0.0, |d| d.as_secs_f64());
                xml.push_str(&format!(
                    "    <testcase name=\"{}\" classname=\"{}\" time=\"{time:.3}\"",
                    escape(&case.name),
                    escape(suite)
                ));
                match &case.outcome {
                    Some(Outcome::Passed) => xml.push_str("/>\n"),
                    None => xml.push_str(">\n      <skipped/>\n    </testcase>\n"),
                    Some(outcome) => {
                        let message = match outcome {
                            Outcome::Failed { exit_code } => format!(
                                "test failed (exit code {})",
                                exit_code.map_or("?".to_owned(), |c| c.to_string())
                            ),
                            Outcome::Crashed { signal } => format!("test crashed ({signal})"),
                            Outcome::TimedOut => "test timed out".to_owned(),
                            Outcome::NotRun { reason } => format!("test not run: {reason}"),
                            Outcome::Passed => unreachable!("handled above"),
                        };
                        xml.push_str(&format!(
                            ">\n      <failure message=\"{}\" type=\"{}\"/>\n      <system-out>{}</system-out>\n    </testcase>\n",
                            escape(&message),
                            super::json::status(outcome),
                            escape(&case.output)
                        ));
                    }
                }
            }
            xml.push_str("  </testsuite>\n");
        }
        xml.push_str("</testsuites>\n");
        xml
    }
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            // Control characters other than tab and newlines are not allowed in XML 1.0.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {
                escaped.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => escaped.push(c),
        }
    }
    escaped
}

impl Reporter for Junit {
    fn report(&mut self, event: &Event) {
        let (test, case) = match event {
            Event::TestFinished {
                test,
                outcome,
                duration,
                output,
            } => (
                test,
                Case {
                    name: test.name.clone(),
                    outcome: Some(outcome.clone()),
                    duration: *duration,
                    output: output.clone(),
                },
            ),
            Event::TestIgnored { test } => (
                test,
                Case {
                    name: test.name.clone(),
                    outcome: None,
                    duration: None,
                    output: String::new(),
                },
            ),
            _ => return,
        };
        self.suites
            .entry(test.binary.clone())
            .or_default()
            .push(case);
    }

    fn finish(&mut self, _summary: &Summary) -> std::io::Result<()> {
        let mut file = std::fs::File::create(&self.path)?;
        file.write_all(self.render().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::events::TestId;

    #[test]
    fn failures_and_skips_are_marked_and_text_is_escaped() {
        let mut junit = Junit::new(PathBuf::from("/dev/null"));
        let id = |name: &str| TestId {
            binary: "app::it".into(),
            name: name.into(),
        };
        junit.report(&Event::TestFinished {
            test: id("ok"),
            outcome: Outcome::Passed,
            duration: Some(Duration::from_millis(5)),
            output: String::new(),
        });
        junit.report(&Event::TestFinished {
            test: id("bad"),
            outcome: Outcome::Failed {
                exit_code: Some(101),
            },
            duration: None,
            output: "a < b & \u{1b}[0m".into(),
        });
        junit.report(&Event::TestIgnored { test: id("later") });
        let xml = junit.render();
        assert!(
            xml.contains(
                "<testsuite name=\"app::it\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""
            ),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"test failed (exit code 101)\" type=\"failed\"/>"),
            "{xml}"
        );
        assert!(xml.contains("a &lt; b &amp; \\u{1b}[0m"), "{xml}");
        assert!(xml.contains("<skipped/>"), "{xml}");
    }
}
