//! `cargo pgtest list`: the tests a run executes and how each is isolated, decided by [`arrange`], which
//! the run itself uses to split its tests, so the list and the run cannot disagree.

use serde::Serialize;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::dispatch::Dispatcher;
use crate::events::{EventSender, TestId};
use super::list::{IgnoredMode, TestArgs, TestCase};
use super::read_only::Group;
use super::snapshot_tests::decide;
use super::supervisor::{self, Watch};
use super::{by_binary, choose, self_isolating_batches, Batch, DocTests, RunnerError};
use crate::cancel::Cancel;
use crate::cargo::TestBinary;
use crate::config::Isolation;
use crate::template::snapshots::NamedSnapshots;

/// How a test gets its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// A fresh clone of its package's template, in a process of its own.
    Own,
    /// Its binary's tests run together against one database of the package (`isolation = "shared"`).
    Shared,
    /// A `#[sqlx::test]`: sqlx makes (and drops) its database itself.
    Sqlx,
    /// Found read-only by earlier runs: runs with others of its binary in a read-only group, one
    /// database per group (see [`super::read_only`]).
    Group,
}

impl Kind {
    /// The word `list` prints.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Own => "own",
            Kind::Shared => "shared",
            Kind::Sqlx => "sqlx",
            Kind::Group => "group",
        }
    }
}

/// One test a run executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Listed {
    #[serde(flatten)]
    pub(crate) test: TestId,
    pub(crate) isolation: Kind,
    /// An ignored test asked for (`--ignored`, `--include-ignored`).
    pub(crate) ignored: bool,
    /// The named snapshot the test's database is a copy of, if not the plain template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) snapshot: Option<String>,
    /// The `from_test` snapshot this test builds (it runs first, against a copy of the template).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) builds_snapshot: Option<String>,
}

/// The chosen tests, split the way the run executes them.
#[derive(Debug, Default)]
pub(super) struct Arrangement {
    /// `#[sqlx::test]`s, run together per binary (they make their own databases).
    pub(super) sqlx: Vec<Batch>,
    /// Whole binaries against a shared database.
    pub(super) shared: Vec<Batch>,
    /// One process and one fresh database each.
    pub(super) alone: Vec<TestCase>,
}

/// Splits the chosen cases by how they are isolated: the one place that decides it per test.
pub(super) fn arrange(cases: Vec<TestCase>, isolation: Isolation) -> Arrangement {
    match isolation {
        Isolation::Shared => Arrangement {
            shared: by_binary(cases),
            ..Arrangement::default()
        },
        Isolation::Test => {
            let (sqlx, alone) = self_isolating_batches(cases);
            Arrangement {
                sqlx,
                alone,
                ..Arrangement::default()
            }
        }
    }
}

impl Arrangement {
    /// The tests that run together in a process (`#[sqlx::test]`s, shared isolation).
    pub(super) fn batched<'a>(&'a self) -> impl Iterator<Item = &'a TestCase> {
        let cases = |(_, cases): &'a Batch| cases.iter();
        self.sqlx.iter().chain(&self.shared).flat_map(cases)
    }

    /// Every test, in the order the run starts them, with its isolation.
    fn listed(&self) -> Vec<Listed> {
        let entry = |case: &TestCase, isolation| Listed {
            test: case.id(),
            isolation,
            ignored: case.ignored,
            snapshot: None,
            builds_snapshot: None,
        };
        let batched = |batches: &[Batch], kind| {
            batches
                .iter()
                .flat_map(|(_, cases)| cases.iter().map(move |case| entry(case, kind)))
                .collect::<Vec<_>>()
        };
        let mut listed = batched(&self.sqlx, Kind::Sqlx);
        listed.extend(batched(&self.shared, Kind::Shared));
        listed.extend(self.alone.iter().map(|case| entry(case, Kind::Own)));
        listed
    }
}

