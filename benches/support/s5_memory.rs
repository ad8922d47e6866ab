//! Target 5: the cluster's peak memory (PSS of its processes, as cargo-pgtest reports it in the summary's
//! `peak_memory_bytes`) over runs with two tests in flight.

use super::pgtest::Report;
use super::stats::Stats;
use super::table::{Goal, Row, Unit};

pub fn rows(runs: &[Report]) -> Vec<Row> {
    let peaks: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.peak_memory)
        .map(|bytes| bytes as f64 / (1024.0 * 1024.0))
        .collect();
    vec![Row::target(
        "5",
        "cluster peak memory, --jobs 2 (peak_memory_bytes)",
        Unit::MiB,
        Stats::of(&peaks),
        Goal::AtMost(64.0),
    )]
}
