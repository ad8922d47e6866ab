//! Faults, each driven through the real binary on `fixtures/fault-probe`: a run killed or interrupted
//! half-way, two runs at once, a test that hangs, crashes, kills the server or misbehaves with its
//! database, and a tmpfs that fills up. Every test checks that nothing of the run is left behind.

use std::time::Duration;

use crate::support::{self, Project};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A `[package.metadata.pgtest]` for the probe: tests running past a second are reported SLOW.
const SLOW_AFTER_A_SECOND: &str = "\n[package.metadata.pgtest]\nslow_timeout = \"1s\"\n";
/// The probe's test that blocks until released, as a TESTNAME filter.
const BLOCKS: &str = "blocks_until_released";

fn a_killed_run_leaves_no_server_and_the_next_run_removes_its_files() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    let mut run = project.start_blocked(&[BLOCKS]);
    let test_pid = project.blocked_test_pid();
    kill(Pid::from_raw(run.id() as i32), Signal::SIGKILL).unwrap();
    run.wait().unwrap();

    let parent = project.cluster_parent.path();
    support::no_process_mentions(parent, Duration::from_secs(10))
        .expect("the server dies with the run that started it");
    // The running test dies with the run too.
    support::assert_gone(test_pid, Duration::from_secs(10), "the killed run's test");
    let leftovers = std::fs::read_dir(parent).unwrap().count();
    assert_eq!(
        leftovers, 1,
        "the killed run's directory is still there, for the next run to remove"
    );

    project.release_probe();
    project.run(&["passes"]).expect(0, &["1 passed, 0 failed"]);
    project.assert_nothing_left();
}

fn interrupted_by(signal: Signal, exit: i32, name: &str) {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    let run = project.start_blocked(&[BLOCKS]);
    kill(Pid::from_raw(run.id() as i32), signal).unwrap();
    let output = support::Run::from(run.wait_with_output().unwrap());
    output.expect(
        exit,
        &[
            &format!("warning: stopped by {name}"),
            "NOT RUN",
            "fault-probe::faults blocks_until_released",
            "Summary",
        ],
    );
    project.assert_nothing_left();
}

fn ctrl_c_stops_the_tests_and_the_cluster_and_prints_the_results_so_far() {
    interrupted_by(Signal::SIGINT, 130, "SIGINT");
}

fn sigterm_does_the_same_with_its_own_exit_code() {
    interrupted_by(Signal::SIGTERM, 143, "SIGTERM");
}

fn two_runs_at_once_on_one_project_and_on_two_projects_all_pass() {
    if !support::postgres_available() {
        return;
    }
    let first = Project::copy_of("fault-probe");
    let second = Project::copy_of("cache-probe");
    let runs = [
        first.command(&["--", "--skip", "blocks"]),
        first.command(&["--", "--skip", "blocks"]),
        second.command(&[]),
    ];
    for run in support::run_at_once(runs) {
        run.expect(0, &[" 0 failed"]);
    }
    first.assert_nothing_left();
    second.assert_nothing_left();
}

fn a_hanging_test_times_out_after_a_slow_warning_and_the_run_goes_on() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    // The slow-test warning comes first, after the `slow_timeout` key's second.
    project.append_to_manifest(SLOW_AFTER_A_SECOND);
    let args = ["--timeout", "2", "--", "--skip", "blocks"];
    let run = project.run_with(&args, &[("PROBE_HANG", "1")]);
    run.expect(
        100,
        &[
            "SLOW",
            "TIMEOUT",
            "fault-probe::faults hangs_when_asked",
            "7 passed, 1 failed",
            "timed out",
        ],
    );
    project.assert_nothing_left();
}

fn tests_run_together_in_one_process_time_out_too() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    project.append_to_manifest(SLOW_AFTER_A_SECOND);
    let args = [
        "--isolation",
        "shared",
        // Two threads, so `passes` runs beside the hanging test whatever the machine's core count.
        "--jobs",
        "2",
        "--timeout",
        "3",
        "--",
        "--exact",
        "hangs_when_asked",
        "passes",
    ];
    let run = project.run_with(&args, &[("PROBE_HANG", "1")]);
    run.expect(
        100,
        &[
            "SLOW",
            "TIMEOUT",
            "fault-probe::faults hangs_when_asked",
            "PASS",
            "1 passed, 1 failed",
        ],
    );
    project.assert_nothing_left();
}

