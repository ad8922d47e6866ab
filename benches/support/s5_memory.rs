//! Target 5: the cluster's peak RAM over runs with two tests in flight: its server processes (PSS) plus its
//! data directory (on tmpfs, RAM too), as cargo-pgtest's memory watch reports them (the summary's
//! `peak_ram_bytes`); the processes alone (`peak_memory_bytes`) in an informative row.

use super::pgtest::Report;
use super::stats::Stats;
use super::table::{Goal, Row, Unit};

/// The target's row from target 3's test-isolation runs at `--jobs 2`; `sqlx_suite` (target 4's
/// cargo-pgtest runs' peak RAM, at `sqlx_jobs`) adds an informative row: each of its tests makes a
/// database of its own.
pub fn rows(runs: &[Report], sqlx_suite: Option<(&[u64], usize)>) -> Vec<Row> {
    let mib = |bytes: &mut dyn Iterator<Item = u64>| {
        Stats::of(
            &bytes
                .map(|b| b as f64 / (1024.0 * 1024.0))
                .collect::<Vec<_>>(),
        )
    };
    let mut rows = vec![
        Row::target(
            "5",
            "cluster peak RAM, 200 tests, --jobs 2: processes + data directory (peak_ram_bytes)",
            Unit::MiB,
            mib(&mut runs.iter().filter_map(|r| r.peak_ram)),
            Goal::AtMost(64.0),
        ),
        Row::info(
            "  the server processes alone (peak_memory_bytes)",
            Unit::MiB,
            mib(&mut runs.iter().filter_map(|r| r.peak_memory)),
        ),
    ];
    if let Some((peaks, jobs)) = sqlx_suite {
        rows.push(Row::info(
            format!("  the same, #[sqlx::test] suite of target 4, --jobs {jobs}"),
            Unit::MiB,
            mib(&mut peaks.iter().copied()),
        ));
    }
    rows
}
