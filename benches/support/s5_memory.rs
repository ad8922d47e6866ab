//! Target 5: the cluster's peak memory (PSS of its processes, as cargo-pgtest reports it in the summary's
//! `peak_memory_bytes`) over runs with two tests in flight.

use super::pgtest::Report;
use super::stats::Stats;
use super::table::{Goal, Row, Unit};

/// The target's row from target 3's test-isolation runs at `--jobs 2`; `sqlx_suite` (target 4's
/// cargo-pgtest runs, at `sqlx_jobs`) adds an informative row: each of its tests makes a database of
/// its own.
pub fn rows(runs: &[Report], sqlx_suite: Option<(&[u64], usize)>) -> Vec<Row> {
    let mib = |bytes: &mut dyn Iterator<Item = u64>| {
        Stats::of(
            &bytes
                .map(|b| b as f64 / (1024.0 * 1024.0))
                .collect::<Vec<_>>(),
        )
    };
    let mut rows = vec![Row::target(
        "5",
        "cluster peak memory, 200 tests, --jobs 2 (peak_memory_bytes)",
        Unit::MiB,
        mib(&mut runs.iter().filter_map(|r| r.peak_memory)),
        Goal::AtMost(64.0),
    )];
    if let Some((peaks, jobs)) = sqlx_suite {
        rows.push(Row::info(
            format!("  the same, #[sqlx::test] suite of target 4, --jobs {jobs}"),
            Unit::MiB,
            mib(&mut peaks.iter().copied()),
        ));
    }
    rows
}
