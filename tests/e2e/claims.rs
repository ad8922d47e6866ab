//! The README's claims that no other test checks, each proved end to end through the real binary on a
//! `fixtures/claim-*` project by looking at the effect, not only at the exit code: the exit codes of a build
//! failure and of a bad seed file, the `postgres`, `tmpfs`, `database_env` and `timeout` keys,
//! `PGTEST_SERVER_USER`, where the run directory goes (a tmpfs, or disk with one warning), and the fast
//! settings. The fixtures' tests report what they saw (`SHOW …`, the data directory's file system and owner)
//! into `PROBE_DIR` as `key=value` lines.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{self, poll, processes_mentioning, Project, Run};
use nix::unistd::{Uid, User};

/// The claim-probe test that reports the server, as a TESTNAME filter.
const REPORT: &str = "reports_the_server";

fn output_of(command: &mut Command) -> Run {
    Run::from(command.output().expect("the command runs"))
}

/// The `key=value` lines a fixture test wrote to `PROBE_DIR/<name>`.
fn report(project: &Project, name: &str, run: &Run) -> BTreeMap<String, String> {
    let path = project.probe_dir.join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the fixture's test wrote no {}: {e}\n{}",
            path.display(),
            run.all()
        )
    });
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// A fresh directory on disk for the data, or `None` (skipped) on a machine without one.
fn disk_dir() -> Option<tempfile::TempDir> {
    let dir = support::disk_dir("pgtest-claims-");
    if dir.is_none() {
        support::skip("no directory on disk to put the data in was found");
    }
    dir
}

/// The run directory of a reported `data_directory` (the data is `<run dir>/data`).
fn run_dir_of(server: &BTreeMap<String, String>) -> PathBuf {
    let data = Path::new(&server["data_directory"]);
    data.parent()
        .unwrap_or_else(|| panic!("{} has no parent", data.display()))
        .to_owned()
}

/// Fails unless, within a deadline, `run_dir` is gone and no process names it.
fn assert_removed(run_dir: &Path) {
    poll(Duration::from_secs(10), || {
        let processes = processes_mentioning(run_dir);
        if run_dir.exists() || !processes.is_empty() {
            return Err(format!(
                "{} still exists: {}, processes {processes:?}",
                run_dir.display(),
                run_dir.exists()
            ));
        }
        Ok(())
    })
    .unwrap();
}

/// How many times `needle` was printed.
fn count(run: &Run, needle: &str) -> usize {
    run.all().matches(needle).count()
}

fn a_build_failure_exits_101_and_leaves_no_cluster() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("claim-build-failure");
    let run = project.run(&["-v"]);
    // The cluster is up before the build (the build gets a database too), so there is one to clean up.
    run.expect(
        101,
        &["Cluster PostgreSQL", "mismatched types", "tests/broken.rs"],
    );
    assert!(!run.all().contains("never_runs"), "{}", run.all());
    project.assert_nothing_left();
}

fn a_failing_seed_file_exits_2_naming_its_file_and_line() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("claim-bad-seed");
    let run = project.run(&[]);
    run.expect(
        2,
        &["seed/second.sql:5:1", "syntax error at or near \"SELEC\""],
    );
    let text = run.all();
    assert!(
        !text.contains("first.sql:") && !text.contains("would_pass_if_the_seed_applied"),
        "{text}"
    );
    project.assert_nothing_left();
}

/// `--which-postgres` run in `project`: the version (`15.18`) and the bin directory.
fn which_postgres(project: &Project, env: &[(&str, &str)]) -> (String, PathBuf) {
    let run = project.run_with(&["--which-postgres"], env);
    run.expect(0, &[]);
    support::parse_which(&run.stdout)
        .unwrap_or_else(|| panic!("unexpected --which-postgres output {:?}", run.stdout))
}

