//! Where fetched builds are kept, per user: `$XDG_CACHE_HOME/cargo-pgtest/postgres`, else the platform's
//! cache directory under `$HOME`; for root, whose home the server account cannot enter, the system's
//! `/var/cache/cargo-pgtest/postgres` unless `XDG_CACHE_HOME` says otherwise.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::FetchError;

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

/// Creates the cache directory. For another server account, the two directories cargo-pgtest owns
/// (`cargo-pgtest/` and `postgres/`) are opened to all, and every directory above must be searchable.
pub(super) fn prepare(cache: &Path, for_other_account: bool) -> Result<(), FetchError> {
    fs::create_dir_all(cache).map_err(|source| FetchError::Cache {
        action: "create",
        path: cache.to_owned(),
        source,
    })?;
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
