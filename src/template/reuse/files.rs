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
    SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800)
}

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

/// Sets every file of `dir` to [`preset_time`]. Root may do so on the server account's files (CAP_FOWNER);
/// otherwise the server runs as us and they are ours.
pub(crate) fn preset(dir: &Path) -> Result<(), FilesError> {
    for entry in fs::read_dir(dir).map_err(context("read the directory", dir))? {
        let path = entry.map_err(context("read the directory", dir))?.path();
        let file = fs::File::open(&path).map_err(context("open", &path))?;
        file.set_modified(preset_time())
            .map_err(context("set the modification time of", &path))?;
    }
    Ok(())
}

/// The files of `dir` by name, without the relation-cache init files.
pub(crate) fn list(dir: &Path) -> Result<Vec<Entry>, FilesError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(context("read the directory", dir))? {
        let entry = entry.map_err(context("read the directory", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if ignored(&name) {
            continue;
        }
        let path = entry.path();
        let metadata = fs::symlink_metadata(&path).map_err(context("read", &path))?;
        let modified = metadata
            .modified()
            .map_err(context("read the time of", &path))?;
        entries.push(Entry {
            name,
            size: metadata.len(),
            modified,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
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
    let mut entries = Vec::new();
    for (prefix, dir) in dirs {
        entries.extend(list(dir)?.into_iter().map(|entry| Entry {
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

    #[test]
    fn a_write_a_new_file_or_a_new_size_is_a_difference() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["1259", "1259_fsm", "pg_internal.init"] {
            fs::write(dir.path().join(name), b"page").unwrap();
        }
        preset(dir.path()).unwrap();
        let before = list(dir.path()).unwrap();
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
