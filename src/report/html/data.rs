//! The copy of the run the page's script draws from, embedded in the page as JSON: arrays rather than
//! objects (10,000 tests' keys would weigh more than their values), times in milliseconds since the run
//! started, outputs cut to their end.

use serde_json::{json, Value};

use super::model::{Run, Test};
use super::page::phase_label;
use super::text::{clean_output, tail};

/// The most of a test's output the script gets, and of all outputs together.
const DATA_OUTPUT_BYTES: usize = 2 * 1024;
const DATA_OUTPUTS_BYTES: usize = 256 * 1024;

/// The outcomes, in the order failures sort first; the script gets their index.
pub(crate) const STATUSES: [&str; 6] = [
    "failed",
    "crashed",
    "timed_out",
    "not_run",
    "passed",
    "ignored",
];
pub(crate) const DATABASES: [&str; 6] = ["fresh", "reused", "snapshot", "group", "shared", "sqlx"];

/// Milliseconds to a tenth, the script's unit (and shorter than seconds to four places).
fn ms(seconds: f64) -> Value {
    json!((seconds * 10_000.0).round() / 10.0)
}

/// A test's own time, to a hundredth of a millisecond: the script rounds it to the millisecond as the
/// header does, which a tenth could tip the other way.
fn fine_ms(seconds: Option<f64>) -> Value {
    seconds.map_or(Value::Null, |seconds| {
        json!((seconds * 100_000.0).round() / 100.0)
    })
}

fn optional_ms(seconds: Option<f64>) -> Value {
    seconds.map_or(Value::Null, ms)
}

fn index_of(values: &[&str], value: Option<&str>) -> Value {
    value
        .and_then(|value| values.iter().position(|v| *v == value))
        .map_or(Value::Null, |index| json!(index))
}

/// What the script draws from.
pub(crate) fn data(run: &Run) -> Value {
    let mut binaries: Vec<&str> = Vec::new();
    let mut tests = Vec::with_capacity(run.tests.len());
    let mut runs = Vec::new();
    let mut checks = Vec::new();
    let mut outputs = serde_json::Map::new();
    let mut output_budget = DATA_OUTPUTS_BYTES;
    for (index, test) in run.tests.iter().enumerate() {
        let binary = match binaries.iter().position(|b| *b == test.binary) {
            Some(position) => position,
            None => {
                binaries.push(&test.binary);
                binaries.len() - 1
            }
        };
        tests.push(test_row(test, binary));
        runs.extend(test_runs(test, index));
        if let Some((start, end, untouched)) = test.check {
            checks.push(json!([index, ms(start), ms(end), u8::from(untouched)]));
        }
        let output = clean_output(&test.output);
        if !output.is_empty() && output_budget > 0 {
            let kept = tail(&output, DATA_OUTPUT_BYTES.min(output_budget));
            output_budget = output_budget.saturating_sub(kept.len());
            outputs.insert(index.to_string(), json!(kept));
        }
    }
    let batches: Vec<Value> = run
        .batches
        .iter()
        .map(|b| {
            json!([
                b.kind,
                b.binary,
                ms(b.start),
                b.end.map_or(Value::Null, ms),
                b.slots,
                b.tests,
                b.number,
                b.lanes
            ])
        })
        .collect();
    let phases: Vec<Value> = run
        .phases
        .iter()
        .map(|(name, start, end)| json!([name, ms(*start), ms(*end), phase_label(name)]))
        .collect();
    json!({
        "wall": ms(run.wall), "lanes": run.lanes(), "statuses": STATUSES, "databases": DATABASES,
        "phases": phases, "batches": batches, "binaries": binaries, "tests": tests, "runs": runs,
        "checks": checks, "outputs": outputs,
    })
}

/// `[binary, name, status, label (a crash's signal, else 0), seconds (ms), database, batch, attempts,
/// earlier times (ms) or 0, the median it was slower than (ms) or 0, kept command or 0]`.
fn test_row(test: &Test, binary: usize) -> Value {
    let label = match test.status.as_str() {
        "crashed" => json!(test.label),
        _ => json!(0),
    };
    let history = match test.history.is_empty() {
        true => json!(0),
        false => Value::Array(test.history.iter().map(|s| ms(*s)).collect()),
    };
    json!([
        binary,
        test.name,
        index_of(&STATUSES, Some(test.status.as_str())),
        label,
        fine_ms(test.seconds),
        index_of(&DATABASES, test.database.as_deref()),
        test.batch,
        test.attempts.len(),
        history,
        test.slower_than.map_or(json!(0), ms),
        test.kept
            .as_deref()
            .map_or(json!(0), |command| json!(command)),
    ])
}

/// Each attempt that has a place on the timeline: `[test, slot, start, end, wait, status, last (1/0)]`.
/// An attempt without a start (doc tests) is drawn as ending where its result came.
fn test_runs(test: &Test, index: usize) -> Vec<Value> {
    let last = test.attempts.len().saturating_sub(1);
    test.attempts
        .iter()
        .enumerate()
        .filter(|(_, attempt)| attempt.start.is_some() || attempt.status != "not_run")
        .map(|(n, attempt)| {
            let start = attempt
                .start
                .unwrap_or(attempt.end - attempt.seconds.unwrap_or(0.0));
            json!([
                index,
                attempt.slot.unwrap_or(0),
                ms(start),
                ms(attempt.end.max(start)),
                optional_ms(attempt.wait),
                index_of(&STATUSES, Some(attempt.status.as_str())),
                u8::from(n == last),
            ])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_milliseconds_to_a_tenth_and_a_tests_own_to_a_hundredth() {
        assert_eq!(ms(1.23456), json!(1234.6));
        assert_eq!(fine_ms(Some(0.2895049)), json!(289.5));
        assert_eq!(fine_ms(None), Value::Null);
        assert_eq!(index_of(&DATABASES, Some("group")), json!(3));
        assert_eq!(index_of(&DATABASES, Some("unknown")), Value::Null);
    }
}
