//! The machine the figures were measured on.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use super::context::{self, Context, BINARY};
use super::generate::Project;

pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub os: String,
    /// "PostgreSQL 15.18", as cargo-pgtest found it.
    pub postgres: String,
    pub pg_bin: PathBuf,
}

impl Machine {
    /// Asks cargo-pgtest which PostgreSQL it uses (in `project`, whose `postgres` key it honours).
    pub fn probe(ctx: &Context, project: &Project) -> Result<Machine, String> {
        let mut command = ctx.command(BINARY, &project.dir);
        command.args(["pgtest", "--which-postgres"]);
        let finished = context::run(
            &mut command,
            &ctx.logs.join("which-postgres"),
            Duration::from_secs(60),
        )
        .map_err(|e| format!("could not run {BINARY}: {e}"))?;
        let out = fs::read_to_string(&finished.stdout).unwrap_or_default();
        let (postgres, pg_bin) = out
            .trim()
            .rsplit_once(" in ")
            .filter(|_| finished.success())
            .ok_or_else(|| {
                format!(
                    "`cargo pgtest --which-postgres` found no PostgreSQL: {}",
                    finished.describe()
                )
            })?;
        let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let memory_gib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "unknown OS".to_owned());
        Ok(Machine {
            cpus: ctx.cpus,
            cpu_model,
            memory_gib,
            kernel: format!("Linux {}", read("/proc/sys/kernel/osrelease").trim()),
            os,
            postgres: postgres.to_owned(),
            pg_bin: PathBuf::from(pg_bin),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} CPUs ({}), {:.0} GiB RAM, {}, {}, {}",
            self.cpus, self.cpu_model, self.memory_gib, self.os, self.kernel, self.postgres
        )
    }
}
