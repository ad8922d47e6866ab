//! macOS's stand-in for a tmpfs: a RAM disk made with `hdiutil attach -nomount ram://<sectors>`, given an
//! HFS+ volume with `diskutil erasevolume` (which mounts it under /Volumes), and detached with
//! `hdiutil detach` when dropped. The volume is named after the run and holds a lock file and the device's
//! name, so a later run finds the disk of a run that died (its lock is free) and detaches it.
//!
//! The command lines and the parsing of what the tools print are pure functions, tested on every platform;
//! only macOS runs them.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::fcntl::{Flock, FlockArg};

/// Where macOS mounts volumes, and so where abandoned RAM disks are looked for.
pub(crate) const VOLUMES: &str = "/Volumes";
const VOLUME_PREFIX: &str = "cargo-pgtest-";
/// Files at the volume's root: the lock its run holds, and the device to detach.
const LOCK_FILE: &str = ".cargo-pgtest.lock";
const DEVICE_FILE: &str = ".cargo-pgtest.device";
/// The disk's size. Memory is taken as it is written, so a large limit costs nothing until used; the
/// clusters of test suites are far smaller.
pub(crate) const SIZE_BYTES: u64 = 2 << 30;
const SECTOR_BYTES: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RamDiskError {
    #[error("`{command}` could not be run: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("`{command}` printed no device name (/dev/diskN): {stdout:?}")]
    NoDevice { command: String, stdout: String },
    #[error("`{command}` shows no mount point for the new volume")]
    NoMountPoint { command: String },
    #[error("cannot write {path} on the RAM disk: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// `hdiutil attach -nomount ram://SECTORS`: a RAM-backed device of `bytes`, not yet formatted.
pub(crate) fn attach_args(bytes: u64) -> Vec<String> {
    let sectors = bytes.div_ceil(SECTOR_BYTES);
    vec![
        "attach".into(),
        "-nomount".into(),
        format!("ram://{sectors}"),
    ]
}

/// The device `hdiutil attach` printed, such as `/dev/disk4` from `"/dev/disk4   \t   \t\n"`.
pub(crate) fn parse_attached_device(stdout: &str) -> Option<String> {
    stdout
        .split_whitespace()
        .find(|word| is_disk_device(word))
        .map(str::to_owned)
}

/// A whole disk's device path, `/dev/diskN`: the only thing this module ever detaches.
pub(crate) fn is_disk_device(path: &str) -> bool {
    path.strip_prefix("/dev/disk")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `diskutil erasevolume HFS+ NAME DEVICE`: formats the device and mounts it as /Volumes/NAME.
pub(crate) fn erase_args(name: &str, device: &str) -> Vec<String> {
    ["erasevolume", "HFS+", name, device]
        .map(String::from)
        .to_vec()
}

/// `diskutil info DEVICE`, whose output names the mount point.
pub(crate) fn info_args(device: &str) -> Vec<String> {
    vec!["info".into(), device.into()]
}

/// The mount point in `diskutil info`'s output (`   Mount Point:   /Volumes/NAME`). macOS appends a
/// number to a name already mounted, so the name alone does not say where the volume is.
pub(crate) fn parse_mount_point(info: &str) -> Option<PathBuf> {
    info.lines()
        .find_map(|line| line.trim().strip_prefix("Mount Point:"))
        .map(str::trim)
        .filter(|path| path.starts_with('/'))
        .map(PathBuf::from)
}

/// `hdiutil detach -force DEVICE`: forced, since a dead run's server may have left files open.
pub(crate) fn detach_args(device: &str) -> Vec<String> {
    vec!["detach".into(), "-force".into(), device.into()]
}

/// The volume's name for the run with process id `pid`.
pub(crate) fn volume_name(pid: u32) -> String {
    format!("{VOLUME_PREFIX}{pid}")
}

/// Runs `program args`, returning its standard output when it succeeds.
fn run(program: &str, args: &[String]) -> Result<String, RamDiskError> {
    let command = format!("{program} {}", args.join(" "));
    let output: Output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| RamDiskError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(RamDiskError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Detaches `device`, which must be a whole disk (`/dev/diskN`).
pub(crate) fn detach(device: &str) -> Result<(), RamDiskError> {
    if !is_disk_device(device) {
        return Err(RamDiskError::NoDevice {
            command: "hdiutil detach".into(),
            stdout: device.into(),
        });
    }
    run("hdiutil", &detach_args(device)).map(drop)
}

/// A mounted RAM disk of this run, detached when dropped.
#[derive(Debug)]
pub(crate) struct RamDisk {
    device: String,
    mount_point: PathBuf,
    /// Held while the run lives, on the volume itself; released before the detach.
    lock: Option<Flock<File>>,
}

impl RamDisk {
    /// Attaches, formats and mounts a RAM disk of [`SIZE_BYTES`] for this run.
    pub(crate) fn create() -> Result<RamDisk, RamDiskError> {
        let attached = run("hdiutil", &attach_args(SIZE_BYTES))?;
        let device = parse_attached_device(&attached).ok_or_else(|| RamDiskError::NoDevice {
            command: format!("hdiutil {}", attach_args(SIZE_BYTES).join(" ")),
            stdout: attached.clone(),
        })?;
        let mounted = Self::mount(&device);
        if mounted.is_err() {
            // Not leaving an unformatted device behind: nothing else would ever detach it.
            let _ = detach(&device);
        }
        mounted
    }

    fn mount(device: &str) -> Result<RamDisk, RamDiskError> {
        run(
            "diskutil",
            &erase_args(&volume_name(std::process::id()), device),
        )?;
        let info = run("diskutil", &info_args(device))?;
        let mount_point = parse_mount_point(&info).ok_or_else(|| RamDiskError::NoMountPoint {
            command: format!("diskutil info {device}"),
        })?;
        let write_error = |path: PathBuf| move |source| RamDiskError::Write { path, source };
        let device_file = mount_point.join(DEVICE_FILE);
        fs::write(&device_file, device).map_err(write_error(device_file))?;
        let lock_path = mount_point.join(LOCK_FILE);
        let file = File::create(&lock_path).map_err(write_error(lock_path.clone()))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| write_error(lock_path)(errno.into()))?;
        Ok(RamDisk {
            device: device.to_owned(),
            mount_point,
            lock: Some(lock),
        })
    }

    pub(crate) fn mount_point(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for RamDisk {
    fn drop(&mut self) {
        drop(self.lock.take());
        // A failed detach leaves a disk the next run detaches: its lock is free now.
        let _ = detach(&self.device);
    }
}

/// The RAM disk of a run that died: its lock is free (and held now by this value).
#[derive(Debug)]
pub(crate) struct Abandoned {
    pub(crate) mount_point: PathBuf,
    device: String,
    lock: Flock<File>,
}

impl Abandoned {
    pub(crate) fn detach(self) -> Result<(), RamDiskError> {
        drop(self.lock);
        detach(&self.device)
    }
}

/// This program's volumes in `volumes` whose run is gone: its lock can be taken and it names a disk.
pub(crate) fn abandoned_in(volumes: &Path) -> Vec<Abandoned> {
    let Ok(entries) = fs::read_dir(volumes) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with(VOLUME_PREFIX)
        })
        .filter_map(|entry| {
            let mount_point = entry.path();
            let file = File::open(mount_point.join(LOCK_FILE)).ok()?;
            let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()?;
            let device = fs::read_to_string(mount_point.join(DEVICE_FILE)).ok()?;
            let device = device.trim().to_owned();
            is_disk_device(&device).then_some(Abandoned {
                mount_point,
                device,
                lock,
            })
        })
        .collect()
}

/// A volume as a run leaves it (its lock file not held), in `volumes`, a stand-in for /Volumes.
#[cfg(test)]
pub(crate) fn volume(volumes: &Path, name: &str, device: &str) -> PathBuf {
    let root = volumes.join(name);
    fs::create_dir(&root).unwrap();
    fs::write(root.join(DEVICE_FILE), device).unwrap();
    File::create(root.join(LOCK_FILE)).unwrap();
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_is_attached_unmounted_in_512_byte_sectors() {
        assert_eq!(
            attach_args(2 << 30),
            ["attach", "-nomount", "ram://4194304"]
        );
        assert_eq!(attach_args(1000), ["attach", "-nomount", "ram://2"]);
    }

    #[test]
    fn the_device_is_read_from_what_hdiutil_prints() {
        let printed = "/dev/disk4          \t               \t\n";
        assert_eq!(
            parse_attached_device(printed).as_deref(),
            Some("/dev/disk4")
        );
        assert_eq!(
            parse_attached_device("/dev/disk12\n").as_deref(),
            Some("/dev/disk12")
        );
        assert_eq!(
            parse_attached_device("hdiutil: attach failed - Resource busy\n"),
            None
        );
        assert_eq!(parse_attached_device(""), None);
    }

    #[test]
    fn only_whole_disks_are_devices_to_detach() {
        assert!(is_disk_device("/dev/disk4"));
        assert!(!is_disk_device("/dev/disk4s1"));
        assert!(!is_disk_device("/dev/disk"));
        assert!(!is_disk_device("/dev/rdisk4"));
        assert!(!is_disk_device("/"));
        assert_eq!(
            detach_args("/dev/disk4"),
            ["detach", "-force", "/dev/disk4"]
        );
        assert!(detach("/Volumes/Macintosh HD").is_err());
    }

    #[test]
    fn the_volume_is_formatted_under_the_runs_name() {
        assert_eq!(volume_name(321), "cargo-pgtest-321");
        assert_eq!(
            erase_args("cargo-pgtest-321", "/dev/disk4"),
            ["erasevolume", "HFS+", "cargo-pgtest-321", "/dev/disk4"]
        );
        assert_eq!(info_args("/dev/disk4"), ["info", "/dev/disk4"]);
    }

    #[test]
    fn the_mount_point_is_read_from_diskutil_info() {
        let info = "   Device Identifier:         disk4\n   Device Node:               /dev/disk4\n   \
                    Whole:                     Yes\n   Volume Name:               cargo-pgtest-321\n   \
                    Mounted:                   Yes\n   Mount Point:               /Volumes/cargo-pgtest-321 1\n\n   \
                    File System Personality:   HFS+\n";
        assert_eq!(
            parse_mount_point(info),
            Some(PathBuf::from("/Volumes/cargo-pgtest-321 1"))
        );
        let unmounted = "   Volume Name:               \n   Mounted:                   No\n   Mount Point:               \n";
        assert_eq!(parse_mount_point(unmounted), None);
        assert_eq!(parse_mount_point(""), None);
    }

    #[test]
    fn only_volumes_of_dead_runs_are_abandoned() {
        let volumes = tempfile::tempdir().unwrap();
        let dead = volume(volumes.path(), "cargo-pgtest-1", "/dev/disk7\n");
        let live = volume(volumes.path(), "cargo-pgtest-2", "/dev/disk8");
        let _held = Flock::lock(
            File::open(live.join(LOCK_FILE)).unwrap(),
            FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        volume(volumes.path(), "cargo-pgtest-3", "/dev/disk9s1");
        volume(volumes.path(), "Macintosh HD", "/dev/disk1");
        let found = abandoned_in(volumes.path());
        let found: Vec<_> = found
            .iter()
            .map(|a| (a.mount_point.clone(), a.device.clone()))
            .collect();
        assert_eq!(found, [(dead, "/dev/disk7".to_owned())]);
        assert!(abandoned_in(&volumes.path().join("missing")).is_empty());
    }
}
