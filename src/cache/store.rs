//! The store of migrated clusters under cargo's target directory (`<target>/pgtest/cache/<key>.pack`):
//! get, put and eviction. A run whose inputs did not change unpacks a ready cluster instead of running
//! initdb, the migrations and the fixtures (and `cargo clean` clears them). Entries are written under a
//! private name and renamed into place, so runs filling the store at the same time never see half of one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::pack::Pack;

/// Entries kept per target directory: the most recently used few, so switching branches back and forth
/// stays warm, and so do several projects (or packages tested one by one) sharing one target directory.
const ENTRIES_KEPT: usize = 8;
/// A half-written entry older than this belongs to a run that died while writing it.
const STALE_STAGING: Duration = Duration::from_secs(600);
const EXTENSION: &str = "pack";

/// The directory holding the entries.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A cached cluster: what the run that made it recorded, and its packed data directory.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manifest: String,
    pub(crate) pack: Pack,
}

impl Store {
    pub fn in_target_dir(target_dir: &Path) -> Store {
        Store {
            root: target_dir.join("pgtest").join("cache"),
        }
    }

    /// A store of its own at `root` (the kept databases of the last failing run live in one).
    pub(crate) fn at(root: PathBuf) -> Store {
        Store { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.root.join(format!("{key}.{EXTENSION}"))
    }

    /// The entry for `key`, if a run has stored it (and it reads back whole).
    pub fn get(&self, key: &str) -> Option<Entry> {
        let path = self.entry_path(key);
        let bytes = fs::read(&path).ok()?;
        let (manifest, pack) = Pack::split_manifest(bytes)?;
        // Touched so that pruning keeps the entries in use.
        let _ = fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        Some(Entry { manifest, pack })
    }

    /// Stores `pack` with `manifest` under `key`. Another run storing the same key at the same time is
    /// fine: both write whole files under private names, and a rename replaces atomically.
    pub fn put(&self, key: &str, manifest: &str, pack: &Pack) -> io::Result<()> {
        fs::create_dir_all(&self.root)?;
        self.prune();
        // The process id tells runs apart, the counter this run's own puts.
        static PUTS: AtomicU64 = AtomicU64::new(0);
        let staging = self.root.join(format!(
            ".staging-{}-{}",
            std::process::id(),
            PUTS.fetch_add(1, Ordering::Relaxed)
        ));
        let written = fs::File::create(&staging)
            .and_then(|mut file| pack.write_with_manifest(&mut file, manifest))
            .and_then(|()| fs::rename(&staging, self.entry_path(key)));
        if written.is_err() {
            let _ = fs::remove_file(&staging);
        }
        written
    }

    /// Removes all but the newest entries, and staging files of runs that died while writing.
    fn prune(&self) {
        let Ok(read) = fs::read_dir(&self.root) else {
            return;
        };
        let now = SystemTime::now();
        let mut entries: Vec<(SystemTime, PathBuf)> = Vec::new();
        for entry in read.filter_map(Result::ok) {
            let path = entry.path();
            let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(now);
            if entry.file_name().to_string_lossy().starts_with(".staging-") {
                if now.duration_since(modified).unwrap_or_default() > STALE_STAGING {
                    let _ = fs::remove_file(&path);
                }
            } else {
                entries.push((modified, path));
            }
        }
        entries.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        // One slot is kept free for the entry about to be stored.
        for (_, path) in entries.into_iter().skip(ENTRIES_KEPT - 1) {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::pack::tests::sample_cluster;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn an_entry_is_stored_whole_and_unpacks_as_it_was() {
        let target = tempfile::tempdir().unwrap();
        let data = sample_cluster(target.path());
        let cache = Store::in_target_dir(target.path());
        assert!(cache.get("k").is_none());
        let pack = Pack::read(&data, &|_| true).unwrap();
        cache.put("k", "{\"templates\":[]}", &pack).unwrap();
        // A second run storing the same key at once replaces it with the same thing.
        cache.put("k", "{\"templates\":[]}", &pack).unwrap();

        let entry = cache.get("k").expect("stored");
        assert_eq!(entry.manifest, "{\"templates\":[]}");
        assert_eq!(entry.pack.bytes[entry.pack.records_start..], pack.bytes[..]);
        let copy = target.path().join("copy");
        entry.pack.write(&copy, None).unwrap();
        assert_eq!(fs::read(copy.join("base/1")).unwrap(), b"pages");
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(
            mode(&copy),
            0o700,
            "PostgreSQL refuses a data directory others can read"
        );
        assert_eq!(mode(&copy.join("PG_VERSION")), 0o600);
        let names: Vec<_> = fs::read_dir(cache.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["k.pack"], "no staging file is left");
    }

    #[test]
    fn a_damaged_entry_is_not_used() {
        let target = tempfile::tempdir().unwrap();
        let data = sample_cluster(target.path());
        let cache = Store::in_target_dir(target.path());
        cache
            .put("k", "{}", &Pack::read(&data, &|_| true).unwrap())
            .unwrap();
        let path = cache.entry_path("k");
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(cache.get("k").is_none(), "a truncated pack is a miss");
        fs::write(&path, b"something else").unwrap();
        assert!(cache.get("k").is_none());
    }

    #[test]
    fn only_the_newest_entries_are_kept() {
        let target = tempfile::tempdir().unwrap();
        let pack = Pack::read(&sample_cluster(target.path()), &|_| true).unwrap();
        let cache = Store::in_target_dir(target.path());
        for index in 0..ENTRIES_KEPT + 2 {
            cache.put(&format!("k{index}"), "{}", &pack).unwrap();
            let age = SystemTime::now() - Duration::from_secs(100 - index as u64);
            let file = fs::File::options()
                .append(true)
                .open(cache.entry_path(&format!("k{index}")))
                .unwrap();
            file.set_modified(age).unwrap();
        }
        assert_eq!(fs::read_dir(cache.root()).unwrap().count(), ENTRIES_KEPT);
        assert!(
            cache.get(&format!("k{}", ENTRIES_KEPT + 1)).is_some(),
            "the newest stays"
        );
        assert!(cache.get("k0").is_none(), "the oldest goes");
    }
}
