//! The file side of the reuse check: a new database's files are all given one fixed old modification time,
//! and their names, sizes and times are listed; any write to a file afterwards sets its time to now. A
//! database's files are in `base/<oid>`, and those of its relations in other tablespaces in
//! `pg_tblspc/<tablespace>/<version>/<oid>`: all are listed ([`database_dirs`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The time every file of a fresh clone is set to: 2000-01-01 UTC, older than any write a test can make.
pub(crate) fn preset_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + PRESET_SINCE_EPOCH
}

const PRESET_SINCE_EPOCH: Duration = Duration::from_secs(946_684_800);

/// One file of a database directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) modified: SystemTime,
}

#[derive(Debug, thiserror::Error)]
#[error("could not {action} {}: {source}", path.display())]
pub(crate) struct FilesError {
    action: &'static str,
    path: PathBuf,
    source: io::Error,
}

fn context<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FilesError + 'a {
    move |source| FilesError {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The relation-cache init file (and its temporary twin) is written by a session's start and holds no data.
fn ignored(name: &str) -> bool {
    name.starts_with("pg_internal.init")
}

/// Whether a walk sets each file's time before it lists it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Preset {
    Yes,
    No,
}

/// Lists `dir`'s files by name, without the relation-cache init files; with `Preset::Yes`, each file is set
/// to [`preset_time`] first. Each file is reached by name from the directory's own descriptor, never by its
/// whole path: one or two system calls a file, none a lookup from the root, which matters as a run records
/// and checks many clones of some 350 files each. Root may set times on the server account's files
/// (CAP_FOWNER); otherwise the server runs as us and they are ours.
fn walk(dir: &Path, preset: Preset) -> Result<Vec<Entry>, FilesError> {
    use nix::sys::stat::{fstatat, utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    use std::os::fd::AsRawFd;

    let handle = fs::File::open(dir).map_err(context("open", dir))?;
    let at = Some(handle.as_raw_fd());
    let preset_spec = TimeSpec::from_duration(PRESET_SINCE_EPOCH);
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(context("read the directory", dir))? {
        let entry = entry.map_err(context("read the directory", dir))?;
        let name = entry.file_name();
        let failed = |action| {
            let path = dir.join(&name);
            move |errno: nix::errno::Errno| context(action, &path)(io::Error::from(errno))
        };
        if preset == Preset::Yes {
            let omit = TimeSpec::UTIME_OMIT;
            let flags = UtimensatFlags::NoFollowSymlink;
            utimensat(at, name.as_os_str(), &omit, &preset_spec, flags)
                .map_err(failed("set the modification time of"))?;
        }
        let name_text = name.to_string_lossy();
        if ignored(&name_text) {
            continue;
        }
        let stat = fstatat(
            at,
            name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(failed("read"))?;
        entries.push(Entry {
            name: name_text.into_owned(),
            size: u64::try_from(stat.st_size).unwrap_or_default(),
            modified: system_time(stat.st_mtime, stat.st_mtime_nsec),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// A `stat` time as a SystemTime (one before 1970 included, though only [`preset_time`] is ever compared).
fn system_time(seconds: i64, nanos: i64) -> SystemTime {
    let nanos = Duration::from_nanos(u64::try_from(nanos).unwrap_or_default());
    match u64::try_from(seconds) {
        Ok(seconds) => SystemTime::UNIX_EPOCH + Duration::from_secs(seconds) + nanos,
        Err(_) => SystemTime::UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()) + nanos,
    }
}

/// The directories that hold database `oid`'s files under `data_dir`, each with the prefix its files'
/// names get in a listing: `base/<oid>` (unprefixed; absent if the database's default tablespace is
/// another), then `pg_tblspc/<tablespace>/<version_dir>/<oid>` for each tablespace that has one.
pub(crate) fn database_dirs(
    data_dir: &Path,
    version_dir: &str,
    oid: i64,
) -> Result<Vec<(String, PathBuf)>, FilesError> {
    let mut dirs = Vec::new();
    let base = data_dir.join("base").join(oid.to_string());
    if present(&base)? {
        dirs.push((String::new(), base));
    }
    let tablespaces = data_dir.join("pg_tblspc");
    let mut spaces = Vec::new();
    for entry in fs::read_dir(&tablespaces).map_err(context("read the directory", &tablespaces))? {
        let entry = entry.map_err(context("read the directory", &tablespaces))?;
        spaces.push(entry.file_name().to_string_lossy().into_owned());
    }
    spaces.sort();
    for space in spaces {
        let dir = tablespaces
            .join(&space)
            .join(version_dir)
            .join(oid.to_string());
        if present(&dir)? {
            dirs.push((format!("pg_tblspc/{space}/"), dir));
        }
    }
    Ok(dirs)
}

/// Whether `dir` exists (through a tablespace's link); any other failure to look is an error, never
/// "absent", or files could go unlisted.
fn present(dir: &Path) -> Result<bool, FilesError> {
    match fs::metadata(dir) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(context("look at", dir)(error)),
    }
}

/// The files of every directory of `dirs` ([`database_dirs`]), each name with its directory's prefix.
pub(crate) fn list_all(dirs: &[(String, PathBuf)]) -> Result<Vec<Entry>, FilesError> {
    walk_all(dirs, Preset::No)
}

/// As [`list_all`], each file first set to [`preset_time`].
pub(crate) fn preset_and_list_all(dirs: &[(String, PathBuf)]) -> Result<Vec<Entry>, FilesError> {
    walk_all(dirs, Preset::Yes)
}

fn walk_all(dirs: &[(String, PathBuf)], preset: Preset) -> Result<Vec<Entry>, FilesError> {
    let mut entries = Vec::new();
    for (prefix, dir) in dirs {
        entries.extend(walk(dir, preset)?.into_iter().map(|entry| Entry {
            name: format!("{prefix}{}", entry.name),
            ..entry
        }));
    }
    Ok(entries)
}

/// Why `now` differs from `before` (None: same names and sizes, every time still [`preset_time`]).
pub(crate) fn difference(before: &[Entry], now: &[Entry]) -> Option<String> {
    if let Some(entry) = now.iter().find(|entry| entry.modified != preset_time()) {
        return Some(format!("file {} was written", entry.name));
    }
    if before.len() != now.len() {
        return Some(format!("{} files became {}", before.len(), now.len()));
    }
    before.iter().zip(now).find(|(a, b)| a != b).map(|(a, b)| {
        format!(
            "file {} became {} ({} bytes, was {})",
            a.name, b.name, b.size, a.size
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(dir: &Path) -> [(String, PathBuf); 1] {
        [(String::new(), dir.to_owned())]
    }

    fn preset(dir: &Path) -> Result<Vec<Entry>, FilesError> {
        preset_and_list_all(&one(dir))
    }

    fn list(dir: &Path) -> Result<Vec<Entry>, FilesError> {
        list_all(&one(dir))
    }

    #[test]
    fn a_preset_gives_every_file_the_old_time_and_lists_it_with_its_size() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("2619"), vec![0u8; 8192]).unwrap();
        fs::write(dir.path().join("pg_internal.init"), b"cache").unwrap();
        let listed = preset(dir.path()).unwrap();
        let expected = Entry {
            name: "2619".into(),
            size: 8192,
            modified: preset_time(),
        };
        assert_eq!(listed, std::slice::from_ref(&expected));
        assert_eq!(list(dir.path()).unwrap(), [expected]);
        let init = fs::metadata(dir.path().join("pg_internal.init")).unwrap();
        assert_eq!(
            init.modified().unwrap(),
            preset_time(),
            "set, though not listed"
        );
        assert_ne!(
            init.accessed().unwrap(),
            preset_time(),
            "the access time is left"
        );
    }

    #[test]
    fn a_write_a_new_file_or_a_new_size_is_a_difference() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["1259", "1259_fsm", "pg_internal.init"] {
            fs::write(dir.path().join(name), b"page").unwrap();
        }
        let before = preset(dir.path()).unwrap();
        assert_eq!(
            before.len(),
            2,
            "pg_internal.init is not listed: {before:?}"
        );
        assert_eq!(difference(&before, &list(dir.path()).unwrap()), None);
        fs::write(dir.path().join("pg_internal.init.42"), b"x").unwrap();
        assert_eq!(difference(&before, &list(dir.path()).unwrap()), None);

        fs::write(dir.path().join("1259"), b"page").unwrap();
        let written = difference(&before, &list(dir.path()).unwrap());
        assert_eq!(written.as_deref(), Some("file 1259 was written"));
        preset(dir.path()).unwrap();
        fs::write(dir.path().join("16384"), b"").unwrap();
        preset(dir.path()).unwrap();
        assert!(difference(&before, &list(dir.path()).unwrap()).is_some());
        fs::remove_file(dir.path().join("16384")).unwrap();
        fs::File::options()
            .write(true)
            .open(dir.path().join("1259_fsm"))
            .unwrap()
            .set_len(8192)
            .unwrap();
        preset(dir.path()).unwrap();
        assert!(difference(&before, &list(dir.path()).unwrap()).is_some());
    }

    #[test]
    fn a_database_s_files_are_listed_in_every_tablespace_of_this_version() {
        let data = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let version = "PG_15_202209061";
        for dir in ["base/5", "base/6", "pg_tblspc"] {
            fs::create_dir_all(data.path().join(dir)).unwrap();
        }
        fs::write(data.path().join("base/5/1259"), b"page").unwrap();
        // A tablespace elsewhere (linked) with another server version's directory too, and one in place
        // that holds another database only.
        for dir in [format!("{version}/5"), "PG_14_202107181/5".to_owned()] {
            fs::create_dir_all(elsewhere.path().join(dir)).unwrap();
        }
        fs::write(elsewhere.path().join(version).join("5/16390"), b"page").unwrap();
        fs::write(elsewhere.path().join("PG_14_202107181/5/16390"), b"old").unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), data.path().join("pg_tblspc/16389")).unwrap();
        fs::create_dir_all(data.path().join("pg_tblspc/16400").join(version).join("6")).unwrap();

        let dirs = database_dirs(data.path(), version, 5).unwrap();
        let prefixes: Vec<&str> = dirs.iter().map(|(prefix, _)| prefix.as_str()).collect();
        assert_eq!(prefixes, ["", "pg_tblspc/16389/"]);
        let names: Vec<String> = list_all(&dirs)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["1259", "pg_tblspc/16389/16390"]);
        let dirs = database_dirs(data.path(), version, 7).unwrap();
        assert!(dirs.is_empty(), "no directory of database 7: {dirs:?}");
    }
}
