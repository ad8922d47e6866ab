//! The fixture project each trial runs: a copy kept in place per major under `target/`, and its manifest
//! with a `postgres` key.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const FIXTURE: &str = "sqlx-app";

/// The fixture's copy for one major, with `postgres = "<major>"`, at a fixed place under `target/`.
/// Files are rewritten only when they differ, so their times stay, cargo's fingerprints hold, and a
/// warm run does not rebuild the fixture for every major.
pub fn project_for(major: u32) -> Result<PathBuf, String> {
    let dir = Path::new(crate::support::REPO)
        .join("target/pg-versions-projects")
        .join(major.to_string())
        .join(FIXTURE);
    sync_dir(&fixture_dir(), &dir)?;
    let manifest = manifest_with_key(Some(&major.to_string()))?;
    write_if_changed(&dir.join("Cargo.toml"), manifest.as_bytes())?;
    Ok(dir)
}

pub fn fixture_dir() -> PathBuf {
    Path::new(crate::support::REPO)
        .join("fixtures")
        .join(FIXTURE)
}

/// Makes `to` hold what `from` holds, writing only the files that differ and removing what `from` lacks.
fn sync_dir(from: &Path, to: &Path) -> Result<(), String> {
    let fail = |path: &Path, e: io::Error| format!("cannot copy {}: {e}", path.display());
    fs::create_dir_all(to).map_err(|e| fail(to, e))?;
    let mut names = Vec::new();
    for entry in fs::read_dir(from).map_err(|e| fail(from, e))? {
        let entry = entry.map_err(|e| fail(from, e))?;
        if entry.file_name() == "target" {
            continue;
        }
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        names.push(entry.file_name());
        if source.is_dir() {
            sync_dir(&source, &target)?;
        } else {
            let bytes = fs::read(&source).map_err(|e| fail(&source, e))?;
            write_if_changed(&target, &bytes)?;
        }
    }
    for entry in fs::read_dir(to).map_err(|e| fail(to, e))? {
        let entry = entry.map_err(|e| fail(to, e))?;
        if !names.contains(&entry.file_name()) {
            let path = entry.path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The fixture's manifest with `postgres = "<value>"` in its `[package.metadata.pgtest]` table, or as is.
pub fn manifest_with_key(value: Option<&str>) -> Result<String, String> {
    let original = fixture_dir().join("Cargo.toml");
    let text = fs::read_to_string(&original)
        .map_err(|e| format!("cannot read {}: {e}", original.display()))?;
    let table = "[package.metadata.pgtest]\n";
    if !text.contains(table) {
        return Err(format!("{} has no {table:?}", original.display()));
    }
    Ok(match value {
        Some(value) => text.replacen(table, &format!("{table}postgres = {value:?}\n"), 1),
        None => text,
    })
}
