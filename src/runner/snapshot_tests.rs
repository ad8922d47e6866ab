//! The runner's side of named snapshots ([`crate::template::snapshots`]): which chosen test starts from
//! which snapshot ([`decide`], shared with `cargo pgtest list`), and the `from_test` snapshots built before
//! the other tests ([`build`]): the builder runs alone against a fresh copy of its template, is reported
//! like any test, and what it leaves is sealed as the snapshot. A builder that does not pass fails the run
//! (its own FAIL, with its output), and the tests that needed its snapshot are NOT RUN, saying why.
//!
//! Snapshots apply to tests with a database of their own (`isolation = "test"`, not `#[sqlx::test]`,
//! whose databases sqlx makes from template1): the others start from the plain template, with a warning.

use std::collections::{BTreeMap, BTreeSet};

use super::dispatch::{Dispatcher, TestResult};
use crate::events::{Outcome, TestId};
use super::exec::{self, Limits};
use super::list::TestCase;
use crate::cancel::Cancel;
use crate::cluster::Endpoint;
use crate::config::Isolation;
use crate::template::snapshots::{self, NamedSnapshots, SnapshotsError};
use crate::template::{server_message, MaintenancePool, Extras};

/// What the snapshots mean for the chosen tests.
#[derive(Debug, Default)]
pub(crate) struct Starts {
    /// A chosen test → the snapshot (index into the plan) it starts from.
    pub(crate) of_test: BTreeMap<TestId, usize>,
    /// The tests that build the `from_test` snapshots the chosen tests need, run first.
    pub(crate) builders: Vec<(usize, TestCase)>,
}

/// Decides which of the chosen tests (`run`) start from which snapshot, over every `listed` test so that a
/// test named by two snapshots is refused whatever the filter; finds the builders the chosen tests need
/// (under per-test isolation) and takes them out of `run`, since they run first.
pub(crate) fn decide(
    plan: &NamedSnapshots,
    listed: &[TestCase],
    run: &mut Vec<TestCase>,
    isolation: Isolation,
) -> Result<Starts, SnapshotsError> {
    if plan.is_empty() {
        return Ok(Starts::default());
    }
    let ids: Vec<TestId> = listed.iter().map(TestCase::id).collect();
    let all = plan.starting_points(&ids)?;
    let chosen: BTreeSet<TestId> = run.iter().map(TestCase::id).collect();
    let mut of_test: BTreeMap<TestId, usize> = all
        .into_iter()
        .filter(|(test, _)| chosen.contains(test))
        .collect();
    let mut builders = Vec::new();
    if isolation == Isolation::Test {
        let needed: BTreeSet<usize> = of_test.values().copied().collect();
        for index in needed {
            let Some(builder) = plan.builder(index, &ids)? else {
                continue;
            };
            let builder = builder.clone();
            run.retain(|case| case.id() != builder);
            of_test.remove(&builder);
            if let Some(case) = listed.iter().find(|case| case.id() == builder) {
                builders.push((index, case.clone()));
            }
        }
    }
    Ok(Starts { of_test, builders })
}

/// What running the builders needs.
pub(crate) struct Builders<'a> {
    pub(crate) databases: &'a MaintenancePool,
    pub(crate) endpoint: &'a Endpoint,
    pub(crate) database_env: &'a str,
    /// The extra databases, of which a builder gets fresh copies like every test (a snapshot holds the
    /// main database only: the copies are dropped after it).
    pub(crate) extras: &'a Extras,
    pub(crate) limits: Limits,
    pub(crate) cancel: &'a Cancel,
    pub(crate) dispatch: &'a Dispatcher,
}

