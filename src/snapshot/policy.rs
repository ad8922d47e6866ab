//! What a cached cluster holds, and the key it is stored under: a hash of everything that shapes the
//! templates (see `cluster::cache` for where entries live and how they are written).

use std::path::{Path, PathBuf};

use super::Template;
use crate::cluster::binaries::Binaries;
use crate::cluster::cache::{Cache, KeyHasher, Pack};
use crate::config::{Config, DatabaseSpec};

/// The cache of migrated clusters for this run: where, under which key, and what it already holds.
pub struct CachePlan {
    pub cache: Cache,
    pub key: String,
    /// The cached cluster and its manifest, when the key was found.
    pub hit: Option<(Pack, Manifest)>,
}

impl CachePlan {
    /// Looks the run's migrated cluster up in the cache under `target_dir`. `None` when the key cannot be
    /// computed (an unreadable migration or fixture, which preparing the template reports properly).
    pub fn look_up(
        target_dir: &Path,
        binaries: &Binaries,
        config: &Config,
        sqlx_test: Option<usize>,
    ) -> Option<CachePlan> {
        let mut hasher = KeyHasher::default();
        hasher
            .add("cargo-pgtest", env!("CARGO_PKG_VERSION").as_bytes())
            .add("postgres", binaries.version.to_string().as_bytes())
            .add("bin_dir", binaries.bin_dir.as_os_str().as_encoded_bytes());
        for setting in &config.settings {
            hasher.add(&setting.name, setting.value.as_bytes());
        }
        hash_inputs(&config.databases, &mut hasher).ok()?;
        hasher.add("template1", format!("{sqlx_test:?}").as_bytes());
        let cache = Cache::in_target_dir(target_dir);
        let key = hasher.finish();
        let hit = cache.get(&key).and_then(|entry| {
            let manifest = Manifest::from_json(&entry.manifest)?;
            Some((entry.pack, manifest))
        });
        Some(CachePlan { cache, key, hit })
    }
}

/// What a cached cluster holds, stored beside it (see `cluster::cache`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub templates: Vec<Template>,
}

impl Manifest {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `None` for a manifest this build cannot read (written by another version): the entry is not used.
    pub fn from_json(text: &str) -> Option<Manifest> {
        serde_json::from_str(text).ok()
    }
}

/// Feeds everything in `specs` that shapes the templates into a cache key: the migration and fixture files'
/// names and contents, and the extensions. Any change to them gives another key.
pub fn hash_inputs(specs: &[DatabaseSpec], hasher: &mut KeyHasher) -> std::io::Result<()> {
    for spec in specs {
        hasher.add("database", b"");
        if let Some(dir) = &spec.migrations {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for file in files {
                hasher.add_file(&file)?;
            }
        }
        for fixture in &spec.fixtures {
            hasher.add("fixture", b"").add_file(fixture)?;
        }
        for extension in &spec.extensions {
            hasher.add("extension", extension.as_bytes());
        }
    }
    Ok(())
}
