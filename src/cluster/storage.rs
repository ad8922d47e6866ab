//! Where a run's cluster lives: a private directory on a tmpfs (or on disk with `--no-tmpfs`), locked while
//! the run is alive so that a later run can recognise and remove what a killed run left behind.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::statfs::{statfs, TMPFS_MAGIC};

/// Prefix of every run directory, so stale ones can be found.
const RUN_DIR_PREFIX: &str = "cargo-pgtest-";
const LOCK_FILE: &str = "run.lock";
/// A run directory without a lock file younger than this may be a run that is being set up right now.
const UNLOCKED_GRACE: Duration = Duration::from_secs(60);

/// Whether the data lives in RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageKind {
    Tmpfs,
    Disk,
}

/// The parent directory chosen for the run directory, and what it is.
#[derive(Debug, Clone)]
pub struct Placement {
    pub parent: PathBuf,
    pub kind: StorageKind,
    /// Set when a tmpfs was wanted but could not be had: one line for the user.
    pub warning: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "cannot create the cluster's directory in {parent}: {source}; make it writable, set PGTEST_TMPDIR to a \
         writable directory{hint}"
    )]
    CreateRunDir {
        parent: PathBuf,
        hint: &'static str,
        source: std::io::Error,
    },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Chooses where the run directory goes. `PGTEST_TMPDIR` wins; otherwise a tmpfs (`$XDG_RUNTIME_DIR`, then
/// /dev/shm) when wanted, else the temporary directory on disk.
pub fn choose(
    want_tmpfs: bool,
    override_dir: Option<PathBuf>,
    server_is_other_account: bool,
) -> Placement {
    if let Some(parent) = override_dir {
        let on_tmpfs = is_tmpfs(&parent);
        let warning = (want_tmpfs && !on_tmpfs).then(|| {
            format!(
                "{} (PGTEST_TMPDIR) is not a tmpfs: the cluster's data is on disk",
                parent.display()
            )
        });
        let kind = if on_tmpfs {
            StorageKind::Tmpfs
        } else {
            StorageKind::Disk
        };
        return Placement {
            parent,
            kind,
            warning,
        };
    }
    if want_tmpfs {
        let mut candidates = Vec::new();
        // $XDG_RUNTIME_DIR is private to its owner, so another server account could not enter it.
        if !server_is_other_account {
            candidates.extend(
                std::env::var_os("XDG_RUNTIME_DIR")
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from),
            );
        }
        candidates.push(PathBuf::from("/dev/shm"));
        if let Some(parent) = candidates
            .into_iter()
            .find(|dir| is_tmpfs(dir) && is_writable(dir))
        {
            return Placement {
                parent,
                kind: StorageKind::Tmpfs,
                warning: None,
            };
        }
        let parent = disk_dir();
        let warning = Some(format!(
            "no writable tmpfs found (tried $XDG_RUNTIME_DIR and /dev/shm): the cluster's data is on disk in {}; \
             set PGTEST_TMPDIR to a tmpfs directory to keep it in RAM",
            parent.display()
        ));
        return Placement {
            parent,
            kind: StorageKind::Disk,
            warning,
        };
    }
    Placement {
        parent: disk_dir(),
        kind: StorageKind::Disk,
        warning: None,
    }
}

/// The system temporary directory, unless that is itself in RAM (then /var/tmp, which is on disk by convention).
fn disk_dir() -> PathBuf {
    let temp = std::env::temp_dir();
    if is_tmpfs(&temp) && Path::new("/var/tmp").is_dir() {
        PathBuf::from("/var/tmp")
    } else {
        temp
    }
}

pub fn is_tmpfs(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == TMPFS_MAGIC)
}