impl Builders<'_> {
    /// Builds the `from_test` snapshots, one builder after another; returns those that were not built.
    pub(crate) async fn build(&self, starts: &Starts, plan: &NamedSnapshots) -> BTreeSet<usize> {
        let mut failed = BTreeSet::new();
        for (index, case) in &starts.builders {
            let Some(snapshot) = plan.snapshots.get(*index) else {
                continue;
            };
            if self.cancel.signal().is_some() || !self.build_one(case, snapshot).await {
                failed.insert(*index);
            }
        }
        failed
    }

    /// Runs `case` against a fresh copy of the snapshot's template and seals what it leaves; true when the
    /// snapshot is ready.
    async fn build_one(&self, case: &TestCase, snapshot: &snapshots::NamedSnapshot) -> bool {
        self.dispatch.started(case.id(), None);
        let extras = self.extras;
        if let Err(error) = extras
            .create_with(self.databases, &snapshot.base, &snapshot.database)
            .await
        {
            extras.drop_for(self.databases, &snapshot.database).await;
            let reason = format!(
                "the database for snapshot `{}` could not be created: {}",
                snapshot.name,
                server_message(&error)
            );
            self.dispatch.not_run([case.id()], &reason);
            return false;
        }
        let env = self.endpoint.env(&snapshot.database, self.database_env);
        let env = extras.with_env(env, self.endpoint, &snapshot.database);
        let cancel = self.cancel.clone();
        let result = exec::run_alone(case, &env, self.limits, cancel, self.dispatch).await;
        extras.drop_for(self.databases, &snapshot.database).await;
        let passed = result.outcome == Outcome::Passed;
        let sealed = match passed {
            true => snapshots::seal(self.endpoint, snapshot).await,
            false => Ok(()),
        };
        let ready = passed && sealed.is_ok();
        let result = match sealed {
            Ok(()) => result,
            Err(error) => TestResult {
                outcome: Outcome::Failed { exit_code: None },
                output: format!("{}\n{error}\n", result.output),
                ..result
            },
        };
        self.dispatch.finished(case.id(), result);
        ready
    }
}

/// The tests of `cases` that start from a snapshot, with the database each is cloned from; the ones whose
/// snapshot was not built are NOT RUN and left out of the returned cases.
pub(crate) fn assign(
    cases: Vec<TestCase>,
    starts: &Starts,
    plan: &NamedSnapshots,
    failed: &BTreeSet<usize>,
    dispatch: &Dispatcher,
) -> (Vec<TestCase>, BTreeMap<TestId, String>) {
    let mut databases = BTreeMap::new();
    let mut kept = Vec::with_capacity(cases.len());
    for case in cases {
        let id = case.id();
        let snapshot = starts
            .of_test
            .get(&id)
            .and_then(|index| Some((*index, plan.snapshots.get(*index)?)));
        match snapshot {
            Some((index, snapshot)) if failed.contains(&index) => {
                let builder = snapshot.from_test.as_deref().unwrap_or_default();
                let reason = format!(
                    "it starts from snapshot `{}`, which was not built: its from_test `{builder}` did \
                     not pass (see its result)",
                    snapshot.name
                );
                dispatch.not_run([id], &reason);
            }
            Some((_, snapshot)) => {
                databases.insert(id, snapshot.database.clone());
                kept.push(case);
            }
            None => kept.push(case),
        }
    }
    (kept, databases)
}

