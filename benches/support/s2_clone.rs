//! Target 2: what a fresh database costs one test, from the test-isolation runs of target 3: each
//! `database_cloned` event's seconds and each `test_started` event's `database_wait_seconds`, pooled over
//! all runs.

use super::pgtest::Report;
use super::stats::Stats;
use super::table::{Goal, Row, Unit};

pub fn rows(runs: &[Report]) -> Vec<Row> {
    let millis = |pick: fn(&Report) -> &Vec<f64>| {
        Stats::of(
            &runs
                .iter()
                .flat_map(|r| pick(r).iter().map(|s| s * 1000.0))
                .collect::<Vec<_>>(),
        )
    };
    vec![
        Row::target(
            "2",
            "clone of the template, per database (database_cloned)",
            Unit::Millis,
            millis(|r| &r.clones),
            Goal::AtMost(15.0),
        ),
        Row::target(
            "2",
            "a test's wait for its database (database_wait_seconds)",
            Unit::Millis,
            millis(|r| &r.waits),
            Goal::AtMost(2.0),
        ),
    ]
}
