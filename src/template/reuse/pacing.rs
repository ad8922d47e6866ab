//! How often fresh clones are recorded for reuse. Recording a clone (setting its files' times, listing them,
//! digesting its catalog rows) and checking it afterwards cost a few milliseconds of CPU, which a suite whose
//! tests all write would pay for nothing. So after a run of databases found modified, only every few clones
//! is recorded, as a probe; the first probe found untouched turns recording back on for every clone.
//! Skipping a recording is always safe: an unrecorded database is simply never handed on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Databases found modified in a row before recording slows down.
const MODIFIED_IN_A_ROW: usize = 4;
/// While slowed down, one clone in this many is recorded.
const PROBE_EVERY: usize = 8;

#[derive(Debug, Default)]
pub(super) struct Pacing {
    modified_in_a_row: AtomicUsize,
    skipped: AtomicUsize,
    /// Every clone is recorded, whatever the checks found (tests of the check itself).
    every_clone: AtomicBool,
}

impl Pacing {
    /// Whether the clone just made should be recorded.
    pub(super) fn worth_recording(&self) -> bool {
        if self.every_clone.load(Ordering::Relaxed)
            || self.modified_in_a_row.load(Ordering::Relaxed) < MODIFIED_IN_A_ROW
        {
            return true;
        }
        self.skipped.fetch_add(1, Ordering::Relaxed) % PROBE_EVERY == PROBE_EVERY - 1
    }

    #[cfg(test)]
    pub(super) fn record_every_clone(&self) {
        self.every_clone.store(true, Ordering::Relaxed);
    }

    /// The verdict on a recorded database.
    pub(super) fn checked(&self, untouched: bool) {
        match untouched {
            true => self.modified_in_a_row.store(0, Ordering::Relaxed),
            false => {
                self.modified_in_a_row.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded_of(pacing: &Pacing, clones: usize) -> usize {
        (0..clones).filter(|_| pacing.worth_recording()).count()
    }

    #[test]
    fn a_writing_suite_records_one_clone_in_eight_and_a_reading_one_every_clone() {
        let pacing = Pacing::default();
        assert_eq!(recorded_of(&pacing, 20), 20, "nothing checked yet");
        for _ in 0..MODIFIED_IN_A_ROW - 1 {
            pacing.checked(false);
        }
        assert_eq!(
            recorded_of(&pacing, 20),
            20,
            "not yet a run of modified ones"
        );
        pacing.checked(false);
        assert_eq!(recorded_of(&pacing, 80), 80 / PROBE_EVERY);
        // A probe found untouched: every clone is recorded again.
        pacing.checked(true);
        assert_eq!(recorded_of(&pacing, 20), 20);
    }
}
