//! How many bytes the data directory holds, counted a bounded number of entries at a time.
//!
//! On a shared tmpfs (`/dev/shm`) the file system's own figures (statvfs) count everybody's files, so the
//! data directory's size has to come from its entries: the allocated blocks of each file (what tmpfs holds
//! in RAM, sparse parts excluded). Listing and statting one entry costs about 1.5 µs of CPU on tmpfs, and a
//! cluster holds about 1000 entries after initdb plus about 300 per database, so a full walk of a cluster
//! with a template and a few clones costs several milliseconds. [`DirSize::step`] therefore lists at most
//! a budget of entries per call and picks up where the last call stopped; each directory's figure is
//! replaced when its listing completes, and directories gone by the end of a round are dropped. The total
//! lags the truth by at most one round (a few samples), which a peak over a run can afford.

use std::collections::{HashMap, HashSet};
use std::fs::ReadDir;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A directory tree's size, kept up to date a few entries at a time.
#[derive(Debug)]
pub(crate) struct DirSize {
    root: PathBuf,
    /// Bytes of the files directly in each directory, as of its last complete listing.
    sizes: HashMap<PathBuf, u64>,
    /// Directories listed completely in this round.
    seen: HashSet<PathBuf>,
    /// Directories still to list in this round.
    pending: Vec<PathBuf>,
    /// The directory being listed: its path, its listing and the bytes counted so far.
    current: Option<(PathBuf, ReadDir, u64)>,
}

impl DirSize {
    pub(crate) fn new(root: &Path) -> DirSize {
        DirSize {
            root: root.to_owned(),
            sizes: HashMap::new(),
            seen: HashSet::new(),
            pending: vec![root.to_owned()],
            current: None,
        }
    }

    /// Looks at up to `budget` more entries, then returns the tree's size in bytes as far as known.
    pub(crate) fn step(&mut self, budget: usize) -> u64 {
        let mut left = budget;
        while left > 0 {
            let Some((dir, listing, bytes)) = &mut self.current else {
                // Opening a directory counts like an entry, so a tree that cannot be read (gone, or no
                // data directory at all) ends the step instead of spinning on it.
                left -= 1;
                self.next_directory();
                continue;
            };
            match listing.next() {
                Some(Ok(entry)) => {
                    left -= 1;
                    // An entry removed since the listing (a dropped database's file) counts for nothing.
                    let Ok(metadata) = entry.metadata() else {
                        continue;
                    };
                    if metadata.is_dir() {
                        self.pending.push(entry.path());
                    } else {
                        *bytes += metadata.blocks() * 512;
                    }
                }
                Some(Err(_)) => left -= 1,
                None => {
                    self.sizes.insert(dir.clone(), *bytes);
                    self.seen.insert(dir.clone());
                    self.current = None;
                }
            }
        }
        self.sizes.values().sum()
    }

    /// Starts listing the next directory; after the last one, ends the round and starts the next.
    fn next_directory(&mut self) {
        let Some(dir) = self.pending.pop() else {
            let seen = std::mem::take(&mut self.seen);
            self.sizes.retain(|dir, _| seen.contains(dir));
            self.pending.push(self.root.clone());
            return;
        };
        // A directory gone since it was found is not seen, so its figure is dropped at the round's end.
        if let Ok(listing) = std::fs::read_dir(&dir) {
            self.current = Some((dir, listing, 0));
        }
    }
}

/// The tree's size in one full walk: for the few moments (a phase's end) where a complete figure is worth
/// a few milliseconds.
pub(crate) fn walk_all(dir: &Path) -> u64 {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return 0;
    };
    listing
        .filter_map(Result::ok)
        .filter_map(|entry| Some((entry.path(), entry.metadata().ok()?)))
        .map(|(path, metadata)| {
            if metadata.is_dir() {
                walk_all(&path)
            } else {
                metadata.blocks() * 512
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// The size `du` would give, walked in one go.
    fn walked(dir: &Path) -> u64 {
        fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let metadata = entry.metadata().unwrap();
                if metadata.is_dir() {
                    walked(&entry.path())
                } else {
                    metadata.blocks() * 512
                }
            })
            .sum()
    }

    fn tree(root: &Path, directories: usize, files: usize, bytes: usize) {
        for d in 0..directories {
            let dir = root.join(format!("base/{d}"));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..files {
                fs::write(dir.join(f.to_string()), vec![1u8; bytes]).unwrap();
            }
        }
    }

    /// Steps until two rounds' worth of entries were looked at, so the figure is complete.
    fn settle(size: &mut DirSize, entries: usize) -> u64 {
        let mut total = 0;
        for _ in 0..(2 * entries / 7 + 4) {
            total = size.step(7);
        }
        total
    }

    #[test]
    fn a_few_entries_at_a_time_add_up_to_the_whole_tree_and_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), 4, 30, 10_000);
        let mut size = DirSize::new(dir.path());
        assert!(
            size.step(7) < walked(dir.path()),
            "one step sees part of it"
        );
        assert_eq!(settle(&mut size, 130), walked(dir.path()));
        assert_eq!(walk_all(dir.path()), walked(dir.path()));
        assert!(walked(dir.path()) >= 120 * 10_000);

        // A database dropped and another grown: the figure follows within a round or two.
        fs::remove_dir_all(dir.path().join("base/3")).unwrap();
        fs::write(dir.path().join("base/0/big"), vec![1u8; 500_000]).unwrap();
        assert_eq!(settle(&mut size, 130), walked(dir.path()));
    }

    #[test]
    fn a_step_looks_at_no_more_entries_than_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), 1, 50, 1);
        let mut size = DirSize::new(dir.path());
        // 1 root + 1 base + 1 base/0 + 50 files = 53 entries: 50 steps of one entry leave the files unfinished.
        for _ in 0..50 {
            size.step(1);
        }
        assert_eq!(size.sizes.get(&dir.path().join("base/0")), None);
        for _ in 0..10 {
            size.step(1);
        }
        assert!(size.sizes.contains_key(&dir.path().join("base/0")));
    }

    #[test]
    fn a_tree_that_cannot_be_read_ends_the_step() {
        let gone = tempfile::tempdir().unwrap().path().join("gone");
        let mut size = DirSize::new(&gone);
        assert_eq!(size.step(256), 0);
        assert_eq!(DirSize::new(Path::new("")).step(256), 0);
    }
}