/// A bin directory whose `postgres --version` claims PostgreSQL 99.0, newer than anything installed: without
/// a `postgres` key, discovery would pick it.
fn fake_newer_install() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for program in ["postgres", "initdb"] {
        let path = dir.path().join(program);
        fs::write(&path, "#!/bin/sh\necho 'postgres (PostgreSQL) 99.0'\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// `server_version_num` of a version as `postgres --version` prints it: 15.18 → 150018.
fn version_num(version: &str) -> (u32, Option<u32>) {
    let mut parts = version.split('.');
    let major: u32 = parts.next().and_then(|m| m.parse().ok()).unwrap();
    let minor = parts.next().and_then(|m| m.parse::<u32>().ok());
    (major, minor.map(|minor| major * 10_000 + minor))
}

/// Runs the probe with `key` in the manifest and a newer fake installation first on PATH, and checks the
/// tests were given the installed `version`.
fn check_postgres_key(key: &str, version: &str, fake: &Path) {
    let project = Project::copy_of("claim-probe");
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    let env = [("PATH", path.as_str())];
    let (without_key, _) = which_postgres(&project, &env);
    assert_eq!(
        without_key, "99.0",
        "the fake installation must win without the key, or this check proves nothing"
    );
    project.append_to_manifest(&format!(
        "\n[package.metadata.pgtest]\npostgres = {key:?}\n"
    ));
    assert_eq!(
        which_postgres(&project, &env).0,
        version,
        "postgres = {key:?}"
    );
    let run = project.run_with(&[REPORT], &env);
    run.expect(0, &[&format!("Cluster PostgreSQL {version} ready")]);
    let server = report(&project, "server", &run);
    let seen: u32 = server["server_version_num"].parse().unwrap();
    let (major, num) = version_num(version);
    assert_eq!(seen / 10_000, major, "postgres = {key:?}");
    if let Some(num) = num {
        assert_eq!(seen, num, "postgres = {key:?}");
    }
    project.assert_nothing_left();
}

fn the_postgres_key_picks_a_major_version_or_a_bin_directory() {
    if !support::postgres_available() {
        return;
    }
    let (version, bin_dir) = which_postgres(&Project::copy_of("claim-probe"), &[]);
    let fake = fake_newer_install();
    let major = version_num(&version).0.to_string();
    check_postgres_key(&major, &version, fake.path());
    check_postgres_key(&bin_dir.to_string_lossy(), &version, fake.path());
}

/// The README lists the `postgres` key before `PGTEST_PG_BIN` in the order binaries are found.
fn the_postgres_key_wins_over_pgtest_pg_bin() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("claim-probe");
    let (version, _) = which_postgres(&project, &[]);
    let fake = fake_newer_install();
    let major = version_num(&version).0;
    project.append_to_manifest(&format!(
        "\n[package.metadata.pgtest]\npostgres = \"{major}\"\n"
    ));
    let fake_dir = fake.path().to_string_lossy().into_owned();
    let env = [("PGTEST_PG_BIN", fake_dir.as_str())];
    assert_eq!(which_postgres(&project, &env).0, version);
}

fn tmpfs_false_puts_the_data_directory_on_disk() {
    if !support::postgres_available() {
        return;
    }
    let Some(disk) = disk_dir() else { return };
    let project = Project::copy_of("claim-probe");
    project.append_to_manifest("\n[package.metadata.pgtest]\ntmpfs = false\n");
    // PGTEST_TMPDIR (set by the harness, on a tmpfs) would choose the place itself: the key alone must.
    let mut command = project.command(&[REPORT]);
    command
        .env_remove("PGTEST_TMPDIR")
        .env("TMPDIR", disk.path());
    let run = output_of(&mut command);
    run.expect(0, &["ready, data on disk"]);
    // Asked for, so no warning about it.
    assert_eq!(
        count(&run, "in RAM") + count(&run, "warning:"),
        0,
        "{}",
        run.all()
    );
    let server = report(&project, "server", &run);
    let run_dir = run_dir_of(&server);
    assert_eq!(run_dir.parent(), Some(disk.path()), "{server:?}");
    assert_ne!(server["data_fs"], "tmpfs", "{server:?}");
    assert_removed(&run_dir);
}

fn database_env_carries_the_url_to_the_test_and_to_the_build() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("claim-database-env");
    let run = project.run(&[]);
    run.expect(0, &["1 passed, 0 failed"]);
    let seen = report(&project, "database_env", &run);
    let database = &seen["pgdatabase"];
    assert_eq!(seen["app_db_url_set"], "true", "{seen:?}");
    // `DATABASE_URL (or your database_env)`: the test gets the URL under the name it asked for only.
    assert_eq!(seen["database_url_set"], "false", "{seen:?}");
    assert_eq!(
        seen["through_url"],
        format!("{database} 42"),
        "the URL reaches the test's own migrated database: {seen:?}"
    );
    // The build gets a URL to a migrated database, for sqlx's query!; under both names.
    assert_eq!(seen["build_database_url"], "marker 42", "{seen:?}");
    assert_eq!(seen["build_app_db_url"], "marker 42", "{seen:?}");
    project.assert_nothing_left();
}

