//! The benchmark's parts: where things live and how children run (context), the generated projects
//! (generate, realistic), runs of cargo-pgtest and their events (pgtest), the reference servers (server),
//! clone + drop on an idle cluster (idle_clone), one module per scenario (s1…s9), what cargo-pgtest's own
//! threads cost per test (own_cpu) and where a test's time and CPU go (breakdown), statistics and the
//! results table.

pub mod breakdown;
pub mod context;
pub mod generate;
pub mod idle_clone;
pub mod machine;
pub mod own_cpu;
pub mod pgtest;
pub mod realistic;
pub mod s1_fixed;
pub mod s2_clone;
pub mod s3_isolation;
pub mod s4_sqlx;
pub mod s5_memory;
pub mod s6_snapshot;
pub mod s7_databases;
pub mod s8_readonly;
pub mod s9_shape;
pub mod server;
pub mod stats;
pub mod table;

/// Runs that did not count, and why; printed after the table.
#[derive(Default)]
pub struct Problems(pub Vec<String>);

impl Problems {
    /// The value, or `None` after noting why there is none.
    pub fn keep<T>(&mut self, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(problem) => {
                eprintln!("    ! {}", problem.lines().next().unwrap_or_default());
                self.0.push(problem);
                None
            }
        }
    }
}

/// Seconds with millisecond precision, for progress lines.
pub fn secs(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}s"))
}
