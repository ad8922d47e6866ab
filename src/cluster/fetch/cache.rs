//! Where fetched builds are kept, per user: `$XDG_CACHE_HOME/cargo-pgtest/postgres`, else the platform's
//! cache directory under `$HOME`; for root, whose home the server account cannot enter, the system's
//! `/var/cache/cargo-pgtest/postgres` unless `XDG_CACHE_HOME` says otherwise.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::FetchError;

/// The prefix of a fetch's temporary directory inside the cache.
pub(super) const WORK_PREFIX: &str = ".fetch-";
/// A temporary directory older than this belongs to a fetch that died (a download takes minutes).
const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The cache directory for fetched builds, from `XDG_CACHE_HOME`, `HOME` and whether we are root. A
/// relative `XDG_CACHE_HOME` is ignored, as the XDG specification asks.
pub(super) fn root(
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
    is_root: bool,
) -> Result<PathBuf, FetchError> {
    let base = match xdg_cache_home.map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ if is_root => PathBuf::from("/var/cache"),
        _ => {
            let home = PathBuf::from(home.ok_or(FetchError::NoCacheDir)?);
            if cfg!(target_os = "macos") {
                home.join("Library/Caches")
            } else {
                home.join(".cache")
            }
        }
    };
    Ok(base.join("cargo-pgtest").join("postgres"))
}

/// Creates the cache directory and removes what fetches that died left there. For another server
/// account, the two directories cargo-pgtest owns (`cargo-pgtest/` and `postgres/`) are opened to all,
/// and every directory above must be searchable.
pub(super) fn prepare(cache: &Path, for_other_account: bool) -> Result<(), FetchError> {
    fs::create_dir_all(cache).map_err(|source| FetchError::Cache {
        action: "create",
        path: cache.to_owned(),
        source,
    })?;
    remove_abandoned(cache, SystemTime::now());
    if !for_other_account {
        return Ok(());
    }
    for own in [Some(cache), cache.parent()].into_iter().flatten() {
        fs::set_permissions(own, fs::Permissions::from_mode(0o755)).map_err(|source| {
            FetchError::Cache {
                action: "open to the server account",
                path: own.to_owned(),
                source,
            }
        })?;
    }
    check_reachable(cache, true)
}

/// Removes temporary directories of fetches that died long ago; a live fetch's is young and is kept.
/// Best effort: what cannot be removed now is tried again by the next fetch.
fn remove_abandoned(cache: &Path, now: SystemTime) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let abandoned = entry.file_name().to_string_lossy().starts_with(WORK_PREFIX)
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| {
                    now.duration_since(modified).unwrap_or_default() > ABANDONED_AFTER
                });
        if abandoned {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Refuses a build the server account could not reach: every directory above it must be searchable by
/// others when the server runs as another account.
pub(super) fn check_reachable(dir: &Path, for_other_account: bool) -> Result<(), FetchError> {
    if !for_other_account {
        return Ok(());
    }
    for ancestor in dir.ancestors() {
        let Ok(metadata) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o001 == 0 {
            return Err(FetchError::Unreachable {
                dir: dir.to_owned(),
                ancestor: ancestor.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_follows_xdg_then_home_and_root_uses_the_system_cache() {
        let some = |text: &str| Some(OsString::from(text));
        assert_eq!(
            root(some("/x"), some("/home/u"), false).unwrap(),
            Path::new("/x/cargo-pgtest/postgres")
        );
        assert_eq!(
            root(some("/x"), some("/root"), true).unwrap(),
            Path::new("/x/cargo-pgtest/postgres")
        );
        assert_eq!(
            root(some("relative"), some("/root"), true).unwrap(),
            Path::new("/var/cache/cargo-pgtest/postgres")
        );
        let home = root(None, some("/home/u"), false).unwrap();
        assert!(
            home.starts_with("/home/u") && home.ends_with("cargo-pgtest/postgres"),
            "{}",
            home.display()
        );
        assert!(matches!(
            root(None, None, false),
            Err(FetchError::NoCacheDir)
        ));
    }

    #[test]
    fn only_long_abandoned_fetches_are_removed() {
        let cache = tempfile::tempdir().unwrap();
        for name in [".fetch-old", "17-linux-x64"] {
            fs::create_dir(cache.path().join(name)).unwrap();
        }
        remove_abandoned(cache.path(), SystemTime::now());
        assert!(cache.path().join(".fetch-old").exists());
        remove_abandoned(cache.path(), SystemTime::now() + ABANDONED_AFTER * 2);
        assert!(!cache.path().join(".fetch-old").exists());
        assert!(cache.path().join("17-linux-x64").exists());
    }

    #[test]
    fn a_closed_directory_above_the_cache_is_named() {
        let top = tempfile::tempdir().unwrap();
        let closed = top.path().join("closed");
        let cache = closed.join("cargo-pgtest/postgres");
        fs::create_dir_all(&cache).unwrap();
        fs::set_permissions(top.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&closed, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(check_reachable(&cache, false).is_ok());
        let message = check_reachable(&cache, true).unwrap_err().to_string();
        assert!(
            message.contains(&closed.display().to_string()) && message.contains("700"),
            "{message}"
        );
        fs::set_permissions(&closed, fs::Permissions::from_mode(0o711)).unwrap();
        prepare(&cache, true).unwrap();
        let mode = fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
    }
}
