//! Which failed tests' databases outlive their test: up to a cap, a failing (crashing, timed-out) test's
//! database is not dropped, so that `cargo pgtest psql NAME` can open it after the run.

use std::sync::{Arc, Mutex};

use crate::events::{Outcome, TestId};

/// A database left in the cluster for a failed test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeptDatabase {
    pub(crate) test: TestId,
    pub(crate) database: String,
}

/// The run's budget of kept databases; cheap to clone, every clone keeps into the same list.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keeper {
    cap: usize,
    kept: Arc<Mutex<Vec<KeptDatabase>>>,
}

impl Keeper {
    /// Keeps at most `cap` databases (0: none).
    pub(crate) fn new(cap: usize) -> Keeper {
        Keeper {
            cap,
            kept: Arc::default(),
        }
    }

    /// Whether an outcome is one whose database is worth keeping: the test ran and did not pass.
    pub(crate) fn worth_keeping(outcome: &Outcome) -> bool {
        matches!(
            outcome,
            Outcome::Failed { .. } | Outcome::Crashed { .. } | Outcome::TimedOut
        )
    }

    /// Keeps `database` for `test` if the cap allows; returns whether it is kept (and so must not be
    /// dropped). A database already kept for another test (a shared one) costs nothing more.
    pub(crate) fn keep(&self, test: TestId, database: &str) -> bool {
        // Never held across an await or a call that could panic, so it cannot be poisoned in use.
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let known = kept.iter().any(|k| k.database == database);
        if !known
            && kept
                .iter()
                .map(|k| &k.database)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                >= self.cap
        {
            return false;
        }
        kept.push(KeptDatabase {
            test,
            database: database.to_owned(),
        });
        true
    }

    /// Whether `database` is kept (for one test or more).
    pub(crate) fn holds(&self, database: &str) -> bool {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().any(|k| k.database == database)
    }

    /// What was kept, in the order it was.
    pub(crate) fn kept(&self) -> Vec<KeptDatabase> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> TestId {
        TestId {
            binary: "app".into(),
            name: name.into(),
        }
    }

    #[test]
    fn the_cap_counts_databases_and_zero_keeps_none() {
        let keeper = Keeper::new(2);
        assert!(keeper.keep(id("a"), "pgtest_0"));
        assert!(keeper.keep(id("b"), "pgtest_1"));
        assert!(!keeper.keep(id("c"), "pgtest_2"), "over the cap");
        assert!(
            keeper.keep(id("d"), "pgtest_1"),
            "a shared database is already kept"
        );
        let names: Vec<_> = keeper.kept().into_iter().map(|k| k.test.name).collect();
        assert_eq!(names, ["a", "b", "d"]);
        assert!(!Keeper::new(0).keep(id("a"), "pgtest_0"));
    }

    #[test]
    fn only_tests_that_ran_and_did_not_pass_are_kept() {
        assert!(Keeper::worth_keeping(&Outcome::Failed {
            exit_code: Some(101)
        }));
        assert!(Keeper::worth_keeping(&Outcome::TimedOut));
        assert!(!Keeper::worth_keeping(&Outcome::Passed));
        assert!(!Keeper::worth_keeping(&Outcome::NotRun {
            reason: String::new()
        }));
    }
}
