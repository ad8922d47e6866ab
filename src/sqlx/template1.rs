//! Whether `template1` may hold the migrations, so the databases `#[sqlx::test]` creates for its tests
//! (copies of template1) start migrated and sqlx's migrator has nothing to do.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::DatabaseSpec;

/// Which database spec `#[sqlx::test]` databases may start from (see [`prepare`]): only when every selected
/// package uses the same spec, its migrations are the package's own `./migrations` (what `sqlx::migrate!()`
/// and `#[sqlx::test]` embed), and no `#[sqlx::test(...)]` in the package's sources picks other migrations
/// or none (`migrations = false`, `migrations = "..."`, `migrator = ...`), since those tests expect a
/// database without them.
pub(crate) fn sqlx_test_spec(
    specs: &[DatabaseSpec],
    package_database: &BTreeMap<String, usize>,
    package_dirs: &[PathBuf],
) -> Option<usize> {
    let mut indexes = package_database.values();
    let index = *indexes.next()?;
    if indexes.any(|other| *other != index) {
        return None;
    }
    let migrations = specs.get(index)?.migrations.as_ref()?.canonicalize().ok()?;
    for dir in package_dirs {
        if dir.join("migrations").canonicalize().ok()? != migrations {
            return None;
        }
        if super::scan::scan(dir).picks_own_migrations {
            return None;
        }
    }
    Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template1_is_migrated_only_for_the_packages_own_migrations() {
        let project = tempfile::tempdir().unwrap();
        let dir = project.path();
        std::fs::create_dir_all(dir.join("migrations")).unwrap();
        std::fs::create_dir_all(dir.join("db")).unwrap();
        std::fs::create_dir_all(dir.join("tests")).unwrap();
        std::fs::write(dir.join("tests/it.rs"), "#[sqlx::test]\nasync fn a() {}").unwrap();
        let spec = |path: &str| DatabaseSpec {
            migrations: Some(dir.join(path)),
            fixtures: Vec::new(),
            extensions: Vec::new(),
            ..DatabaseSpec::default()
        };
        let packages = BTreeMap::from([("app".to_owned(), 0)]);
        let dirs = [dir.to_owned()];
        assert_eq!(
            sqlx_test_spec(&[spec("migrations")], &packages, &dirs),
            Some(0)
        );
        assert_eq!(
            sqlx_test_spec(&[spec("db")], &packages, &dirs),
            None,
            "sqlx::test embeds ./migrations"
        );
        let two = BTreeMap::from([("a".to_owned(), 0), ("b".to_owned(), 1)]);
        assert_eq!(
            sqlx_test_spec(&[spec("migrations"), spec("migrations")], &two, &dirs),
            None
        );
        std::fs::write(
            dir.join("tests/raw.rs"),
            "#[sqlx::test(migrations = false)]\nasync fn b() {}",
        )
        .unwrap();
        assert_eq!(
            sqlx_test_spec(&[spec("migrations")], &packages, &dirs),
            None
        );
    }
}
