//! Named snapshots: database states built once on top of a template, that the tests named by a snapshot's
//! `tests` patterns are cloned from instead of the plain template (through the same clone path,
//! [`super::MaintenancePool::create_from`]).
//!
//! - [`NamedSnapshots`]: the run's snapshots with their database names and base templates, and the one
//!   place that decides which test starts from which snapshot ([`NamedSnapshots::starting_points`]) and which
//!   test builds a `from_test` snapshot ([`NamedSnapshots::builder`]);
//! - `build`: the SQL that makes them: a fixture snapshot is built with the templates (so it is cached
//!   with the migrated cluster, its fixture files in the cache key); a `from_test` snapshot is a copy of
//!   the template that its test runs against, then sealed as a template. It is built in every run, not
//!   cached: its input is a test binary, which any edit of the crate rebuilds.

mod build;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::cluster::Endpoint;
use crate::config::{Origin, SnapshotSource, SnapshotSpec};
use crate::events::TestId;

use super::Template;
pub(crate) use build::{build_fixture_snapshots, seal};

/// One snapshot of the run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NamedSnapshot {
    pub(crate) name: String,
    /// The snapshot database (a template once built).
    pub(crate) database: String,
    /// The template it is a copy of.
    pub(crate) base: String,
    pub(crate) tests: Vec<String>,
    /// The test that builds it, for a `from_test` snapshot; fixture snapshots are built with the templates.
    pub(crate) from_test: Option<String>,
    /// The SQL files a fixture snapshot applies, in order; none for a `from_test` one.
    pub(crate) fixtures: Vec<PathBuf>,
    pub(crate) origin: Origin,
}

/// The run's snapshots; empty when none is configured.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NamedSnapshots {
    pub(crate) snapshots: Vec<NamedSnapshot>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotsError {
    #[error(
        "test `{test}` matches the `tests` of two snapshots, `{first}` ({first_origin}) and `{second}` \
         ({second_origin}); a test starts from one state, so make the patterns tell them apart"
    )]
    TwoSnapshots {
        test: String,
        first: String,
        first_origin: Box<Origin>,
        second: String,
        second_origin: Box<Origin>,
    },
    #[error(
        "`from_test = \"{pattern}\"` of snapshot `{name}` ({origin}) names no test of this run; write the \
         test's name as `cargo pgtest list` prints it"
    )]
    NoBuilder {
        name: String,
        pattern: String,
        origin: Box<Origin>,
    },
    #[error(
        "`from_test = \"{pattern}\"` of snapshot `{name}` ({origin}) names {count} tests ({examples}); \
         write the full name of the one that builds the state"
    )]
    SeveralBuilders {
        name: String,
        pattern: String,
        origin: Box<Origin>,
        count: usize,
        examples: String,
    },
    #[error("could not connect to the cluster to build snapshot `{name}`: {source}")]
    Connect { name: String, source: sqlx::Error },
    #[error("could not build snapshot `{name}` (database {database}): {message}")]
    Sql {
        name: String,
        database: String,
        message: String,
    },
    #[error("snapshot `{name}`: {source}")]
    Fixture {
        name: String,
        #[source]
        source: Box<super::TemplateError>,
    },
}

/// The full name a test is matched by: `binary name`, as `cargo pgtest list` prints it.
pub(crate) fn full_name(test: &TestId) -> String {
    format!("{} {}", test.binary, test.name)
}

impl NamedSnapshots {
    /// The snapshots of `specs`, each on its template in `templates` (in spec order); names made the
    /// run's own on an existing server.
    pub(crate) fn new(
        specs: &[SnapshotSpec],
        templates: &[Template],
        endpoint: &Endpoint,
    ) -> NamedSnapshots {
        let snapshots = specs
            .iter()
            .filter_map(|spec| {
                let base = templates.get(spec.base)?.name.clone();
                let database = format!("pgtest_snapshot_{}", spec.name.to_ascii_lowercase());
                Some(NamedSnapshot {
                    name: spec.name.clone(),
                    database: endpoint.database_name(&database).into_owned(),
                    base,
                    tests: spec.tests.clone(),
                    from_test: match &spec.source {
                        SnapshotSource::FromTest(test) => Some(test.clone()),
                        SnapshotSource::Fixtures(_) => None,
                    },
                    fixtures: match &spec.source {
                        SnapshotSource::Fixtures(files) => files.clone(),
                        SnapshotSource::FromTest(_) => Vec::new(),
                    },
                    origin: spec.origin.clone(),
                })
            })
            .collect();
        NamedSnapshots { snapshots }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
    }

    /// Which snapshot (index) each of `tests` starts from; a test no snapshot names is absent. A test named
    /// by two snapshots is refused; a snapshot's own builder starts from the plain template.
    pub(crate) fn starting_points<'t>(
        &self,
        tests: impl IntoIterator<Item = &'t TestId>,
    ) -> Result<BTreeMap<TestId, usize>, SnapshotsError> {
        let mut starts = BTreeMap::new();
        for test in tests {
            let full = full_name(test);
            let mut matching = self.snapshots.iter().enumerate().filter(|(_, snapshot)| {
                snapshot.tests.iter().any(|p| full.contains(p.as_str()))
                    && !snapshot.from_test.as_ref().is_some_and(|b| names(b, test))
            });
            let Some((index, first)) = matching.next() else {
                continue;
            };
            if let Some((_, second)) = matching.next() {
                return Err(SnapshotsError::TwoSnapshots {
                    test: full,
                    first: first.name.clone(),
                    first_origin: Box::new(first.origin.clone()),
                    second: second.name.clone(),
                    second_origin: Box::new(second.origin.clone()),
                });
            }
            starts.insert(test.clone(), index);
        }
        Ok(starts)
    }

    /// The test among `tests` that builds snapshot `index` (`None` for a fixture snapshot): the one whose
    /// name is `from_test` exactly, else the only one whose full name contains it.
    pub(crate) fn builder<'t>(
        &self,
        index: usize,
        tests: &'t [TestId],
    ) -> Result<Option<&'t TestId>, SnapshotsError> {
        let Some(snapshot) = self.snapshots.get(index) else {
            return Ok(None);
        };
        let Some(pattern) = &snapshot.from_test else {
            return Ok(None);
        };
        let exact: Vec<&TestId> = tests.iter().filter(|t| t.name == *pattern).collect();
        let found: Vec<&TestId> = match exact.len() {
            0 => tests.iter().filter(|t| names(pattern, t)).collect(),
            _ => exact,
        };
        match found.as_slice() {
            [one] => Ok(Some(one)),
            [] => Err(SnapshotsError::NoBuilder {
                name: snapshot.name.clone(),
                pattern: pattern.clone(),
                origin: Box::new(snapshot.origin.clone()),
            }),
            several => Err(SnapshotsError::SeveralBuilders {
                name: snapshot.name.clone(),
                pattern: pattern.clone(),
                origin: Box::new(snapshot.origin.clone()),
                count: several.len(),
                examples: several
                    .iter()
                    .take(3)
                    .map(|t| full_name(t))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

/// Whether `from_test` names `test`: its exact name, or a part of its full name.
fn names(from_test: &str, test: &TestId) -> bool {
    test.name == from_test || full_name(test).contains(from_test)
}

#[cfg(test)]
mod tests;
