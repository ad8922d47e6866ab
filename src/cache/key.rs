//! The key a migrated cluster is stored under: a SHA-256 of everything that shapes it (cargo-pgtest's
//! version, the PostgreSQL binaries, the server settings, the migration and fixture files, the extensions
//! and the template1 choice). A cryptographic hash because two inputs that collide would hand a run a
//! cluster migrated from other files; SHA-256 rather than a hand-written hash so that no one has to argue
//! about how likely that is.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cluster::binaries::Binaries;
use crate::config::{Config, DatabaseSpec, SnapshotSource, SnapshotSpec};

/// Collects labelled inputs into a key. Each part is fed with its length, so `("ab","c")` and `("a","bc")`
/// give different keys; the same inputs give the same key with any build, so caches survive a toolchain
/// update.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyHasher {
    hash: Sha256,
}

impl KeyHasher {
    /// Adds a labelled value.
    pub(crate) fn add(&mut self, label: &str, bytes: &[u8]) -> &mut Self {
        for part in [label.as_bytes(), bytes] {
            self.hash.update((part.len() as u64).to_le_bytes());
            self.hash.update(part);
        }
        self
    }

    /// Adds a file's name and contents.
    pub(crate) fn add_file(&mut self, path: &Path) -> io::Result<&mut Self> {
        let contents = fs::read(path)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        Ok(self.add(&name, &contents))
    }

    /// The key: 64 lowercase hex digits, usable as a file name.
    pub(crate) fn finish(&self) -> String {
        self.hash
            .clone()
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// The key of this run's migrated cluster. An error when a migration or fixture cannot be read (which
/// preparing the template then reports properly).
pub(crate) fn run_key(
    binaries: &Binaries,
    config: &Config,
    sqlx_test: Option<usize>,
) -> io::Result<String> {
    let mut hasher = KeyHasher::default();
    hasher
        .add("cargo-pgtest", env!("CARGO_PKG_VERSION").as_bytes())
        .add("postgres", binaries.version.to_string().as_bytes())
        .add("bin_dir", binaries.bin_dir.as_os_str().as_encoded_bytes())
        // How templates are prepared (settled for reuse: analyzed, frozen, checkpointed; from 2 on a
        // migrated template1 too, so a cluster cached before does not turn reuse off for #[sqlx::test]s).
        .add("template-preparation", b"settled-2");
    for setting in &config.settings {
        hasher.add(&setting.name, setting.value.as_bytes());
    }
    hash_inputs(&config.databases, &mut hasher)?;
    for extra in &config.extra_databases {
        hasher.add("extra database", extra.name.as_bytes());
        hash_inputs(std::slice::from_ref(&extra.spec), &mut hasher)?;
    }
    hasher.add("template1", format!("{sqlx_test:?}").as_bytes());
    hash_snapshots(&config.snapshots, &mut hasher)?;
    Ok(hasher.finish())
}

/// Feeds everything in `specs` that shapes the templates into a key: the migration and fixture files'
/// names and contents, and the extensions. Any change to them gives another key.
fn hash_inputs(specs: &[DatabaseSpec], hasher: &mut KeyHasher) -> io::Result<()> {
    for spec in specs {
        hasher.add("database", b"");
        if let Some(dir) = &spec.migrations {
            let mut files: Vec<PathBuf> = fs::read_dir(dir)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for file in files {
                hasher.add_file(&file)?;
            }
        }
        for fixture in &spec.fixtures {
            hasher.add("fixture", b"").add_file(fixture)?;
        }
        for extension in &spec.extensions {
            hasher.add("extension", extension.as_bytes());
        }
    }
    Ok(())
}

/// Feeds the fixture snapshots (built into the cached cluster) into a key: name, template, and each SQL
/// file's name and contents. Nothing is added without one, so such runs keep their keys. `from_test`
/// snapshots are built by each run (their input is a test binary) and are not part of the cluster cached.
fn hash_snapshots(snapshots: &[SnapshotSpec], hasher: &mut KeyHasher) -> io::Result<()> {
    for snapshot in snapshots {
        if let SnapshotSource::Fixtures(files) = &snapshot.source {
            hasher
                .add("snapshot", snapshot.name.as_bytes())
                .add("on", &snapshot.base.to_le_bytes());
            for file in files {
                hasher.add("snapshot fixture", b"").add_file(file)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[(&str, &str)]) -> String {
        let mut hasher = KeyHasher::default();
        for (label, value) in parts {
            hasher.add(label, value.as_bytes());
        }
        hasher.finish()
    }

    #[test]
    fn different_inputs_give_different_keys() {
        assert_ne!(key(&[("a", "1")]), key(&[("a", "2")]));
        assert_ne!(key(&[("a", "1")]), key(&[("b", "1")]));
        assert_ne!(
            key(&[("m", "ab"), ("n", "c")]),
            key(&[("m", "a"), ("n", "bc")]),
            "where one part ends and the next starts counts"
        );
        assert_ne!(key(&[("ab", "")]), key(&[("a", "b")]), "labels too");
        assert_ne!(
            key(&[("a", "1"), ("b", "2")]),
            key(&[("b", "2"), ("a", "1")])
        );
    }

    #[test]
    fn keys_are_stable_across_runs_and_builds() {
        assert_eq!(key(&[("a", "1")]), key(&[("a", "1")]));
        // Pinned: a key that changed between builds would make every cache entry a miss after an update.
        // The SHA-256 of each part's little-endian u64 length then its bytes, as Python's hashlib gives it.
        assert_eq!(
            key(&[("cargo-pgtest", "0.1.0"), ("postgres", "15.8")]),
            "673d30704d421bbfc143f76d11393c7ab68b9234762b20cc7443f1c7e1402433"
        );
        assert_eq!(key(&[]).len(), 64);
    }

    #[test]
    fn a_file_counts_by_name_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("1_a.sql"), dir.path().join("1_b.sql"));
        fs::write(&a, "CREATE TABLE t ();").unwrap();
        fs::write(&b, "CREATE TABLE t ();").unwrap();
        let of = |path: &Path| KeyHasher::default().add_file(path).unwrap().finish();
        assert_ne!(of(&a), of(&b), "a renamed migration is another migration");
        let before = of(&a);
        fs::write(&a, "CREATE TABLE t (id int);").unwrap();
        assert_ne!(of(&a), before);
    }

    #[test]
    fn an_edited_snapshot_fixture_gives_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("catalog.sql");
        fs::write(&file, "INSERT INTO t VALUES (1);").unwrap();
        let snapshot = SnapshotSpec {
            name: "catalog".into(),
            base: 0,
            source: SnapshotSource::Fixtures(vec![file.clone()]),
            tests: vec!["catalog::".into()],
            origin: crate::config::Origin {
                table: String::new(),
                manifest: PathBuf::new(),
                line: None,
            },
        };
        let key_of = |snapshots: &[SnapshotSpec]| {
            let mut hasher = KeyHasher::default();
            hash_snapshots(snapshots, &mut hasher).unwrap();
            hasher.finish()
        };
        let none = key_of(&[]);
        assert_eq!(
            none,
            KeyHasher::default().finish(),
            "no snapshot, no change"
        );
        let before = key_of(std::slice::from_ref(&snapshot));
        assert_ne!(before, none);
        fs::write(&file, "INSERT INTO t VALUES (2);").unwrap();
        assert_ne!(key_of(std::slice::from_ref(&snapshot)), before);
        let from_test = SnapshotSpec {
            source: SnapshotSource::FromTest("setup".into()),
            ..snapshot
        };
        assert_eq!(key_of(&[from_test]), none, "built each run, not cached");
    }
}
