//! Migrated clusters kept under cargo's target directory (`<target>/pgtest/cache/<key>`), so that a run
//! whose inputs did not change copies a ready cluster instead of running initdb, the migrations and the
//! fixtures (and `cargo clean` clears them). An entry is a stopped cluster's data directory plus a manifest;
//! entries are built in a private directory and renamed into place whole, so runs that fill the cache at the
//! same time never see half an entry, and an entry never changes once it is there.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::privileges::ServerUser;

/// Entries kept per project: the newest few, so switching branches back and forth stays warm.
const ENTRIES_KEPT: usize = 4;
/// A half-built entry older than this belongs to a run that died while writing it.
const STALE_STAGING: Duration = Duration::from_secs(600);
const DATA: &str = "data";
const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// A complete entry: a data directory to copy and what the run that made it recorded about it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub data_dir: PathBuf,
    pub manifest: String,
}

impl Cache {
    pub fn in_target_dir(target_dir: &Path) -> Cache {
        Cache {
            root: target_dir.join("pgtest").join("cache"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entry for `key`, if a run has stored it.
    pub fn get(&self, key: &str) -> Option<Entry> {
        let dir = self.root.join(key);
        let manifest = fs::read_to_string(dir.join(MANIFEST)).ok()?;
        let data_dir = dir.join(DATA);
        data_dir.is_dir().then(|| {
            // Touched so that pruning keeps the entries in use.
            let _ = fs::File::open(&dir).and_then(|f| f.set_modified(SystemTime::now()));
            Entry { data_dir, manifest }
        })
    }

    /// Stores a copy of the (stopped) cluster in `data_dir` under `key`. Another run storing the same key at
    /// the same time is fine: the first rename wins and the other copy is discarded.
    pub fn put(&self, key: &str, data_dir: &Path, manifest: &str) -> io::Result<()> {
        fs::create_dir_all(&self.root)?;
        self.prune();
        let staging = self.root.join(format!(
            ".staging-{}-{}",
            std::process::id(),
            super::random_hex(4)
        ));
        fs::DirBuilder::new().mode(0o700).create(&staging)?;
        let filled = copy_tree(data_dir, &staging.join(DATA), None)
            .and_then(|()| fs::write(staging.join(MANIFEST), manifest));
        let placed = filled.and_then(|()| fs::rename(&staging, self.root.join(key)));
        if placed.is_err() || staging.exists() {
            let _ = fs::remove_dir_all(&staging);
        }
        match placed {
            // ENOTEMPTY / EEXIST: the entry was stored meanwhile by another run.
            Err(_) if self.root.join(key).join(MANIFEST).is_file() => Ok(()),
            other => other,
        }
    }

    /// Removes all but the newest entries, and staging directories of runs that died while writing.
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
                    let _ = fs::remove_dir_all(&path);
                }
            } else {
                entries.push((modified, path));
            }
        }
        entries.sort_by(|a, b| b.0.cmp(&a.0));
        // One slot is kept free for the entry about to be stored.
        for (_, path) in entries.into_iter().skip(ENTRIES_KEPT - 1) {
            let _ = fs::remove_dir_all(path);
        }
    }
}

/// Copies a directory tree, keeping permission bits; files are given to `owner` when the server runs as
/// another account (PostgreSQL insists on owning its data directory), else they belong to us.
pub fn copy_tree(from: &Path, to: &Path, owner: Option<&ServerUser>) -> io::Result<()> {
    let metadata = fs::metadata(from)?;
    fs::DirBuilder::new()
        .mode(metadata.mode() & 0o7777)
        .create(to)?;
    give(to, owner)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&source, &target, owner)?;
        } else if kind.is_file() {
            fs::copy(&source, &target)?;
            fs::set_permissions(
                &target,
                fs::Permissions::from_mode(entry.metadata()?.mode() & 0o7777),
            )?;
            give(&target, owner)?;
        }
        // A data directory holds no symlinks unless tablespaces are used, which a throwaway cluster never does.
    }
    Ok(())
}

fn give(path: &Path, owner: Option<&ServerUser>) -> io::Result<()> {
    match owner.filter(|o| o.is_other_account) {
        Some(owner) => std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid)),
        None => Ok(()),
    }
}