fn a_crashing_test_is_reported_with_its_signal_and_the_run_goes_on() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    let args = ["--", "--skip", "blocks"];
    project.run_with(&args, &[("PROBE_CRASH", "1")]).expect(
        100,
        &[
            "SIGSEGV",
            "fault-probe::faults segfaults_when_asked",
            "7 passed, 1 failed",
            "1 crashed",
        ],
    );
    project.assert_nothing_left();
}

fn misbehaving_tests_lose_their_databases_and_touch_nobody_else() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    let run = project.run(&[
        "--json",
        "-",
        "--",
        "leaves_a_connection_open",
        "drops_its_own_database",
        "cannot_connect_to_the_template",
        "writes_a_row_that_nobody_else_sees",
        "passes",
    ]);
    run.expect(0, &["5 passed, 0 failed"]);
    let counts: Vec<String> = run
        .events()
        .into_iter()
        .filter_map(|event| event["message"].as_str().map(str::to_owned))
        .filter(|message| message.starts_with("cluster databases before the tests"))
        .collect();
    assert_eq!(counts.len(), 1, "{counts:?}");
    let (before, after) = counts[0].split_once(", after: ").unwrap();
    assert_eq!(
        before.rsplit(' ').next(),
        Some(after),
        "every test database is gone again: {}",
        counts[0]
    );
    project.assert_nothing_left();
}

fn a_server_that_dies_mid_run_leaves_the_rest_not_run_with_its_log() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    let args = ["--jobs", "1", "--", "--skip", "blocks"];
    let run = project.run_with(&args, &[("PROBE_KILL_SERVER", "1")]);
    run.expect(
        100,
        &[
            "NOT RUN",
            "the PostgreSQL server died during the run",
            "not run",
        ],
    );
    project.assert_nothing_left();
}

#[cfg(target_os = "linux")]
fn a_full_tmpfs_is_one_clear_error_and_leaves_nothing() {
    if !support::postgres_available() || !support::root_for("mounting a small tmpfs") {
        return;
    }
    let project = Project::copy_of("fault-probe");
    let mount_point = project.cluster_parent.path();
    if !mount_small_tmpfs(mount_point, "8m") {
        return;
    }
    let segments_before = shared_memory_segments();
    let run = project.run(&["passes"]);
    let unmount = || {
        std::process::Command::new("umount")
            .arg(mount_point)
            .status()
    };
    let left = support::nothing_left_in(mount_point);
    let _ = unmount();
    run.expect(2, &["space", "PGTEST_TMPDIR"]);
    left.expect("a failed boot removes what it made");
    // initdb's server processes die of the full disk before they can remove their shared memory. Other
    // tests' servers have segments too (an external one for its life): this test runs alone, and still
    // waits for only the new ones to go.
    support::poll(Duration::from_secs(10), || {
        let new: Vec<_> = shared_memory_segments()
            .into_iter()
            .filter(|s| !segments_before.contains(s))
            .collect();
        new.is_empty()
            .then_some(())
            .ok_or_else(|| format!("left in /dev/shm: {new:?}"))
    })
    .unwrap();
}

/// Mounts a tmpfs of `size` at `mount_point`; false (after a skip note, a failure in CI) when that cannot be
/// done: even root may lack the privilege in a container.
#[cfg(target_os = "linux")]
fn mount_small_tmpfs(mount_point: &std::path::Path, size: &str) -> bool {
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(mount_point)
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        support::skip(&format!(
            "cannot mount a small tmpfs at {}",
            mount_point.display()
        ));
    }
    mounted
}

#[cfg(target_os = "linux")]
fn shared_memory_segments() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("PostgreSQL."))
                .collect()
        })
        .unwrap_or_default()
}

fn a_panic_inside_cargo_pgtest_still_stops_and_removes_the_cluster() {
    if !support::postgres_available() {
        return;
    }
    let project = Project::copy_of("fault-probe");
    // Honoured by debug builds (the ones tests run) only.
    let run = project.run_with(&["passes"], &[("CARGO_PGTEST_PANIC_FOR_TESTS", "1")]);
    // The panic comes once the cluster is up (in the stage that needs it).
    run.expect(
        1,
        &[
            "CARGO_PGTEST_PANIC_FOR_TESTS is set",
            "cargo-pgtest crashed (a bug; please report it). The cluster was stopped and removed.",
        ],
    );
    project.assert_nothing_left();
}

