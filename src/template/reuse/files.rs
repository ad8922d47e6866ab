//! The file side of the reuse check: a new database's files are all given one fixed old modification time,
//! and their names, sizes and times are listed; any write to a file afterwards sets its time to now.

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
}
