//! Where a run's cluster lives: a private directory in RAM (a tmpfs on Linux, a RAM disk of its own on
//! macOS) or on disk (with `--no-tmpfs`, or with one warning when RAM cannot be had), locked while the run is
//! alive so that a later run can recognise and remove what a killed run left behind.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};

use crate::platform::process;
use crate::platform::ram_disk::{Abandoned, RamDisk};

/// Prefix of every run directory, so stale ones can be found.
const RUN_DIR_PREFIX: &str = "cargo-pgtest-";
const LOCK_FILE: &str = "run.lock";
/// A run directory without a lock file younger than this may be a run that is being set up right now.
const UNLOCKED_GRACE: Duration = Duration::from_secs(60);

/// Whether the data lives in RAM, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StorageKind {
    Tmpfs,
    /// A RAM disk made for the run (macOS).
    RamDisk,
    Disk,
}

impl StorageKind {
    pub(crate) fn in_ram(&self) -> bool {
        !matches!(self, StorageKind::Disk)
    }
}

/// The parent directory chosen for the run directory, and what it is.
#[derive(Debug, Clone)]
pub struct Placement {
    pub(crate) parent: PathBuf,
    pub(crate) kind: StorageKind,
    /// Set when a tmpfs was wanted but could not be had: one line for the user.
    pub(crate) warning: Option<String>,
    /// The RAM disk `parent` is on, detached once the last holder (this, and the run directory) is gone.
    pub(crate) ram_disk: Option<Arc<RamDisk>>,
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

/// Chooses where the run directory goes. `PGTEST_TMPDIR` wins; otherwise RAM when wanted (see [`in_ram`]),
/// else the temporary directory on disk.
pub fn choose(
    want_tmpfs: bool,
    override_dir: Option<PathBuf>,
    server_is_other_account: bool,
) -> Placement {
    // PGTEST_TMPDIR stands in for the RAM places: with RAM turned off (`--no-tmpfs`, `tmpfs = false`) one on
    // a tmpfs is not used, since the data would silently stay in RAM.
    if let Some(ram_dir) = override_dir
        .as_ref()
        .filter(|dir| !want_tmpfs && is_tmpfs(dir))
    {
        let ram_dir = ram_dir.display().to_string();
        return on_disk(Some(move |disk: &Path| {
            format!(
                "{ram_dir} (PGTEST_TMPDIR) is a tmpfs and RAM is turned off: the cluster's data is on disk in {}",
                disk.display()
            )
        }));
    }
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
            ram_disk: None,
        };
    }
    if want_tmpfs {
        return in_ram(server_is_other_account);
    }
    on_disk(None::<fn(&Path) -> String>)
}

/// A place in RAM: on macOS a RAM disk of the run's own (after detaching those of dead runs), elsewhere a
/// tmpfs (`$XDG_RUNTIME_DIR`, then /dev/shm); on disk with a warning when neither can be had.
fn in_ram(server_is_other_account: bool) -> Placement {
    if cfg!(target_os = "macos") {
        detach_abandoned_ram_disks(Path::new(crate::platform::ram_disk::VOLUMES), |disk| {
            // One that cannot be detached now is tried again by the next run.
            let _ = disk.detach();
        });
        return match RamDisk::create() {
            Ok(disk) => Placement {
                parent: disk.mount_point().to_owned(),
                kind: StorageKind::RamDisk,
                warning: None,
                ram_disk: Some(Arc::new(disk)),
            },
            Err(error) => on_disk(Some(|dir: &Path| {
                format!(
                    "could not make a RAM disk for the cluster ({error}): its data is on disk in {}; pass \
                     --no-tmpfs to skip the attempt",
                    dir.display()
                )
            })),
        };
    }
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
    match candidates
        .into_iter()
        .find(|dir| is_tmpfs(dir) && is_writable(dir))
    {
        Some(parent) => Placement {
            parent,
            kind: StorageKind::Tmpfs,
            warning: None,
            ram_disk: None,
        },
        None => on_disk(Some(|dir: &Path| {
            format!(
                "no writable tmpfs found (tried $XDG_RUNTIME_DIR and /dev/shm): the cluster's data is on disk \
                 in {}; set PGTEST_TMPDIR to a tmpfs directory to keep it in RAM",
                dir.display()
            )
        })),
    }
}