/// Lists the binaries and arranges their tests exactly as [`super::run`] does, with the snapshot each
/// starts from (builders of `from_test` snapshots first, as they run); None if stopped first.
pub(crate) async fn list(
    binaries: Vec<TestBinary>,
    args: &TestArgs,
    (isolation, snapshots): (Isolation, &NamedSnapshots),
    (read_only, jobs): (&BTreeMap<TestId, Duration>, usize),
    partition: Option<super::partition::Partition>,
    cancel: &Cancel,
    events: &EventSender,
) -> Result<Option<Vec<Listed>>, RunnerError> {
    let dispatch = Dispatcher::new(events.clone());
    let Some(mut chosen) = choose(binaries, args, partition, cancel, &dispatch).await? else {
        return Ok(None);
    };
    let starts = decide(snapshots, &chosen.listed, &mut chosen.run, isolation)?;
    let name_of = |index: &usize| snapshots.snapshots.get(*index).map(|s| s.name.clone());
    let mut listed: Vec<Listed> = starts
        .builders
        .iter()
        .map(|(index, case)| Listed {
            test: case.id(),
            isolation: Kind::Own,
            ignored: case.ignored,
            snapshot: None,
            builds_snapshot: name_of(index),
        })
        .collect();
    let arranged = arrange(chosen.run, isolation);
    let from_snapshot = |test: &TestId| starts.of_test.contains_key(test);
    let (groups, _) =
        super::read_only::split(arranged.alone.clone(), read_only, from_snapshot, jobs);
    let grouped: BTreeSet<TestId> = groups.iter().flat_map(Group::tests).collect();
    let mut arranged = arranged.listed();
    for entry in &mut arranged {
        if entry.isolation == Kind::Own {
            entry.snapshot = starts.of_test.get(&entry.test).and_then(name_of);
        }
        if grouped.contains(&entry.test) {
            entry.isolation = Kind::Group;
        }
    }
    // The read-only groups run before the tests that run alone.
    arranged.sort_by_key(|entry| match entry.isolation {
        Kind::Sqlx | Kind::Shared => 0,
        Kind::Group => 1,
        Kind::Own => 2,
    });
    listed.extend(arranged);
    Ok(Some(listed))
}

/// The doc tests `cargo test --doc` would run, listed by it (`-- --list`) with the run's own arguments and
/// `env` (a database to build against); they share one database in a run. None if stopped first.
pub(crate) async fn list_doc_tests(
    doc: &DocTests,
    args: &TestArgs,
    env: &[(String, String)],
    cancel: &Cancel,
    events: &EventSender,
) -> Result<Option<Vec<Listed>>, RunnerError> {
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
            .map(|(crate_name, name)| Listed {
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
pub(crate) fn to_text(listed: &[Listed]) -> String {
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
pub(crate) fn to_json_lines(listed: &[Listed]) -> Result<String, serde_json::Error> {
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
    use std::path::PathBuf;
    use std::sync::Arc;

    fn case(binary: &Arc<TestBinary>, name: &str, ignored: bool) -> TestCase {
        TestCase {
            binary: Arc::clone(binary),
            name: name.to_owned(),
            ignored,
        }
    }

    fn binary(id: &str) -> Arc<TestBinary> {
        Arc::new(TestBinary {
            id: id.to_owned(),
            path: PathBuf::from(format!("/bin/{id}")),
            cwd: PathBuf::from("/nonexistent/pgtest-list"),
            package: "app".to_owned(),
            env: Vec::new(),
        })
    }

    #[test]
    fn shared_isolation_lists_every_test_as_shared_in_binary_order() {
        let (a, b) = (binary("app::a"), binary("app::b"));
        let cases = vec![
            case(&a, "one", false),
            case(&b, "two", true),
            case(&a, "three", false),
        ];
        let listed = arrange(cases, Isolation::Shared).listed();
        let text = to_text(&listed);
        assert_eq!(
            text,
            "shared app::a one\nshared app::a three\nshared app::b two (ignored)\n"
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
    fn test_isolation_gives_each_test_its_own_database() {
        let a = binary("app::a");
        let listed = arrange(vec![case(&a, "one", false)], Isolation::Test).listed();
        assert_eq!(to_text(&listed), "own    app::a one\n");
    }

    #[test]
    fn a_test_s_snapshot_is_listed_and_in_the_json_only_when_it_has_one() {
        let a = binary("app::a");
        let mut listed = arrange(
            vec![case(&a, "one", false), case(&a, "two", false)],
            Isolation::Test,
        )
        .listed();
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
