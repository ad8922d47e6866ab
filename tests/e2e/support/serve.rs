//! `cargo pgtest serve` for the tests that use it (inspect, extra_databases): started, read up to the
//! connection lines it prints, and stopped the way a user stops it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Project, Run};

/// A running `cargo pgtest serve`: the URL it printed first and the variables of its `export` lines.
pub struct Serving {
    pub child: Child,
    pub url: String,
    pub exports: BTreeMap<String, String>,
}

impl Serving {
    /// Starts `cargo pgtest serve <extra>` and reads its stdout up to the `export` line of `last` (the
    /// extra databases' variables come last). `Err` with what it printed if it ended before (its stderr goes
    /// to a file in the project's probe directory); reading stops there, serving goes on.
    pub fn start(project: &Project, extra: &[&str], last: &str) -> Result<Serving, Run> {
        let stderr_path = project.probe_dir.join("serve.stderr");
        let stderr = File::create(&stderr_path).unwrap();
        let args: Vec<&str> = ["serve"].iter().chain(extra).copied().collect();
        let mut child = project
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("cargo-pgtest starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        let mut exports = BTreeMap::new();
        while !exports.contains_key(last) {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let code = child.wait().unwrap().code();
                let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
                let stdout = lines.concat();
                return Err(Run {
                    code,
                    stdout,
                    stderr,
                });
            }
            if let Some((name, value)) = line
                .trim()
                .strip_prefix("export ")
                .and_then(|e| e.split_once('='))
            {
                exports.insert(name.to_owned(), value.trim_matches('\'').to_owned());
            }
            lines.push(line);
        }
        let url = lines[0].trim().to_owned();
        assert!(
            url.starts_with("postgres://"),
            "the first line is the URL: {url:?}"
        );
        Ok(Serving {
            child,
            url,
            exports,
        })
    }

    /// Stops it with SIGTERM, which it ends on normally, and checks it left nothing.
    pub fn stop(mut self, project: &Project) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "serve ends normally on SIGTERM");
        project.assert_nothing_left();
    }
}
