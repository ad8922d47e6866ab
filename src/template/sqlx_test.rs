//! `#[sqlx::test]` support: whether `template1` may hold the migrations, so the databases sqlx creates for its
//! tests (copies of template1) start migrated and its migrator has nothing to do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::DatabaseSpec;

/// Which database spec `#[sqlx::test]` databases may start from (see [`prepare`]): only when every selected
/// package uses the same spec, its migrations are the package's own `./migrations` (what `sqlx::migrate!()`
/// and `#[sqlx::test]` embed), and no `#[sqlx::test(...)]` in the package's sources picks other migrations
/// or none (`migrations = false`, `migrations = "..."`, `migrator = ...`), since those tests expect a
/// database without them.
pub fn sqlx_test_spec(
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
        for source in ["src", "tests", "benches", "examples"] {
            if picks_own_migrations(&dir.join(source)) {
                return None;
            }
        }
    }
    Some(index)
}

/// Whether a `.rs` file under `dir` has a `#[sqlx::test(...)]` that names its migrations or migrator.
fn picks_own_migrations(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            picks_own_migrations(&path)
        } else if path.extension().is_some_and(|e| e == "rs") {
            std::fs::read_to_string(&path).is_ok_and(|text| sqlx_test_names_migrations(&text))
        } else {
            false
        }
    })
}

fn sqlx_test_names_migrations(source: &str) -> bool {
    source.match_indices("sqlx::test").any(|(at, found)| {
        let rest = source[at + found.len()..].trim_start();
        let Some(arguments) = rest.strip_prefix('(') else {
            return false;
        };
        let arguments = &arguments[..arguments.find(")]").unwrap_or(arguments.len())];
        arguments.contains("migrations") || arguments.contains("migrator")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlx_test_attributes_that_pick_their_migrations_are_noticed() {
        assert!(!sqlx_test_names_migrations(
            "#[sqlx::test]\nasync fn a(pool: PgPool) {}"
        ));
        assert!(!sqlx_test_names_migrations(
            "#[sqlx::test(fixtures(\"users\"))]\nasync fn a() {}"
        ));
        assert!(sqlx_test_names_migrations(
            "#[sqlx::test(migrations = false)]\nasync fn a() {}"
        ));
        assert!(sqlx_test_names_migrations(
            "#[sqlx::test(migrations = \"other\")]"
        ));
        assert!(sqlx_test_names_migrations(
            "#[sqlx::test(migrator = \"crate::MIGRATOR\")]"
        ));
        assert!(!sqlx_test_names_migrations("fn f() { sqlx::test }"));
    }

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