fn the_timeout_key_kills_a_test_that_runs_past_it() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("claim-probe");
    project.append_to_manifest("\n[package.metadata.pgtest]\ntimeout = 1\n");
    // Unkilled, the test would sleep two minutes and pass.
    let run = project.run_with(&["sleeps_when_asked"], &[("PROBE_SLEEP", "120")]);
    run.expect(
        100,
        &[
            "TIMEOUT",
            "claim-probe::probe sleeps_when_asked",
            "0 passed, 1 failed",
        ],
    );
    let pid: i32 = fs::read_to_string(project.probe_dir.join("sleeper"))
        .unwrap()
        .parse()
        .unwrap();
    support::assert_gone(pid, Duration::from_secs(10), "the timed-out test");
    project.assert_nothing_left();
}

/// An unprivileged account other than the one the server runs as by default (`postgres`, else `nobody`).
fn account_other_than_the_default() -> Option<User> {
    let default = if User::from_name("postgres").ok().flatten().is_some() {
        "postgres"
    } else {
        "nobody"
    };
    ["nobody", "daemon", "bin"]
        .into_iter()
        .filter(|name| *name != default)
        .filter_map(|name| User::from_name(name).ok().flatten())
        .find(|user| !user.uid.is_root())
}

fn pgtest_server_user_is_the_account_the_server_runs_as() {
    if !Uid::effective().is_root() {
        support::skip("PGTEST_SERVER_USER is for runs as root, and this is not root");
        return;
    }
    if !support::postgres_available() {
        return;
    }
    let Some(account) = account_other_than_the_default() else {
        support::skip("no unprivileged account besides the default one (nobody, daemon, bin)");
        return;
    };
    let project = Project::copy_of("claim-probe");
    let run = project.run_with(&["-v", REPORT], &[("PGTEST_SERVER_USER", &account.name)]);
    run.expect(0, &[&format!("(server runs as `{}`)", account.name)]);
    let server = report(&project, "server", &run);
    let uid = account.uid.to_string();
    assert_eq!(
        server["data_owner"], uid,
        "data directory owner: {server:?}"
    );
    assert_eq!(server["postmaster_uid"], uid, "server process: {server:?}");
    // Tests run as the invoking user.
    assert_eq!(server["test_uid"], "0", "{server:?}");
    project.assert_nothing_left();
}

#[cfg(target_os = "linux")]
fn without_pgtest_tmpdir_the_run_directory_lands_on_a_tmpfs() {
    if !support::postgres_available() {
        return;
    }
    let shm = Path::new("/dev/shm");
    if !support::is_tmpfs(shm) {
        support::skip("/dev/shm is not a tmpfs here");
        return;
    }
    let xdg = tempfile::Builder::new()
        .prefix("pgtest-claims-xdg-")
        .tempdir_in(shm)
        .unwrap();
    let project = Project::copy_of("claim-probe");
    let mut command = project.command(&[REPORT]);
    command
        .env_remove("PGTEST_TMPDIR")
        .env("XDG_RUNTIME_DIR", xdg.path());
    let run = output_of(&mut command);
    run.expect(0, &["ready, data in RAM (tmpfs)"]);
    assert_eq!(count(&run, "warning:"), 0, "{}", run.all());
    let server = report(&project, "server", &run);
    let run_dir = run_dir_of(&server);
    // $XDG_RUNTIME_DIR first; as root, the server's other account could not enter it, so /dev/shm.
    let expected = if Uid::effective().is_root() {
        shm
    } else {
        xdg.path()
    };
    assert_eq!(run_dir.parent(), Some(expected), "{server:?}");
    assert_eq!(server["data_fs"], "tmpfs", "{server:?}");
    assert_removed(&run_dir);
}

/// Checks a run that found no tmpfs: it passed with its data on disk under `disk`, printed `warning` once,
/// and left nothing there.
fn check_disk_fallback(project: &Project, run: &Run, warning: &str, disk: &Path) {
    run.expect(0, &["ready, data on disk", "1 passed, 0 failed"]);
    assert_eq!(count(run, warning), 1, "{}", run.all());
    assert_eq!(count(run, "warning:"), 1, "{}", run.all());
    let server = report(project, "server", run);
    let run_dir = run_dir_of(&server);
    assert_eq!(run_dir.parent(), Some(disk), "{server:?}");
    assert_ne!(server["data_fs"], "tmpfs", "{server:?}");
    assert_removed(&run_dir);
    support::nothing_left_in(disk).unwrap();
}

fn a_pgtest_tmpdir_on_disk_warns_once_and_the_run_passes_on_disk() {
    if !support::postgres_available() {
        return;
    }
    let Some(disk) = disk_dir() else { return };
    let project = Project::copy_of("claim-probe");
    let mut command = project.command(&[REPORT]);
    command.env("PGTEST_TMPDIR", disk.path());
    let run = output_of(&mut command);
    check_disk_fallback(
        &project,
        &run,
        "(PGTEST_TMPDIR) is not a tmpfs",
        disk.path(),
    );
}

