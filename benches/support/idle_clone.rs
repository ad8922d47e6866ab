//! What a database of its own costs at the least: clone + drop of a project's template on an idle cluster of
//! cargo-pgtest's (`cargo pgtest serve`, same settings and schema as a run), timed by the server's round
//! trips (`psql` with `\timing`), so that the isolation cost per test measured under load has its floor
//! measured in the same bench run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::context::{self, Context, BINARY};

/// Clone + drop pairs timed per measurement; their mean is the figure.
const PAIRS: usize = 20;

/// Milliseconds of one `CREATE DATABASE … TEMPLATE` + `DROP DATABASE`, the mean over [`PAIRS`] pairs, on
/// `project`'s migrated cluster with nothing else running in it.
pub fn measure(ctx: &Context, project: &Path, label: &str) -> Result<f64, String> {
    let log = ctx.logs.join(label);
    std::fs::create_dir_all(&ctx.logs).map_err(|e| format!("{}: {e}", ctx.logs.display()))?;
    let stderr =
        std::fs::File::create(log.with_extension("err")).map_err(|e| format!("{label}: {e}"))?;
    let mut serve = ctx
        .command(BINARY, project)
        .args(["pgtest", "serve"])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("{label}: could not run {BINARY} pgtest serve: {e}"))?;
    let result = exports(&mut serve).and_then(|env| time_pairs(ctx, &env, label));
    stop(&mut serve);
    result.map_err(|e| {
        format!(
            "{e}\n--- serve (end) ---\n{}",
            context::tail(&log.with_extension("err"), 15)
        )
    })
}

/// The `export NAME='value'` lines `serve` prints once its cluster is up.
fn exports(serve: &mut Child) -> Result<BTreeMap<String, String>, String> {
    let stdout = serve.stdout.take().ok_or("serve has no stdout")?;
    let mut env = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading serve's output: {e}"))?;
        if let Some((name, value)) = line
            .strip_prefix("export ")
            .and_then(|rest| rest.split_once('='))
        {
            env.insert(name.to_owned(), value.trim_matches('\'').to_owned());
        }
        if env.contains_key("PGDATABASE") && env.contains_key("PGHOST") {
            return Ok(env);
        }
    }
    Err("`cargo pgtest serve` ended without printing its connection".to_owned())
}

/// Runs the pairs through one psql session and returns their mean, in milliseconds.
fn time_pairs(ctx: &Context, env: &BTreeMap<String, String>, label: &str) -> Result<f64, String> {
    let copy = env.get("PGDATABASE").cloned().unwrap_or_default();
    // The statements cargo-pgtest itself uses (src/template/databases.rs): FILE_COPY from 15 on, a forced
    // drop. The strategy is picked before the timing starts.
    let mut script = String::from(
        "\\set ON_ERROR_STOP on\n\
         SELECT CASE WHEN current_setting('server_version_num')::int >= 150000 \
         THEN 'STRATEGY FILE_COPY' ELSE '' END AS strategy \\gset\n\\timing on\n",
    );
    for n in 0..PAIRS {
        script.push_str(&format!(
            "CREATE DATABASE bench_idle_{n} TEMPLATE \"{copy}\" :strategy;\n\
             DROP DATABASE bench_idle_{n} WITH (FORCE);\n"
        ));
    }
    let script_path = ctx.logs.join(format!("{label}.sql"));
    std::fs::write(&script_path, script).map_err(|e| format!("{label}: {e}"))?;
    let mut psql = ctx.command("psql", &ctx.logs);
    psql.envs(env)
        .env("PGDATABASE", "postgres")
        .args(["-X", "-q", "-f"])
        .arg(&script_path);
    let finished = context::run(
        &mut psql,
        &ctx.logs.join(format!("{label}-psql")),
        Duration::from_secs(300),
    )
    .map_err(|e| format!("{label}: could not run psql: {e}"))?;
    if !finished.success() {
        return Err(format!("{label}: psql failed: {}", finished.describe()));
    }
    let times: Vec<f64> = std::fs::read_to_string(&finished.stdout)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("Time: "))
        .filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .collect();
    if times.len() != 2 * PAIRS {
        return Err(format!(
            "{label}: psql timed {} statements, not {}",
            times.len(),
            2 * PAIRS
        ));
    }
    Ok(times.iter().sum::<f64>() / PAIRS as f64)
}

/// SIGTERM (serve tears down), then SIGKILL after 30 s.
fn stop(serve: &mut Child) {
    let pid = Pid::from_raw(serve.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if !matches!(serve.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = serve.kill();
    let _ = serve.wait();
}
