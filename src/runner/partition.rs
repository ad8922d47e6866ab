//! `--partition count:K/N` and `--partition hash:K/N`: which of the chosen tests this shard runs, decided
//! from the lists alone before anything runs, with cargo-nextest's meaning so a suite splits the same way
//! under both tools.
//!
//! - `count`: per binary, the tests sorted by name are dealt round-robin to the shards (the first to shard
//!   1, the second to shard 2…). Ignored tests are dealt separately, as nextest deals them.
//! - `hash`: a test belongs to shard `xxh64(name, seed 0) % N + 1`, the hash nextest's 0.9 series fixes, so
//!   a test stays on its shard however the suite grows.
//!
//! Doc tests are not listed before `cargo test --doc` compiles them, so they cannot be dealt: they all run
//! on shard 1 (see [`Partition::runs_doc_tests`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use xxhash_rust::xxh64::xxh64;

use super::selection::{Selection, TestCase};

/// A `--partition` value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PartitionError {
    #[error("`{0}` is not a partition; write `count:K/N` or `hash:K/N`, for example `hash:1/3`")]
    Kind(String),
    #[error("`{0}` is not a shard; write K/N with whole numbers, for example `1/3`")]
    Shards(String),
    #[error("shard {shard} of {total} does not exist; K must be between 1 and N")]
    OutOfRange { shard: u64, total: u64 },
}

/// How tests are dealt to the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    Count,
    Hash,
}

/// This run's shard: `shard` of `total`, counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Partition {
    pub(crate) strategy: Strategy,
    pub(crate) shard: u64,
    pub(crate) total: u64,
}

impl FromStr for Partition {
    type Err = PartitionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (strategy, shards) = match text.split_once(':') {
            Some(("count", shards)) => (Strategy::Count, shards),
            Some(("hash", shards)) => (Strategy::Hash, shards),
            _ => return Err(PartitionError::Kind(text.to_owned())),
        };
        let not_shards = || PartitionError::Shards(shards.to_owned());
        let (shard, total) = shards.split_once('/').ok_or_else(not_shards)?;
        let shard: u64 = shard.trim().parse().map_err(|_| not_shards())?;
        let total: u64 = total.trim().parse().map_err(|_| not_shards())?;
        if shard == 0 || shard > total {
            return Err(PartitionError::OutOfRange { shard, total });
        }
        Ok(Partition {
            strategy,
            shard,
            total,
        })
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let strategy = match self.strategy {
            Strategy::Count => "count",
            Strategy::Hash => "hash",
        };
        write!(f, "{strategy}:{}/{}", self.shard, self.total)
    }
}

impl Partition {
    /// Doc tests all run on the first shard: they are only known once compiled.
    pub(crate) fn runs_doc_tests(&self) -> bool {
        self.shard == 1
    }

    /// Keeps this shard's part of one binary's selection; the other shards' tests count as filtered out.
    pub(crate) fn apply(&self, selection: Selection) -> Selection {
        let Selection {
            run,
            ignored,
            filtered_out,
            listed,
        } = selection;
        let mut kept = Selection {
            filtered_out,
            listed,
            ..Selection::default()
        };
        // Every case with the same (binary, ignored) key is dealt from one deck, as nextest deals them.
        let mut decks: BTreeMap<(String, bool), Vec<(bool, TestCase)>> = BTreeMap::new();
        let cases = run
            .into_iter()
            .map(|case| (true, case))
            .chain(ignored.into_iter().map(|case| (false, case)));
        for (runs, case) in cases {
            let key = (case.binary.id.clone(), case.ignored);
            decks.entry(key).or_default().push((runs, case));
        }
        for mut deck in decks.into_values() {
            deck.sort_by(|a, b| a.1.name.cmp(&b.1.name));
            for (position, (runs, case)) in deck.into_iter().enumerate() {
                if !self.owns(position as u64, &case.name) {
                    kept.filtered_out += 1;
                } else if runs {
                    kept.run.push(case);
                } else {
                    kept.ignored.push(case);
                }
            }
        }
        kept
    }