fn is_writable(path: &Path) -> bool {
    nix::unistd::access(
        path,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .is_ok()
}

/// A run's private directory (mode 0700), removed with everything in it when dropped, and locked while alive.
#[derive(Debug)]
pub struct RunDir {
    dir: Option<tempfile::TempDir>,
    _lock: Flock<File>,
}

impl RunDir {
    pub fn create(placement: &Placement) -> Result<RunDir, StorageError> {
        let hint = if placement.kind == StorageKind::Tmpfs {
            ", or use --no-tmpfs"
        } else {
            ""
        };
        let create_error = |source| StorageError::CreateRunDir {
            parent: placement.parent.clone(),
            hint,
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix(RUN_DIR_PREFIX)
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(&placement.parent)
            .map_err(create_error)?;
        let lock_path = dir.path().join(LOCK_FILE);
        let file = File::create(&lock_path).map_err(create_error)?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            StorageError::Lock {
                path: lock_path,
                source: errno.into(),
            }
        })?;
        Ok(RunDir {
            dir: Some(dir),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until dropped").path()
    }

    /// Removes the directory now, reporting a failure instead of ignoring it.
    pub fn remove(mut self) -> std::io::Result<()> {
        match self.dir.take() {
            Some(dir) => dir.close(),
            None => Ok(()),
        }
    }
}

/// Removes the run directories of runs that died without cleaning up (their lock is free), stopping any
/// server of theirs that is somehow still alive. Returns the directories removed.
pub fn remove_stale_runs(parent: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let is_run_dir = entry
            .file_name()
            .to_string_lossy()
            .starts_with(RUN_DIR_PREFIX)
            && path.is_dir();
        if is_run_dir && owner_is_gone(&path) {
            stop_leftover_server(&path.join(super::server::DATA_DIR));
            if fs::remove_dir_all(&path).is_ok() {
                removed.push(path);
            }
        }
    }
    removed
}

fn owner_is_gone(run_dir: &Path) -> bool {
    match File::open(run_dir.join(LOCK_FILE)) {
        Ok(file) => Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok(),
        Err(_) => fs::metadata(run_dir)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| {
                SystemTime::now()
                    .duration_since(modified)
                    .unwrap_or_default()
                    > UNLOCKED_GRACE
            }),
    }
}

/// Sends an immediate-shutdown signal to a postmaster still running on a dead run's data directory.
fn stop_leftover_server(data_dir: &Path) {
    let Ok(pid_file) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = pid_file
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<i32>().ok())
    else {
        return;
    };
    // Only a process whose command line names this data directory is ours to stop.
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let data = data_dir.to_string_lossy();
    if String::from_utf8_lossy(&cmdline).contains(data.as_ref()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGQUIT,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_shm_is_recognised_as_tmpfs_and_the_repo_is_not() {
        if Path::new("/dev/shm").is_dir() {
            assert!(is_tmpfs(Path::new("/dev/shm")));
        }
        assert!(!is_tmpfs(Path::new(env!("CARGO_MANIFEST_DIR"))) || is_tmpfs(Path::new("/")));
    }

    #[test]
    fn an_override_that_is_not_a_tmpfs_gives_one_warning() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let placement = choose(true, Some(dir.path().to_owned()), false);
        assert_eq!(placement.parent, dir.path());
        if !is_tmpfs(dir.path()) {
            assert_eq!(placement.kind, StorageKind::Disk);
            assert!(placement.warning.unwrap().contains("not a tmpfs"));
        }
        assert!(choose(false, Some(dir.path().to_owned()), false)
            .warning
            .is_none());
    }

    #[test]
    fn run_dirs_are_private_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let placement = Placement {
            parent: parent.path().to_owned(),
            kind: StorageKind::Disk,
            warning: None,
        };
        let run = RunDir::create(&placement).unwrap();
        let path = run.path().to_owned();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // A live run is not stale.
        assert!(remove_stale_runs(parent.path()).is_empty());
        drop(run);
        assert!(!path.exists());
    }

    #[test]
    fn a_dead_runs_directory_is_removed_by_the_next_run() {
        let parent = tempfile::tempdir().unwrap();
        let dead = parent.path().join(format!("{RUN_DIR_PREFIX}dead"));
        fs::create_dir_all(dead.join("data")).unwrap();
        File::create(dead.join(LOCK_FILE)).unwrap();
        let unrelated = parent.path().join("something-else");
        fs::create_dir(&unrelated).unwrap();
        assert_eq!(
            remove_stale_runs(parent.path()),
            std::slice::from_ref(&dead)
        );
        assert!(!dead.exists());
        assert!(unrelated.exists());
    }

    #[test]
    fn an_unwritable_parent_is_a_clear_error() {
        let placement = Placement {
            parent: PathBuf::from("/proc/no-such-dir"),
            kind: StorageKind::Tmpfs,
            warning: None,
        };
        let message = RunDir::create(&placement).unwrap_err().to_string();
        assert!(
            message.contains("/proc/no-such-dir") && message.contains("PGTEST_TMPDIR"),
            "{message}"
        );
    }
}
