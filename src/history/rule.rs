//! When a test counts as slower than its history: at least [`FACTOR`] times AND [`MARGIN`] over the median
//! of its last [`WINDOW`] passing runs, and only once it has [`MIN_RUNS`] of them. Both bounds are needed:
//! the factor alone would flag a 2 ms test that took 7 ms on a busy machine; the margin alone would flag a
//! 10 s test that took 10.1 s. The median, not the mean, so one slow outlier in the past moves nothing.

use std::time::Duration;

/// How many times its median a test must take.
pub(crate) const FACTOR: u32 = 3;
/// How much over its median a test must be, at least.
pub(crate) const MARGIN: Duration = Duration::from_millis(100);
/// How many of its latest passing runs the median is taken over.
pub(crate) const WINDOW: usize = 5;
/// How many earlier passing runs a test needs before it can be flagged.
pub(crate) const MIN_RUNS: usize = 3;

/// A test this run found far slower than its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slower {
    pub(crate) now: Duration,
    pub(crate) median: Duration,
}

/// Compares `now` with `earlier` (oldest first): `Some` when the test is slower by the rule.
pub(crate) fn compare(now: Duration, earlier: &[Duration]) -> Option<Slower> {
    if earlier.len() < MIN_RUNS {
        return None;
    }
    let mut recent = earlier[earlier.len().saturating_sub(WINDOW)..].to_vec();
    recent.sort_unstable();
    let middle = recent.len() / 2;
    let median = if recent.len().is_multiple_of(2) {
        (recent[middle - 1] + recent[middle]) / 2
    } else {
        recent[middle]
    };
    let slower = now >= median * FACTOR && now >= median + MARGIN;
    slower.then_some(Slower { now, median })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn nothing_is_flagged_before_three_earlier_runs() {
        let now = Duration::from_secs(10);
        assert_eq!(compare(now, &ms(&[10, 10])), None);
        assert!(compare(now, &ms(&[10, 10, 10])).is_some());
    }

    #[test]
    fn both_the_factor_and_the_margin_are_needed() {
        // 3x but only 14 ms more: noise on a fast test.
        assert_eq!(compare(Duration::from_millis(21), &ms(&[7, 7, 7])), None);
        // 100 ms more but only 1.05x: noise on a slow test.
        assert_eq!(compare(Duration::from_millis(2100), &ms(&[2000; 3])), None);
        let flagged = compare(Duration::from_millis(300), &ms(&[100, 100, 100]));
        assert_eq!(
            flagged,
            Some(Slower {
                now: Duration::from_millis(300),
                median: Duration::from_millis(100)
            })
        );
    }

    #[test]
    fn the_median_is_over_the_last_five_runs_and_ignores_an_outlier() {
        // The 5000 ms run long ago is outside the window; the 900 ms one inside it is an outlier.
        let earlier = ms(&[5000, 100, 110, 900, 90, 100]);
        let flagged = compare(Duration::from_millis(400), &earlier).expect("4x the median");
        assert_eq!(flagged.median, Duration::from_millis(100));
        // An even count takes the mean of the middle two.
        let flagged = compare(Duration::from_secs(1), &ms(&[100, 200, 300, 400])).unwrap();
        assert_eq!(flagged.median, Duration::from_millis(250));
    }
}
