//! The cache of migrated clusters under the target directory, driven through the real binary on
//! `fixtures/cache-probe`: a second run with nothing changed copies the cached cluster and runs no
//! migration; a changed migration or fixture file builds (and stores) it afresh; `--no-cache` neither
//! reads nor writes it; two runs filling an empty cache at once both pass and leave one whole entry.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_cargo-pgtest");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A private copy of the probe project with its own target directory (and so its own cache).
struct Probe {
    _root: tempfile::TempDir,
    project: PathBuf,
    target: PathBuf,
    cluster_parent: tempfile::TempDir,
}

impl Probe {
    /// `None` when PostgreSQL is missing and this is not CI (where that fails the test instead).
    fn new() -> Option<Probe> {
        let which = Command::new(BINARY)
            .args(["pgtest", "--which-postgres"])
            .output()
            .unwrap();
        if !which.status.success() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL is missing, and CI must run the cache tests: {}",
                String::from_utf8_lossy(&which.stderr)
            );
            eprintln!(
                "skipped: no PostgreSQL ({})",
                String::from_utf8_lossy(&which.stderr).trim()
            );
            return None;
        }
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("cache-probe");
        copy_dir(&Path::new(REPO).join("fixtures/cache-probe"), &project);
        let shm = Path::new("/dev/shm");
        let cluster_parent = if shm.is_dir() {
            tempfile::tempdir_in(shm).unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        Some(Probe {
            target: root.path().join("target"),
            _root: root,
            project,
            cluster_parent,
        })
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(BINARY);
        command
            .arg("pgtest")
            .args(["--json", "-"])
            .args(extra)
            .current_dir(&self.project)
            .env("CARGO_TARGET_DIR", &self.target)
            .env("PGTEST_TMPDIR", self.cluster_parent.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        command
    }

    /// Runs once, expects success, and returns the `template_cache` event.
    fn run(&self, extra: &[&str]) -> serde_json::Value {
        check(self.command(extra).output().unwrap())
    }

    fn cache_entries(&self) -> Vec<String> {
        let root = self.target.join("pgtest/cache");
        let mut names: Vec<String> = fs::read_dir(root)
            .map(|read| {
                read.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn append(&self, file: &str, text: &str) {
        let path = self.project.join(file);
        let mut contents = fs::read_to_string(&path).unwrap();
        contents.push_str(text);
        fs::write(path, contents).unwrap();
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let left: Vec<_> = fs::read_dir(self.cluster_parent.path()).unwrap().collect();
        if !std::thread::panicking() {
            assert!(left.is_empty(), "the runs left files behind: {left:?}");
        }
    }
}

fn check(output: Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stderr.contains("1 passed, 0 failed"), "{stderr}");
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["type"] == "template_cache")
        .unwrap_or_else(|| panic!("no template_cache event in\n{stdout}"))
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().map(Result::unwrap) {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn an_unchanged_project_reuses_the_cluster_and_any_change_rebuilds_it() {
    let Some(probe) = Probe::new() else { return };
    let first = probe.run(&[]);
    assert_eq!(
        (first["hit"].as_bool(), first["stored"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(probe.cache_entries().len(), 1);

    let again = probe.run(&[]);
    assert_eq!(
        again["hit"], true,
        "nothing changed: the cached cluster is used"
    );

    probe.append(
        "migrations/20240101000000_create_probe.sql",
        "CREATE INDEX probe_id ON probe (id);\n",
    );
    assert_eq!(
        probe.run(&[])["hit"],
        false,
        "a changed migration rebuilds the cluster"
    );
    assert_eq!(probe.run(&[])["hit"], true);

    probe.append("seed/rows.sql", "INSERT INTO probe VALUES (2);\n");
    assert_eq!(
        probe.run(&[])["hit"],
        false,
        "a changed fixture rebuilds the cluster"
    );

    fs::write(
        probe.project.join("migrations/20240102000000_more.sql"),
        "CREATE TABLE more (id int);\n",
    )
    .unwrap();
    assert_eq!(
        probe.run(&[])["hit"],
        false,
        "a new migration rebuilds the cluster"
    );
    assert_eq!(probe.run(&[])["hit"], true);
    assert_eq!(
        probe.cache_entries().len(),
        4,
        "one entry per state, the oldest pruned beyond four"
    );

    let before = probe.cache_entries();
    let off = probe.run(&["--no-cache"]);
    assert_eq!(
        (off["hit"].as_bool(), off["stored"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(probe.cache_entries(), before, "--no-cache writes nothing");
}

#[test]
fn two_runs_filling_an_empty_cache_at_once_both_pass() {
    let Some(probe) = Probe::new() else { return };
    // Build once with the cache off, so both runs reach the cache at about the same time.
    probe.run(&["--no-cache"]);
    let runs: Vec<_> = (0..2)
        .map(|_| {
            probe
                .command(&[])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        check(run.wait_with_output().unwrap());
    }
    let entries = probe.cache_entries();
    assert_eq!(
        entries.len(),
        1,
        "one whole entry, no half-written staging left: {entries:?}"
    );
    assert_eq!(probe.run(&[])["hit"], true);
}