/// `inner` run in a private mount namespace where `/dev/shm` is `stand_in`, a directory on disk.
#[cfg(target_os = "linux")]
fn without_dev_shm(inner: &Command, stand_in: &Path) -> Command {
    let mut outer = Command::new("unshare");
    outer
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" /dev/shm && exec \"$@\"")
        .arg(stand_in)
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_clear()
        .stdin(std::process::Stdio::null());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => outer.env(name, value),
            None => outer.env_remove(name),
        };
    }
    if let Some(dir) = inner.get_current_dir() {
        outer.current_dir(dir);
    }
    outer
}

#[cfg(target_os = "linux")]
fn with_no_tmpfs_to_be_had_the_run_warns_once_and_passes_on_disk() {
    if !support::postgres_available() {
        return;
    }
    let Some((disk, stand_in)) = disk_dir().zip(disk_dir()) else {
        return;
    };
    let namespaces = Command::new("unshare")
        .args(["--mount", "true"])
        .stdin(std::process::Stdio::null())
        .output();
    if !namespaces.is_ok_and(|output| output.status.success()) {
        support::skip(
            "a private mount namespace (`unshare --mount`, root) is needed to hide /dev/shm",
        );
        return;
    }
    let project = Project::copy_of("claim-probe");
    // No PGTEST_TMPDIR and no $XDG_RUNTIME_DIR: /dev/shm is the only tmpfs tried, and it is not one.
    let mut inner = project.command(&[REPORT]);
    inner
        .env_remove("PGTEST_TMPDIR")
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", disk.path());
    let run = output_of(&mut without_dev_shm(&inner, stand_in.path()));
    check_disk_fallback(&project, &run, "no writable tmpfs found", disk.path());
    support::nothing_left_in(stand_in.path()).unwrap();
}

fn the_fast_settings_are_in_effect_and_a_users_setting_overrides_one() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("claim-probe");
    // random_page_cost is one of the fast defaults (1.0); work_mem is not (PostgreSQL's own is 4MB).
    project.append_to_manifest(
        "\n[package.metadata.pgtest.settings]\nwork_mem = \"8MB\"\nrandom_page_cost = \"1.5\"\n",
    );
    let run = project.run(&[REPORT]);
    run.expect(0, &["1 passed, 0 failed"]);
    let server = report(&project, "server", &run);
    // README "How it works": fsync, synchronous_commit, full_page_writes off, wal_level = minimal, no
    // autovacuum, no JIT, rare checkpoints, DSM segments in the data directory, no TCP address.
    for (setting, expected) in [
        ("fsync", "off"),
        ("synchronous_commit", "off"),
        ("full_page_writes", "off"),
        ("wal_level", "minimal"),
        ("autovacuum", "off"),
        ("jit", "off"),
        ("dynamic_shared_memory_type", "mmap"),
        ("listen_addresses", ""),
        ("work_mem", "8MB"),
        ("random_page_cost", "1.5"),
    ] {
        assert_eq!(server[setting], expected, "SHOW {setting}: {server:?}");
    }
    let checkpoint_seconds: u64 = server["checkpoint_timeout_s"].parse().unwrap();
    assert!(
        checkpoint_seconds >= 3600,
        "checkpoints are rare (PostgreSQL's default is every 300 s): {server:?}"
    );
    project.assert_nothing_left();
}

crate::tests! {
    a_build_failure_exits_101_and_leaves_no_cluster,
    a_failing_seed_file_exits_2_naming_its_file_and_line,
    the_postgres_key_picks_a_major_version_or_a_bin_directory,
    the_postgres_key_wins_over_pgtest_pg_bin,
    tmpfs_false_puts_the_data_directory_on_disk,
    database_env_carries_the_url_to_the_test_and_to_the_build,
    the_timeout_key_kills_a_test_that_runs_past_it,
    pgtest_server_user_is_the_account_the_server_runs_as,
    #[cfg(target_os = "linux")] without_pgtest_tmpdir_the_run_directory_lands_on_a_tmpfs,
    a_pgtest_tmpdir_on_disk_warns_once_and_the_run_passes_on_disk,
    #[cfg(target_os = "linux")] with_no_tmpfs_to_be_had_the_run_warns_once_and_passes_on_disk,
    the_fast_settings_are_in_effect_and_a_users_setting_overrides_one,
}
