//! The history file: `<target-dir>/pgtest/history/durations.jsonl`, one JSON object per line
//! (`{"run":7,"binary":"app::it","name":"adds","seconds":0.042}`, with `"read_only":true` when the test's
//! database was found untouched after it), oldest first, for passing tests only. Beside it, `latest.jsonl`
//! holds the latest entry of each test: what the next run reads to order its work (longest first) and to
//! form its read-only groups, without reading the whole history.
//!
//! It stays bounded: each run keeps the last [`KEEP`] times of every test and forgets tests not seen for
//! [`FORGET_AFTER`] runs. Two runs at once on one target directory must neither corrupt it nor lose each
//! other's times, so a run reads, compares and rewrites it under an exclusive lock on a lock file beside
//! it, and replaces it by renaming a complete new file over it: a reader never sees half a file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rule::{self, Slower};
use crate::events::TestId;

/// How many times of each test the file keeps.
pub(crate) const KEEP: usize = 20;
/// After how many runs without it a test's times are dropped (a renamed or deleted test).
pub(crate) const FORGET_AFTER: u64 = 100;
/// How many of a test's latest earlier times a run reports (the HTML report's sparkline).
pub(crate) const REPORTED: usize = 10;

/// What recording a run found: the tests far slower than their past, and each test's latest earlier times
/// (up to [`REPORTED`], oldest first), both in the order the tests were given.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Recorded {
    pub(crate) slower: Vec<(TestId, Slower)>,
    pub(crate) earlier: Vec<(TestId, Vec<Duration>)>,
}

/// The history could not be read or written; the run goes on without it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not lock {}: {source}", path.display())]
    Lock { path: PathBuf, source: nix::Error },
}

/// A test's latest passing run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Latest {
    pub(crate) time: Duration,
    /// Its database was found untouched after it.
    pub(crate) read_only: bool,
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    run: u64,
    binary: String,
    name: String,
    seconds: f64,
    /// The test's database was found untouched after it: it only read (written only when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    read_only: bool,
}

/// The history of one target directory.
pub(crate) struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn in_target_dir(target_dir: &Path) -> Store {
        Store {
            dir: target_dir.join("pgtest").join("history"),
        }
    }

    pub(crate) fn file(&self) -> PathBuf {
        self.dir.join("durations.jsonl")
    }

    /// The latest entry of each test, which [`Store::record`] derives from the history.
    fn latest_file(&self) -> PathBuf {
        self.dir.join("latest.jsonl")
    }

    /// Each test's latest passing run: its time, and whether it left its database untouched. A missing or
    /// unreadable file knows none.
    pub(crate) fn latest(&self) -> BTreeMap<TestId, Latest> {
        // A history written before `latest.jsonl` existed has `read_only.jsonl`, the latest entries of
        // the read-only tests only: enough for the first run after an upgrade to form its groups.
        let text = fs::read_to_string(self.latest_file())
            .or_else(|_| fs::read_to_string(self.dir.join("read_only.jsonl")))
            .unwrap_or_default();
        parse(&text)
            .into_iter()
            .filter_map(|entry| {
                let time = Duration::try_from_secs_f64(entry.seconds).ok()?;
                let test = TestId {
                    binary: entry.binary,
                    name: entry.name,
                };
                let read_only = entry.read_only;
                Some((test, Latest { time, read_only }))
            })
            .collect()
    }

    /// Adds this run's passing tests to the history (those in `read_only` marked so) and returns those
    /// slower than their own past and the times each had before.
    pub(crate) fn record(
        &self,
        passed: &[(TestId, Duration)],
        read_only: &BTreeSet<TestId>,
    ) -> Result<Recorded, Error> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        fs::create_dir_all(&self.dir).map_err(io("create the directory", &self.dir))?;
        let lock_path = self.dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open the lock file", &lock_path))?;
        // Held until the new file is in place; dropping it unlocks.
        let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(
            |(_, source)| Error::Lock {
                path: lock_path.clone(),
                source,
            },
        )?;
        let file = self.file();
        let text = match fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(io("read the test history", &file)(error)),
        };
        let (entries, recorded) = update(parse(&text), passed, read_only);
        for (path, entries) in [
            (file, entries.as_slice()),
            (self.latest_file(), &latest_of_each(&entries)),
        ] {
            let mut new = tempfile::NamedTempFile::new_in(&self.dir)
                .map_err(io("create a file in", &self.dir))?;
            new.write_all(render(entries).as_bytes())
                .map_err(io("write the test history beside", &path))?;
            new.persist(&path)
                .map_err(|error| io("replace the test history", &path)(error.error))?;
        }
        Ok(recorded)
    }
}