#[cfg(target_os = "linux")]
fn a_nearly_full_tmpfs_is_told_once_with_what_to_do() {
    if !support::postgres_available() || !support::root_for("mounting a small tmpfs") {
        return;
    }
    let project = Project::copy_of("fault-probe");
    let mount_point = project.cluster_parent.path();
    // Room for the cluster and a few test databases, but less than the 64 MiB margin left over.
    if !mount_small_tmpfs(mount_point, "100m") {
        return;
    }
    let run = project.run(&["--no-cache", "passes"]);
    let left = support::nothing_left_in(mount_point);
    let _ = std::process::Command::new("umount")
        .arg(mount_point)
        .status();
    run.expect(
        0,
        &[
            "1 passed, 0 failed",
            "nearly full",
            "--jobs",
            "--no-tmpfs",
            "PGTEST_TMPDIR",
        ],
    );
    assert_eq!(
        run.stderr.matches("nearly full").count(),
        1,
        "{}",
        run.stderr
    );
    left.expect("the run removes what it made");
}

/// The exec shim test processes start through (`pgtest-spawn`, beside cargo-pgtest): a `sleep` started
/// by a stand-in for cargo-pgtest (a shell,
/// in the background) dies when that shell is killed with SIGKILL, and one whose parent is not the one
/// named dies at once.
#[cfg(target_os = "linux")]
fn a_child_started_through_the_exec_shim_dies_with_its_parent_even_by_sigkill() {
    let shim = env!("CARGO_BIN_EXE_pgtest-spawn");
    let script = r#""$0" $$ sleep 31 & echo $!; wait"#;
    let mut parent = std::process::Command::new("sh")
        .args(["-c", script, shim])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(parent.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let child = Pid::from_raw(line.trim().parse().unwrap());
    // The shim has become `sleep` (same pid) once its command line says so.
    support::poll(Duration::from_secs(10), || {
        let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
        match String::from_utf8_lossy(&cmdline).starts_with("sleep\u{0}31") {
            true => Ok(()),
            false => Err(format!("{child} is not sleep yet: {cmdline:?}")),
        }
    })
    .expect("the shim runs the program in its place");
    kill(Pid::from_raw(parent.id() as i32), Signal::SIGKILL).unwrap();
    parent.wait().unwrap();
    let gone = |pid: Pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for init to reap it.
        match stat.is_empty() || stat.contains(") Z ") {
            true => Ok(()),
            false => Err(format!("{pid} outlived its parent: {stat}")),
        }
    };
    support::poll(Duration::from_secs(10), || gone(child)).expect("the child dies with its parent");

    // A parent that is not the one named: the shim stops itself before running anything.
    let status = std::process::Command::new(shim)
        .args(["1", "sh", "-c", "exit 0"])
        .status()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );
}

crate::tests! {
    a_killed_run_leaves_no_server_and_the_next_run_removes_its_files,
    ctrl_c_stops_the_tests_and_the_cluster_and_prints_the_results_so_far,
    sigterm_does_the_same_with_its_own_exit_code,
    two_runs_at_once_on_one_project_and_on_two_projects_all_pass,
    a_hanging_test_times_out_after_a_slow_warning_and_the_run_goes_on,
    tests_run_together_in_one_process_time_out_too,
    a_crashing_test_is_reported_with_its_signal_and_the_run_goes_on,
    misbehaving_tests_lose_their_databases_and_touch_nobody_else,
    a_server_that_dies_mid_run_leaves_the_rest_not_run_with_its_log,
    a_panic_inside_cargo_pgtest_still_stops_and_removes_the_cluster,
    #[cfg(target_os = "linux")] a_nearly_full_tmpfs_is_told_once_with_what_to_do,
    #[cfg(target_os = "linux")] a_child_started_through_the_exec_shim_dies_with_its_parent_even_by_sigkill,
    ;
    alone: #[cfg(target_os = "linux")] a_full_tmpfs_is_one_clear_error_and_leaves_nothing,
}