/// A stable 128-bit hash (two FNV-1a lanes) of everything that shapes a cached cluster; the same inputs
/// give the same key with any build of cargo-pgtest, so caches survive a toolchain update.
#[derive(Debug, Clone)]
pub struct KeyHasher {
    lanes: [u64; 2],
}

impl Default for KeyHasher {
    fn default() -> Self {
        KeyHasher {
            lanes: [0xcbf2_9ce4_8422_2325, 0x6c62_272e_07bb_0142],
        }
    }
}

impl KeyHasher {
    /// Adds a labelled value; lengths are hashed too, so `("ab","c")` and `("a","bc")` differ.
    pub fn add(&mut self, label: &str, bytes: &[u8]) -> &mut Self {
        for part in [label.as_bytes(), &(bytes.len() as u64).to_le_bytes(), bytes] {
            for &byte in part {
                self.lanes[0] =
                    (self.lanes[0] ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
                self.lanes[1] = (self.lanes[1] ^ u64::from(byte.rotate_left(3)))
                    .wrapping_mul(0x0000_0100_0000_01b3)
                    .rotate_left(5);
            }
        }
        self
    }

    /// Adds a file's name and contents.
    pub fn add_file(&mut self, path: &Path) -> io::Result<&mut Self> {
        let contents = fs::read(path)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        Ok(self.add(&name, &contents))
    }

    pub fn finish(&self) -> String {
        format!("{:016x}{:016x}", self.lanes[0], self.lanes[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_tell_inputs_apart() {
        let key = |parts: &[(&str, &str)]| {
            let mut hasher = KeyHasher::default();
            for (label, value) in parts {
                hasher.add(label, value.as_bytes());
            }
            hasher.finish()
        };
        assert_eq!(key(&[("a", "1")]), key(&[("a", "1")]));
        assert_ne!(key(&[("a", "1")]), key(&[("a", "2")]));
        assert_ne!(
            key(&[("m", "ab"), ("n", "c")]),
            key(&[("m", "a"), ("n", "bc")])
        );
        assert_eq!(key(&[]).len(), 32);
    }

    #[test]
    fn an_entry_is_stored_whole_and_found_again() {
        let target = tempfile::tempdir().unwrap();
        let data = target.path().join("cluster");
        fs::create_dir(&data).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir(data.join("base")).unwrap();
        fs::write(data.join("base/1"), b"pages").unwrap();
        fs::write(data.join("PG_VERSION"), b"15\n").unwrap();

        let cache = Cache::in_target_dir(target.path());
        assert!(cache.get("k").is_none());
        cache.put("k", &data, "{\"templates\":[]}").unwrap();
        // A second run storing the same key at once loses the race quietly.
        cache.put("k", &data, "{\"templates\":[]}").unwrap();
        let entry = cache.get("k").expect("stored");
        assert_eq!(entry.manifest, "{\"templates\":[]}");
        assert_eq!(fs::read(entry.data_dir.join("base/1")).unwrap(), b"pages");
        let mode = fs::metadata(&entry.data_dir).unwrap().mode() & 0o777;
        assert_eq!(
            mode, 0o700,
            "PostgreSQL refuses a data directory others can read"
        );
        let leftovers: Vec<_> = fs::read_dir(cache.root())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".staging"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn only_the_newest_entries_are_kept() {
        let target = tempfile::tempdir().unwrap();
        let data = target.path().join("cluster");
        fs::create_dir(&data).unwrap();
        let cache = Cache::in_target_dir(target.path());
        for index in 0..ENTRIES_KEPT + 2 {
            cache.put(&format!("k{index}"), &data, "{}").unwrap();
            let entry = cache.root().join(format!("k{index}"));
            let age = SystemTime::now() - Duration::from_secs(100 - index as u64);
            fs::File::open(&entry).unwrap().set_modified(age).unwrap();
        }
        let kept = fs::read_dir(cache.root()).unwrap().count();
        assert_eq!(kept, ENTRIES_KEPT);
        assert!(
            cache.get(&format!("k{}", ENTRIES_KEPT + 1)).is_some(),
            "the newest stays"
        );
        assert!(cache.get("k0").is_none(), "the oldest goes");
    }
}