/// The file's entries; a line that is not one (edited by hand, from a future version) is skipped.
fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn render(entries: &[Entry]) -> String {
    let mut text = String::new();
    for entry in entries {
        // Serializing plain strings and numbers cannot fail.
        if let Ok(line) = serde_json::to_string(entry) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

/// The history with this run added and trimmed to its bounds, and what this run found.
fn update(
    mut entries: Vec<Entry>,
    passed: &[(TestId, Duration)],
    read_only: &BTreeSet<TestId>,
) -> (Vec<Entry>, Recorded) {
    let this_run = entries.iter().map(|e| e.run).max().unwrap_or(0) + 1;
    let mut earlier: HashMap<(&str, &str), Vec<Duration>> = HashMap::new();
    for entry in &entries {
        if let Ok(time) = Duration::try_from_secs_f64(entry.seconds) {
            earlier
                .entry((&entry.binary, &entry.name))
                .or_default()
                .push(time);
        }
    }
    let slower: Vec<(TestId, Slower)> = passed
        .iter()
        .filter_map(|(test, now)| {
            let past = earlier.get(&(test.binary.as_str(), test.name.as_str()))?;
            rule::compare(*now, past).map(|flag| (test.clone(), flag))
        })
        .collect();
    let earlier = passed
        .iter()
        .filter_map(|(test, _)| {
            let past = earlier.get(&(test.binary.as_str(), test.name.as_str()))?;
            let latest = past[past.len().saturating_sub(REPORTED)..].to_vec();
            Some((test.clone(), latest))
        })
        .collect();
    entries.extend(passed.iter().map(|(test, time)| Entry {
        run: this_run,
        binary: test.binary.clone(),
        name: test.name.clone(),
        seconds: time.as_secs_f64(),
        read_only: read_only.contains(test),
    }));
    (trim(entries, this_run), Recorded { slower, earlier })
}

/// The latest entry of each test, by binary and name.
fn latest_of_each(entries: &[Entry]) -> Vec<Entry> {
    let mut latest: HashMap<(&str, &str), &Entry> = HashMap::new();
    for entry in entries {
        let key = (entry.binary.as_str(), entry.name.as_str());
        if latest.get(&key).is_none_or(|known| known.run <= entry.run) {
            latest.insert(key, entry);
        }
    }
    let mut latest: Vec<Entry> = latest.into_values().cloned().collect();
    latest.sort_by(|a, b| (&a.binary, &a.name).cmp(&(&b.binary, &b.name)));
    latest
}

/// Keeps the last [`KEEP`] entries of each test seen in the last [`FORGET_AFTER`] runs, oldest first.
fn trim(mut entries: Vec<Entry>, this_run: u64) -> Vec<Entry> {
    entries.sort_by_key(|entry| entry.run);
    let mut last_seen: HashMap<(String, String), u64> = HashMap::new();
    for entry in &entries {
        last_seen.insert((entry.binary.clone(), entry.name.clone()), entry.run);
    }
    let mut kept_newest_first = Vec::new();
    let mut counts: HashMap<(String, String), usize> = HashMap::new();
    for entry in entries.into_iter().rev() {
        let key = (entry.binary.clone(), entry.name.clone());
        if last_seen[&key] + FORGET_AFTER <= this_run {
            continue;
        }
        let count = counts.entry(key).or_default();
        if *count < KEEP {
            *count += 1;
            kept_newest_first.push(entry);
        }
    }
    kept_newest_first.reverse();
    kept_newest_first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> TestId {
        TestId {
            binary: "app::it".into(),
            name: name.into(),
        }
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn none() -> BTreeSet<TestId> {
        BTreeSet::new()
    }

    fn read_only(store: &Store) -> BTreeMap<TestId, Duration> {
        let latest = store.latest().into_iter();
        let read_only = latest.filter(|(_, latest)| latest.read_only);
        read_only
            .map(|(test, latest)| (test, latest.time))
            .collect()
    }

    #[test]
    fn a_test_is_read_only_while_its_latest_pass_left_its_database_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_target_dir(dir.path());
        assert!(store.latest().is_empty(), "no file knows none");
        let reader: BTreeSet<TestId> = [id("reads"), id("wrote_later")].into();
        let passed = [
            (id("reads"), ms(4)),
            (id("wrote_later"), ms(6)),
            (id("writes"), ms(9)),
        ];
        store.record(&passed, &reader).unwrap();
        assert_eq!(
            read_only(&store),
            BTreeMap::from([(id("reads"), ms(4)), (id("wrote_later"), ms(6))])
        );
        // A run that did not see `reads` (it failed, or was filtered out) leaves its mark as it was.
        store
            .record(&[(id("wrote_later"), ms(7))], &none())
            .unwrap();
        assert_eq!(read_only(&store), BTreeMap::from([(id("reads"), ms(4))]));
        let times: BTreeMap<TestId, Duration> = store
            .latest()
            .into_iter()
            .map(|(test, latest)| (test, latest.time))
            .collect();
        let expected = [
            (id("reads"), ms(4)),
            (id("wrote_later"), ms(7)),
            (id("writes"), ms(9)),
        ];
        assert_eq!(times, BTreeMap::from(expected), "each test's latest time");
        let text = fs::read_to_string(store.file()).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(
            text.starts_with("{\"run\":1,\"binary\":\"app::it\",\"name\":\"reads\",\"seconds\":0.004,\"read_only\":true}\n"),
            "{text}"
        );
    }

    #[test]
    fn a_history_from_before_latest_jsonl_still_knows_its_read_only_tests() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_target_dir(dir.path());
        fs::create_dir_all(&store.dir).unwrap();
        let old = "{\"run\":3,\"binary\":\"app::it\",\"name\":\"reads\",\"seconds\":0.004,\"read_only\":true}\n";
        fs::write(store.dir.join("read_only.jsonl"), old).unwrap();
        assert_eq!(read_only(&store), BTreeMap::from([(id("reads"), ms(4))]));
        // Once this version has written its own file, that one is read.
        store.record(&[(id("writes"), ms(9))], &none()).unwrap();
        let known: Vec<TestId> = store.latest().into_keys().collect();
        assert_eq!(known, [id("writes")]);
    }

    #[test]
    fn a_test_far_slower_than_its_runs_so_far_is_flagged_and_the_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_target_dir(dir.path());
        for _ in 0..3 {
            let flagged = store
                .record(&[(id("slow"), ms(50)), (id("steady"), ms(50))], &none())
                .unwrap()
                .slower;
            assert!(flagged.is_empty(), "{flagged:?}");
        }
        let recorded = store
            .record(&[(id("slow"), ms(1000)), (id("steady"), ms(60))], &none())
            .unwrap();
        assert_eq!(
            recorded.earlier,
            [
                (id("slow"), vec![ms(50); 3]),
                (id("steady"), vec![ms(50); 3])
            ],
            "the times before this run"
        );
        let flagged = recorded.slower;
        assert_eq!(
            flagged,
            [(
                id("slow"),
                Slower {
                    now: ms(1000),
                    median: ms(50)
                }
            )]
        );
        let text = fs::read_to_string(store.file()).unwrap();
        assert_eq!(text.lines().count(), 8, "{text}");
        assert!(
            text.ends_with(
                "{\"run\":4,\"binary\":\"app::it\",\"name\":\"steady\",\"seconds\":0.06}\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_file_keeps_twenty_times_per_test_and_forgets_tests_gone_for_long() {
        let mut entries = Vec::new();
        for run in 1..=150 {
            let passed = if run <= 30 {
                vec![(id("gone"), ms(10)), (id("kept"), ms(10))]
            } else {
                vec![(id("kept"), ms(10))]
            };
            entries = update(entries, &passed, &none()).0;
        }
        assert_eq!(entries.len(), KEEP, "only `kept`, 20 times");
        assert!(entries.iter().all(|e| e.name == "kept"));
        assert_eq!(entries.first().map(|e| e.run), Some(131));
        assert_eq!(entries.last().map(|e| e.run), Some(150));
    }

    #[test]
    fn lines_that_are_not_entries_are_skipped() {
        let text = "{\"run\":1,\"binary\":\"b\",\"name\":\"t\",\"seconds\":0.5}\nnot json\n{\"run\":2,\"bin";
        assert_eq!(parse(text).len(), 1);
    }

    #[test]
    fn runs_at_once_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let target = dir.path().to_owned();
                std::thread::spawn(move || {
                    let store = Store::in_target_dir(&target);
                    for _ in 0..5 {
                        let passed = [(id(&format!("t{n}")), ms(10))];
                        store.record(&passed, &none()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let entries = parse(&fs::read_to_string(Store::in_target_dir(dir.path()).file()).unwrap());
        assert_eq!(entries.len(), 40);
        let mut runs: Vec<u64> = entries.iter().map(|e| e.run).collect();
        runs.dedup();
        assert_eq!(runs, (1..=40).collect::<Vec<_>>(), "each run numbered once");
    }
}