/// The warning for chosen tests a snapshot names but that do not get a database of their own (shared
/// isolation, `#[sqlx::test]`): they start from the plain template.
pub(crate) fn not_applied(
    starts: &Starts,
    plan: &NamedSnapshots,
    tests: &[TestId],
) -> Option<String> {
    let named: Vec<&TestId> = tests
        .iter()
        .filter(|test| starts.of_test.contains_key(test))
        .collect();
    let first = named.first()?;
    let snapshot = starts
        .of_test
        .get(first)
        .and_then(|index| plan.snapshots.get(*index))
        .map_or("", |s| s.name.as_str());
    Some(format!(
        "{} tests named by a snapshot (such as {first}, by `{snapshot}`) start from the plain template: \
         snapshots apply to tests with a database of their own (isolation = \"test\", not #[sqlx::test])",
        named.len()
    ))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::cargo::TestBinary;
    use crate::config::Origin;
    use crate::template::snapshots::NamedSnapshot;

    fn plan() -> NamedSnapshots {
        let snapshot = |name: &str, pattern: &str, from_test: Option<&str>| NamedSnapshot {
            name: name.into(),
            database: format!("pgtest_snapshot_{name}"),
            base: "pgtest_template".into(),
            tests: vec![pattern.into()],
            from_test: from_test.map(str::to_owned),
            fixtures: Vec::new(),
            origin: Origin {
                table: String::new(),
                manifest: PathBuf::new(),
                line: None,
            },
        };
        NamedSnapshots {
            snapshots: vec![
                snapshot("catalog", "catalog::", None),
                snapshot("built", "built::", Some("setup::build")),
            ],
        }
    }

    fn cases(names: &[&str]) -> Vec<TestCase> {
        let binary = Arc::new(TestBinary {
            id: "app::it".into(),
            package: "app".into(),
            path: PathBuf::from("/bin/true"),
            cwd: PathBuf::from("/"),
            env: vec![],
        });
        names
            .iter()
            .map(|name| TestCase {
                binary: Arc::clone(&binary),
                name: (*name).into(),
                ignored: false,
            })
            .collect()
    }

    fn names(cases: &[TestCase]) -> Vec<&str> {
        cases.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn a_needed_builder_runs_first_even_when_filtered_out_and_only_then() {
        let listed = cases(&["setup::build", "built::a", "catalog::b", "plain"]);
        let mut run = cases(&["setup::build", "built::a", "plain"]);
        let starts = decide(&plan(), &listed, &mut run, Isolation::Test).unwrap();
        assert_eq!(
            names(&run),
            ["built::a", "plain"],
            "the builder is taken out"
        );
        let builders: Vec<_> = starts
            .builders
            .iter()
            .map(|(i, c)| (*i, c.name.as_str()))
            .collect();
        assert_eq!(builders, [(1, "setup::build")]);
        assert_eq!(starts.of_test.len(), 1, "catalog::b is not chosen");

        let mut filtered = cases(&["built::a"]);
        let starts = decide(&plan(), &listed, &mut filtered, Isolation::Test).unwrap();
        assert_eq!(
            starts.builders.len(),
            1,
            "built although the filter left it out"
        );

        let mut unneeded = cases(&["catalog::b", "plain"]);
        let starts = decide(&plan(), &listed, &mut unneeded, Isolation::Test).unwrap();
        assert!(starts.builders.is_empty(), "no chosen test needs `built`");

        let mut shared = cases(&["setup::build", "built::a"]);
        let starts = decide(&plan(), &listed, &mut shared, Isolation::Shared).unwrap();
        assert!(
            starts.builders.is_empty() && shared.len() == 2,
            "shared runs build nothing"
        );
        let ids: Vec<TestId> = shared.iter().map(TestCase::id).collect();
        let warning = not_applied(&starts, &plan(), &ids).unwrap();
        assert!(
            warning
                .starts_with("1 tests named by a snapshot (such as app::it built::a, by `built`)"),
            "{warning}"
        );
    }

    #[test]
    fn tests_of_an_unbuilt_snapshot_are_not_run_and_the_others_get_their_database() {
        let listed = cases(&["built::a", "catalog::b", "plain", "setup::build"]);
        let mut run = listed.clone();
        let starts = decide(&plan(), &listed, &mut run, Isolation::Test).unwrap();
        let (events, mut receiver) = crate::events::channel();
        let dispatch = Dispatcher::new(events);
        let failed = BTreeSet::from([1]);
        let (kept, databases) = assign(run, &starts, &plan(), &failed, &dispatch);
        assert_eq!(names(&kept), ["catalog::b", "plain"]);
        let database: Vec<&str> = databases.values().map(String::as_str).collect();
        assert_eq!(database, ["pgtest_snapshot_catalog"]);
        let event = receiver.try_recv().unwrap();
        let text = format!("{event:?}");
        assert!(
            text.contains("built::a") && text.contains("which was not built"),
            "{text}"
        );
    }
}
