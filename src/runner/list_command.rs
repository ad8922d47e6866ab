//! `cargo pgtest list`'s output: the schedule's entries ([`super::schedule::Schedule::entries`], the order
//! and isolation a run uses), the doc tests `cargo test --doc` lists, and the text and JSON-lines forms.

use std::time::Instant;

use super::dispatch::Dispatcher;
use super::schedule::{Entry, Kind};
use super::selection::{IgnoredMode, TestArgs};
use super::supervisor::{self, Watch};
use super::{DocTests, RunnerError};
use crate::cancel::Cancel;
use crate::events::{EventSender, TestId};

/// The doc tests `cargo test --doc` would run, listed by it (`-- --list`) with the run's own arguments and
/// `env` (a database to build against); they share one database in a run. None if stopped first.
pub(crate) async fn list_doc_tests(
    doc: &DocTests,
    args: &TestArgs,
    env: &[(String, String)],
    cancel: &Cancel,
    events: &EventSender,
) -> Result<Option<Vec<Entry>>, RunnerError> {
    let dispatch = Dispatcher::new(events.clone());
    let Some(all) = doc_list(doc, args, env, &[], cancel, &dispatch).await? else {
        return Ok(None);
    };
    // libtest lists ignored tests too; a run reports them IGNORED unless they are asked for.
    let ignored = match args.ignored {
        IgnoredMode::Skip => doc_list(doc, args, env, &["--ignored"], cancel, &dispatch).await?,
        IgnoredMode::Only | IgnoredMode::Include => Some(Vec::new()),
    };
    let Some(ignored) = ignored else {
        return Ok(None);
    };
    let only_ignored = args.ignored == IgnoredMode::Only;
    Ok(Some(
        all.into_iter()
            .filter(|test| !ignored.contains(test))
            .map(|(crate_name, name)| Entry {
                test: TestId {
                    binary: format!("{}::doc", doc.package_of_crate(&crate_name)),
                    name,
                },
                isolation: Kind::Shared,
                ignored: only_ignored,
                snapshot: None,
                builds_snapshot: None,
            })
            .collect(),
    ))
}

/// `cargo test --doc ... -- --list --format terse` (with `extra`): (crate, test) pairs.
async fn doc_list(
    doc: &DocTests,
    args: &TestArgs,
    env: &[(String, String)],
    extra: &[&str],
    cancel: &Cancel,
    dispatch: &Dispatcher,
) -> Result<Option<Vec<(String, String)>>, RunnerError> {
    let mut command = tokio::process::Command::new(crate::cargo::cargo_program());
    command
        .args(super::doc::cargo_args(doc, args, 1))
        .args(["--list", "--format", "terse"])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)));
    let mut watch = DocList::default();
    let ended = supervisor::supervise(command, None, cancel.clone(), dispatch, &mut watch)
        .await
        .map_err(|source| RunnerError::Spawn {
            binary: crate::cargo::cargo_program().into(),
            source,
        })?;
    if ended.stopped.is_some() {
        return Ok(None);
    }
    if !ended.status.is_some_and(|status| status.success()) {
        return Err(RunnerError::List {
            binary: "doc tests (cargo test --doc)".to_owned(),
            status: ended
                .status
                .map_or_else(|| "exit status unknown".to_owned(), |s| s.to_string()),
            stderr: crate::cluster::server::last_lines(&watch.text, 20),
        });
    }
    Ok(Some(watch.tests))
}

/// What `cargo test --doc -- --list` prints: a `Doc-tests CRATE` line, then that crate's `NAME: test` lines.
#[derive(Default)]
struct DocList {
    crate_name: String,
    tests: Vec<(String, String)>,
    text: String,
}

impl Watch for DocList {
    fn line(&mut self, line: &str, _: &Dispatcher) {
        self.text.push_str(line);
        self.text.push('\n');
        if let Some(name) = line.trim_start().strip_prefix("Doc-tests ") {
            self.crate_name = name.trim().to_owned();
        } else if let Some(test) = line.strip_suffix(": test") {
            self.tests.push((self.crate_name.clone(), test.to_owned()));
        }
    }

    fn running(&self) -> Vec<(TestId, Instant)> {
        Vec::new()
    }
}

/// `list`'s text: one test per line, its isolation first (padded, so the names line up).
pub(crate) fn to_text(listed: &[Entry]) -> String {
    listed
        .iter()
        .map(|entry| {
            let ignored = if entry.ignored { " (ignored)" } else { "" };
            let snapshot = match (&entry.snapshot, &entry.builds_snapshot) {
                (Some(name), _) => format!(" (from snapshot {name})"),
                (None, Some(name)) => format!(" (builds snapshot {name})"),
                (None, None) => String::new(),
            };
            format!(
                "{:<6} {} {}{ignored}{snapshot}\n",
                entry.isolation.label(),
                entry.test.binary,
                entry.test.name
            )
        })
        .collect()
}

/// `list --json`'s text: one JSON object per line (`binary`, `name`, `isolation`, `ignored`, and
/// `snapshot` / `builds_snapshot` when the test has one).
pub(crate) fn to_json_lines(listed: &[Entry]) -> Result<String, serde_json::Error> {
    let mut text = String::new();
    for entry in listed {
        text.push_str(&serde_json::to_string(entry)?);
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(binary: &str, name: &str, isolation: Kind, ignored: bool) -> Entry {
        Entry {
            test: TestId {
                binary: binary.into(),
                name: name.into(),
            },
            isolation,
            ignored,
            snapshot: None,
            builds_snapshot: None,
        }
    }

    #[test]
    fn each_entry_is_a_line_with_its_isolation_padded_and_a_json_object() {
        let listed = [
            entry("app::a", "one", Kind::Shared, false),
            entry("app::b", "two", Kind::Shared, true),
            entry("app::c", "three", Kind::Own, false),
        ];
        assert_eq!(
            to_text(&listed),
            "shared app::a one\nshared app::b two (ignored)\nown    app::c three\n"
        );
        let json = to_json_lines(&listed).unwrap();
        let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"binary": "app::a", "name": "one", "isolation": "shared", "ignored": false})
        );
    }

    #[test]
    fn doc_test_lists_are_read_crate_by_crate() {
        let (sender, _receiver) = crate::events::channel();
        let dispatch = Dispatcher::new(sender);
        let mut watch = DocList::default();
        let text = "   Doc-tests my_app\nsrc/lib.rs - add (line 3): test\n\n1 test, 0 benchmarks\n   Doc-tests other\nsrc/lib.rs - x (line 1): test\n";
        for line in text.lines() {
            watch.line(line, &dispatch);
        }
        assert_eq!(
            watch.tests,
            [
                ("my_app".to_owned(), "src/lib.rs - add (line 3)".to_owned()),
                ("other".to_owned(), "src/lib.rs - x (line 1)".to_owned())
            ]
        );
    }

    #[test]
    fn a_test_s_snapshot_is_listed_and_in_the_json_only_when_it_has_one() {
        let mut listed = [
            entry("app::a", "one", Kind::Own, false),
            entry("app::a", "two", Kind::Own, false),
        ];
        listed[0].snapshot = Some("catalog".into());
        listed[1].builds_snapshot = Some("built".into());
        assert_eq!(
            to_text(&listed),
            "own    app::a one (from snapshot catalog)\nown    app::a two (builds snapshot built)\n"
        );
        let json = to_json_lines(&listed).unwrap();
        let lines: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["snapshot"], "catalog");
        assert!(lines[0].get("builds_snapshot").is_none());
        assert_eq!(lines[1]["builds_snapshot"], "built");
    }
}
