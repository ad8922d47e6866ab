//! Who can reach a run's cluster: nobody but the user who started it. Checked on a live run of
//! `fixtures/fault-probe` (its blocking test holds the run open): no TCP listener, private (0700)
//! directories, another local user (`nobody`) refused even with the test's own URL and password, and
//! nothing left owned by the server account afterwards. Only root can act as another user: run by an
//! ordinary user the test is skipped with a note (and fails in CI). Linux only: the open sockets are read
//! from /proc.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, Project};

/// The one run directory under the project's cluster parent.
fn run_dir(project: &Project) -> PathBuf {
    let mut dirs: Vec<PathBuf> = fs::read_dir(project.cluster_parent.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: &str) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
                .filter_map(|target| {
                    let target = target.to_string_lossy().into_owned();
                    Some(
                        target
                            .strip_prefix("socket:[")?
                            .strip_suffix(']')?
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// TCP sockets in the LISTEN state (0A) among `inodes`.
fn tcp_listeners(inodes: &[String]) -> Vec<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(3) == Some(&"0A")
                && fields
                    .get(9)
                    .is_some_and(|inode| inodes.iter().any(|i| i == inode))
        })
        .collect()
}

fn only_the_invoking_user_can_reach_the_cluster() {
    if !support::postgres_available()
        || !support::root_for("trying the cluster as another user (`nobody`)")
    {
        return;
    }
    // A target directory of its own: what the run made there is all there is to look at below.
    let Some(project) = Project::with_own_target("fault-probe") else {
        return;
    };
    let run = project.start_blocked(&["blocks_until_released"]);
    let checks = std::panic::catch_unwind(|| {
        let dir = run_dir(&project);
        directories_are_private_and_nothing_listens_on_tcp(&dir);
        only_the_invoking_user_gets_in(&project, &dir);
    });
    project.release_probe();
    let finished = support::Run::from(run.wait_with_output().unwrap());
    if let Err(panic) = checks {
        std::panic::resume_unwind(panic);
    }
    finished.expect(0, &["1 passed, 0 failed"]);
    project.assert_nothing_left();

    // Nothing the run made outside the cluster directory (its cache, its history) belongs to the server
    // account. The run stored its migrated cluster: a check of nothing would prove nothing.
    let me = nix::unistd::Uid::effective().as_raw();
    let made = project.dir.join("target/pgtest");
    let entries = walk(&made);
    assert!(
        !support::entries(&made.join("cache")).is_empty(),
        "the run left no cache entry in {} to check: {entries:?}",
        made.display()
    );
    for entry in entries {
        assert_eq!(
            fs::metadata(&entry).unwrap().uid(),
            me,
            "{} is not ours",
            entry.display()
        );
    }
}

/// The run directory and its socket and data directories are 0700, and the server has no TCP listener.
fn directories_are_private_and_nothing_listens_on_tcp(dir: &Path) {
    for private in [dir.to_path_buf(), dir.join("socket"), dir.join("data")] {
        assert_eq!(
            mode(&private),
            0o700,
            "{} must be private to the run",
            private.display()
        );
    }

    let postmaster = fs::read_to_string(dir.join("data/postmaster.pid")).unwrap();
    let pid = postmaster.lines().next().unwrap().to_owned();
    let listeners = tcp_listeners(&socket_inodes(&pid));
    assert!(
        listeners.is_empty(),
        "the server listens on TCP: {listeners:?}"
    );
    assert!(
        postmaster
            .lines()
            .nth(5)
            .is_some_and(|host| host.trim().is_empty()),
        "listen address in postmaster.pid: {postmaster}"
    );
}

/// Another user (`nobody`) is refused, with the test's own URL and over the socket; the test's user is not.
fn only_the_invoking_user_gets_in(project: &Project, dir: &Path) {
    let url = fs::read_to_string(project.probe_dir.join("database_url")).unwrap();
    let other = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a `nobody` account");
    let as_nobody = |mut command: Command| {
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .current_dir("/")
            .uid(other.uid.as_raw())
            .gid(other.gid.as_raw());
        command.output().unwrap()
    };
    let mut with_url = Command::new("psql");
    with_url.args([url.as_str(), "-XAtc", "SELECT 1"]);
    let refused = as_nobody(with_url);
    assert!(
        !refused.status.success(),
        "another user connected with the test's own URL"
    );
    let mut by_socket = Command::new("psql");
    by_socket
        .args(["-h"])
        .arg(dir.join("socket"))
        .args(["-U", "postgres", "-d", "postgres", "-XAtc", "SELECT 1"]);
    assert!(
        !as_nobody(by_socket).status.success(),
        "another user connected over the socket"
    );

    // The test's own user gets in, with the same URL: the refusals above are about the user.
    let mine = Command::new("psql")
        .args([url.as_str(), "-XAtc", "SELECT 1"])
        .output()
        .unwrap();
    assert!(
        mine.status.success(),
        "{}",
        String::from_utf8_lossy(&mine.stderr)
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .flat_map(|entry| {
            let path = entry.path();
            let mut below = if path.is_dir() {
                walk(&path)
            } else {
                Vec::new()
            };
            below.push(path);
            below
        })
        .collect()
}

crate::tests! {
    only_the_invoking_user_can_reach_the_cluster,
}
