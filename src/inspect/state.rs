//! The kept state: after a run with failed tests, the cluster's data directory holding their databases,
//! saved with the snapshot module's pack format under `<target-dir>/pgtest/kept/` (replacing the previous
//! run's), and a manifest naming each kept test's database, the templates and the PostgreSQL it needs.

use std::path::{Path, PathBuf};

use super::InspectError;
use crate::cache::{capture::belongs_in_cache, Pack, Store};
use crate::cluster::Cluster;
use crate::template::KeptDatabase;
use crate::template::Template;

/// The one entry of the kept store.
const KEY: &str = "last-failed";

/// What a kept cluster holds besides its files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct KeptState {
    /// The PostgreSQL binaries the data directory was written by.
    pub(crate) bin_dir: PathBuf,
    pub(crate) templates: Vec<Template>,
    pub(crate) tests: Vec<KeptTest>,
}

/// A failed test and the database it left.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct KeptTest {
    /// The test's id as the report shows it: `<binary> <name>`.
    pub(crate) test: String,
    pub(crate) database: String,
}

/// The command that opens a kept test's database.
pub(crate) fn psql_command(test: &str) -> String {
    format!("cargo pgtest psql {test}")
}

/// Where the kept state of the project building into `target_dir` lives.
pub(crate) fn dir(target_dir: &Path) -> PathBuf {
    target_dir.join("pgtest").join("kept")
}

impl KeptState {
    /// Reads the kept state back: `None` when there is none (or it is damaged, or from another version).
    pub(crate) fn load(target_dir: &Path) -> Option<(KeptState, Pack)> {
        let entry = Store::at(dir(target_dir)).get(KEY)?;
        let state = serde_json::from_str(&entry.manifest).ok()?;
        Some((state, entry.pack))
    }

    /// The kept test `name` names, as cargo test's filter would: its full id, else the one test of that
    /// exact name (without its binary), else the one id containing it. Unknown and ambiguous names list
    /// the candidates.
    pub(crate) fn find(&self, name: &str) -> Result<&KeptTest, InspectError> {
        if let Some(exact) = self.tests.iter().find(|t| t.test == name) {
            return Ok(exact);
        }
        let test_name = |t: &&KeptTest| t.test.split_once(' ').is_some_and(|(_, n)| n == name);
        if let [one] = self.tests.iter().filter(test_name).collect::<Vec<_>>()[..] {
            return Ok(one);
        }
        let matching: Vec<&KeptTest> = self
            .tests
            .iter()
            .filter(|t| t.test.contains(name))
            .collect();
        match matching.as_slice() {
            [one] => Ok(one),
            [] => Err(InspectError::Unknown {
                name: name.to_owned(),
                candidates: self.tests.iter().map(|t| t.test.clone()).collect(),
            }),
            several => Err(InspectError::Ambiguous {
                name: name.to_owned(),
                candidates: several.iter().map(|t| t.test.clone()).collect(),
            }),
        }
    }
}

/// Saves the cluster holding the `kept` databases, with its `templates`, over the previous kept state.
/// The server is stopped cleanly for the read (so nothing a test wrote, unlogged tables included, is lost
/// to recovery) and started again for the teardown that follows.
pub(crate) async fn save(
    cluster: &mut Cluster,
    target_dir: &Path,
    templates: &[Template],
    kept: &[KeptDatabase],
) -> Result<(), InspectError> {
    // An existing server is not ours to save: its databases are dropped with the run like all others.
    let Some(binaries) = cluster.binaries() else {
        return Ok(());
    };
    let state = KeptState {
        bin_dir: binaries.bin_dir.clone(),
        templates: templates.to_vec(),
        tests: kept
            .iter()
            .map(|k| KeptTest {
                test: k.test.to_string(),
                database: k.database.clone(),
            })
            .collect(),
    };
    let data_dir = cluster.data_dir().to_owned();
    let read = |dir: &Path| Pack::read(dir, &|path| belongs_in_cache(path, &[]));
    let pack = match cluster.while_stopped(read).await {
        Ok(Ok(pack)) => pack,
        Ok(Err(source)) => {
            return Err(InspectError::Read {
                dir: data_dir,
                source,
            })
        }
        Err(error) => {
            let source = std::io::Error::other(error.to_string());
            return Err(InspectError::Read {
                dir: data_dir,
                source,
            });
        }
    };
    let manifest = serde_json::to_string(&state).unwrap_or_default();
    let dir = dir(target_dir);
    let store = Store::at(dir.clone());
    let put = tokio::task::spawn_blocking(move || store.put(KEY, &manifest, &pack));
    match put.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(InspectError::Save { dir, source }),
        Err(error) => Err(InspectError::Save {
            dir,
            source: std::io::Error::other(error.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(tests: &[&str]) -> KeptState {
        KeptState {
            bin_dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
            templates: Vec::new(),
            tests: tests
                .iter()
                .enumerate()
                .map(|(n, test)| KeptTest {
                    test: (*test).to_owned(),
                    database: format!("pgtest_{n}"),
                })
                .collect(),
        }
    }

    #[test]
    fn a_name_is_a_full_id_or_a_part_only_one_kept_test_has() {
        let kept = state(&["app::it fails", "app::it fails_too", "app::other breaks"]);
        assert_eq!(kept.find("app::it fails").unwrap().database, "pgtest_0");
        assert_eq!(kept.find("breaks").unwrap().database, "pgtest_2");
        assert_eq!(kept.find("too").unwrap().database, "pgtest_1");
        assert_eq!(
            kept.find("fails").unwrap().database,
            "pgtest_0",
            "a test's exact name"
        );
        match kept.find("fail") {
            Err(InspectError::Ambiguous { candidates, .. }) => {
                assert_eq!(candidates, ["app::it fails", "app::it fails_too"])
            }
            other => panic!("expected ambiguous, got {other:?}"),
        }
        let unknown = kept.find("nothing").unwrap_err().to_string();
        assert!(
            unknown.contains("\n  cargo pgtest psql app::other breaks"),
            "{unknown}"
        );
    }

    #[test]
    fn the_manifest_reads_back() {
        let kept = state(&["app::it fails"]);
        let text = serde_json::to_string(&kept).unwrap();
        assert_eq!(serde_json::from_str::<KeptState>(&text).unwrap(), kept);
    }
}