/// The disk directory, with the warning (if any) `warning` writes about it.
fn on_disk(warning: Option<impl FnOnce(&Path) -> String>) -> Placement {
    let parent = disk_dir();
    Placement {
        warning: warning.map(|warning| warning(&parent)),
        parent,
        kind: StorageKind::Disk,
        ram_disk: None,
    }
}

/// Hands the RAM disks in `volumes` of runs that died to `detach`, after stopping any server of theirs
/// still there and removing their files.
fn detach_abandoned_ram_disks(volumes: &Path, detach: impl Fn(Abandoned)) {
    for abandoned in crate::platform::ram_disk::abandoned_in(volumes) {
        remove_stale_runs(&abandoned.mount_point);
        detach(abandoned);
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

/// Whether `path` is on a tmpfs. macOS has none (its RAM disks are HFS+ volumes made for the run).
pub(crate) fn is_tmpfs(path: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::statfs::{statfs, TMPFS_MAGIC};
        statfs(path).is_ok_and(|fs| fs.filesystem_type() == TMPFS_MAGIC)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        false
    }
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
pub(crate) struct RunDir {
    dir: Option<tempfile::TempDir>,
    _lock: Flock<File>,
    /// Kept until the directory is gone (fields drop in order), so the disk under it stays attached.
    _ram_disk: Option<Arc<RamDisk>>,
}

impl RunDir {
    pub(crate) fn create(placement: &Placement) -> Result<RunDir, StorageError> {
        let hint = if placement.kind.in_ram() {
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
            _ram_disk: placement.ram_disk.clone(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until dropped").path()
    }

    /// Removes the directory now, reporting a failure instead of ignoring it.
    pub(crate) fn remove(mut self) -> std::io::Result<()> {
        match self.dir.take() {
            Some(dir) => dir.close(),
            None => Ok(()),
        }
    }
}

/// Removes the run directories of runs that died without cleaning up (their lock is free), stopping any
/// server of theirs that is somehow still alive. Returns the directories removed.
pub(crate) fn remove_stale_runs(parent: &Path) -> Vec<PathBuf> {
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
    let command_line = u32::try_from(pid)
        .ok()
        .and_then(process::command_line)
        .unwrap_or_default();
    if command_line.contains(data_dir.to_string_lossy().as_ref()) {
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
    #[cfg(target_os = "linux")]
    fn with_ram_turned_off_a_pgtest_tmpdir_on_tmpfs_is_not_used() {
        let shm = Path::new("/dev/shm");
        if !is_tmpfs(shm) {
            return;
        }
        let off = choose(false, Some(shm.to_owned()), false);
        assert_eq!(off.kind, StorageKind::Disk);
        assert_ne!(off.parent, shm);
        assert!(off.warning.is_some_and(|w| w.contains("RAM is turned off")));
        let on = choose(true, Some(shm.to_owned()), false);
        assert_eq!(
            (on.kind, on.parent, on.warning),
            (StorageKind::Tmpfs, shm.to_owned(), None)
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
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
            ram_disk: None,
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
    fn the_runs_on_a_dead_runs_ram_disk_are_removed_before_it_is_detached() {
        let volumes = tempfile::tempdir().unwrap();
        let name = crate::platform::ram_disk::volume_name(1);
        let disk = crate::platform::ram_disk::volume(volumes.path(), &name, "/dev/disk9");
        let dead_run = disk.join(format!("{RUN_DIR_PREFIX}dead"));
        fs::create_dir_all(dead_run.join("data")).unwrap();
        File::create(dead_run.join(LOCK_FILE)).unwrap();
        // Recorded, not run: on a Mac a real `hdiutil detach` could hit a real disk of that number.
        let detached = std::cell::RefCell::new(Vec::new());
        detach_abandoned_ram_disks(volumes.path(), |abandoned| {
            detached
                .borrow_mut()
                .push((abandoned.mount_point.clone(), dead_run.exists()));
        });
        assert_eq!(detached.into_inner(), [(disk, false)]);
    }

    #[test]
    fn an_unwritable_parent_is_a_clear_error() {
        let placement = Placement {
            parent: PathBuf::from("/proc/no-such-dir"),
            kind: StorageKind::Tmpfs,
            warning: None,
            ram_disk: None,
        };
        let message = RunDir::create(&placement).unwrap_err().to_string();
        assert!(
            message.contains("/proc/no-such-dir") && message.contains("PGTEST_TMPDIR"),
            "{message}"
        );
    }
}