    /// Whether the test at `position` of its sorted deck, named `name`, is this shard's.
    fn owns(&self, position: u64, name: &str) -> bool {
        let dealt = match self.strategy {
            Strategy::Count => position % self.total,
            Strategy::Hash => xxh64(name.as_bytes(), 0) % self.total,
        };
        dealt == self.shard - 1
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::cargo::TestBinary;

    fn binary(id: &str) -> Arc<TestBinary> {
        Arc::new(TestBinary {
            id: id.into(),
            package: "app".into(),
            path: PathBuf::from(id),
            cwd: PathBuf::from("."),
            env: Vec::new(),
        })
    }

    fn case(binary: &Arc<TestBinary>, name: &str, ignored: bool) -> TestCase {
        TestCase {
            binary: Arc::clone(binary),
            name: name.into(),
            ignored,
        }
    }

    /// Two binaries, unsorted, with ignored tests both run (`--include-ignored`) and left out.
    fn selection() -> Selection {
        let (a, b) = (binary("app"), binary("app::api"));
        let mut run: Vec<TestCase> = ["e", "c", "a", "d", "b"]
            .iter()
            .map(|name| case(&a, name, false))
            .collect();
        run.extend((0..7).map(|n| case(&b, &format!("api::t{n}"), false)));
        run.push(case(&b, "api::slow", true));
        let ignored = vec![case(&a, "z_ignored", true), case(&a, "y_ignored", true)];
        Selection {
            run,
            ignored,
            filtered_out: 2,
            listed: Vec::new(),
        }
    }

    fn names(cases: &[TestCase]) -> Vec<String> {
        cases
            .iter()
            .map(|c| format!("{} {}", c.binary.id, c.name))
            .collect()
    }

    #[test]
    fn values_are_read_as_nextest_writes_them() {
        let parsed: Partition = "hash:2/3".parse().unwrap();
        assert_eq!(
            parsed,
            Partition {
                strategy: Strategy::Hash,
                shard: 2,
                total: 3
            }
        );
        assert_eq!(parsed.to_string(), "hash:2/3");
        assert_eq!(
            "count:1/1".parse::<Partition>().unwrap().strategy,
            Strategy::Count
        );
        for bad in [
            "slice:1/2",
            "1/2",
            "count:",
            "count:1",
            "count:a/2",
            "hash:1/x",
        ] {
            assert!(bad.parse::<Partition>().is_err(), "{bad} was accepted");
        }
        assert_eq!(
            "count:0/2".parse::<Partition>(),
            Err(PartitionError::OutOfRange { shard: 0, total: 2 })
        );
        assert!("hash:4/3"
            .parse::<Partition>()
            .unwrap_err()
            .to_string()
            .contains("between 1 and N"));
    }

    #[test]
    fn count_deals_each_binarys_sorted_tests_round_robin() {
        let first: Partition = "count:1/2".parse().unwrap();
        let kept = first.apply(selection());
        assert_eq!(
            names(&kept.run),
            [
                "app a",
                "app c",
                "app e",
                "app::api api::t0",
                "app::api api::t2",
                "app::api api::t4",
                "app::api api::t6",
                "app::api api::slow",
            ]
        );
        // Ignored tests have their own deck: y_ignored is the first of it.
        assert_eq!(names(&kept.ignored), ["app y_ignored"]);
        assert_eq!(kept.filtered_out, 2 + 6);
    }

    #[test]
    fn hash_uses_nextests_hash_of_the_name_alone() {
        // nextest 0.9 puts a test on shard xxh64(name, seed 0) % N + 1; this is that hash of "".
        let empty: u64 = 0xef46_db37_51d8_e999;
        assert_eq!(xxh64(b"", 0), empty);
        let shard_of = |name: &str, position: u64| {
            (1..=3)
                .find(|k| {
                    let p = Partition {
                        strategy: Strategy::Hash,
                        shard: *k,
                        total: 3,
                    };
                    p.owns(position, name)
                })
                .unwrap()
        };
        assert_eq!(shard_of("", 0), empty % 3 + 1);
        // Where a test sits in its list does not matter, only its name.
        for name in ["api::t0", "a", "tests::slugify_joins_words_with_dashes"] {
            assert_eq!(shard_of(name, 0), shard_of(name, 7), "{name}");
            assert_eq!(shard_of(name, 0), xxh64(name.as_bytes(), 0) % 3 + 1);
        }
    }

    #[test]
    fn the_shards_of_a_partition_take_every_test_exactly_once() {
        for strategy in ["count", "hash"] {
            for total in 1..=4u64 {
                let mut seen = Vec::new();
                let mut filtered = 0;
                for shard in 1..=total {
                    let partition: Partition =
                        format!("{strategy}:{shard}/{total}").parse().unwrap();
                    let kept = partition.apply(selection());
                    seen.extend(names(&kept.run));
                    seen.extend(names(&kept.ignored));
                    filtered += kept.filtered_out - 2;
                }
                let unique: BTreeSet<&String> = seen.iter().collect();
                assert_eq!(seen.len(), 15, "{strategy} over {total}");
                assert_eq!(unique.len(), 15, "{strategy} over {total}");
                assert_eq!(filtered as u64, 15 * (total - 1));
            }
        }
    }

    #[test]
    fn doc_tests_go_to_the_first_shard() {
        let first: Partition = "hash:1/2".parse().unwrap();
        let second: Partition = "hash:2/2".parse().unwrap();
        assert!(first.runs_doc_tests() && !second.runs_doc_tests());
    }
}
