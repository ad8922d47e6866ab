//! The migrations: sqlx's file layout, checked strictly (sqlx skips odd names silently and fails late on
//! duplicate versions), and applied with sqlx's own migrator so `_sqlx_migrations` is exactly what sqlx writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sqlx::migrate::{Migrate, MigrateError, Migration};
use sqlx::PgConnection;

use super::{locate, server_message, TemplateError};

/// Reads a migrations directory with sqlx's own resolver, after checking every `.sql` file's name and that no
/// two migrations share a version (sqlx skips odd names silently and fails late on duplicates).
pub(super) fn read_migrations(dir: &Path) -> Result<Vec<(Migration, PathBuf)>, TemplateError> {
    let entries = std::fs::read_dir(dir).map_err(|e| TemplateError::ReadMigrations {
        dir: dir.to_owned(),
        message: e.to_string(),
    })?;
    let mut seen: BTreeMap<(i64, bool), PathBuf> = BTreeMap::new();
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    for path in paths {
        let file_name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some(parsed) =
            parse_migration_name(&file_name).map_err(|reason| TemplateError::BadMigrationName {
                path: path.clone(),
                reason,
            })?
        else {
            continue;
        };
        if let Some(first) = seen.insert((parsed.version, parsed.is_down), path.clone()) {
            return Err(TemplateError::DuplicateVersion {
                version: parsed.version,
                first,
                second: path,
            });
        }
    }
    sqlx::migrate::resolve_blocking(dir).map_err(|e| TemplateError::ReadMigrations {
        dir: dir.to_owned(),
        message: e.to_string(),
    })
}

/// What a migration file name says.
#[derive(Debug, PartialEq, Eq)]
pub struct MigrationName {
    pub version: i64,
    pub(crate) description: String,
    pub is_down: bool,
}

/// Parses `<VERSION>_<DESCRIPTION>.sql`, `.up.sql` or `.down.sql`. Files not ending in `.sql` are not
/// migrations (`Ok(None)`); a `.sql` file of another shape is an error.
pub fn parse_migration_name(file_name: &str) -> Result<Option<MigrationName>, String> {
    let Some(stem) = file_name.strip_suffix(".sql") else {
        return Ok(None);
    };
    let Some((version, rest)) = stem.split_once('_') else {
        return Err("there is no `_` between the version and the description".to_owned());
    };
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("the version `{version}` is not a whole number"));
    }
    let version: i64 = version
        .parse()
        .map_err(|_| format!("the version `{version}` is too large"))?;
    if version <= 0 {
        return Err("the version must be greater than zero".to_owned());
    }
    let (description, is_down) = if let Some(d) = rest.strip_suffix(".down") {
        (d, true)
    } else {
        (rest.strip_suffix(".up").unwrap_or(rest), false)
    };
    if description.is_empty() {
        return Err("the description is empty".to_owned());
    }
    Ok(Some(MigrationName {
        version,
        description: description.replace('_', " "),
        is_down,
    }))
}

pub(super) async fn apply_migrations(
    connection: &mut PgConnection,
    migrations: &[(Migration, PathBuf)],
) -> Result<(), TemplateError> {
    if migrations.is_empty() {
        return Ok(());
    }
    let setup_error = |e: MigrateError| TemplateError::Migration {
        location: "setup".to_owned(),
        message: e.to_string(),
    };
    connection
        .ensure_migrations_table()
        .await
        .map_err(setup_error)?;
    for (migration, path) in migrations {
        if migration.migration_type.is_down_migration() {
            continue;
        }
        if let Err(error) = connection.apply(migration).await {
            let (location, message) = match &error {
                MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => {
                    (locate(path, &migration.sql, e), server_message(e))
                }
                other => (path.display().to_string(), other.to_string()),
            };
            return Err(TemplateError::Migration { location, message });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_names_follow_sqlx() {
        let parsed = parse_migration_name("20240101120000_create_users.sql")
            .unwrap()
            .unwrap();
        assert_eq!(
            parsed,
            MigrationName {
                version: 20240101120000,
                description: "create users".into(),
                is_down: false
            }
        );
        assert!(
            !parse_migration_name("2_add_posts.up.sql")
                .unwrap()
                .unwrap()
                .is_down
        );
        assert!(
            parse_migration_name("2_add_posts.down.sql")
                .unwrap()
                .unwrap()
                .is_down
        );
        assert_eq!(parse_migration_name("README.md").unwrap(), None);
    }

    #[test]
    fn odd_migration_names_are_refused_with_a_reason() {
        assert!(parse_migration_name("create_users.sql")
            .unwrap_err()
            .contains("not a whole number"));
        assert!(parse_migration_name("0001.sql")
            .unwrap_err()
            .contains("`_`"));
        assert!(parse_migration_name("1_.sql")
            .unwrap_err()
            .contains("empty"));
        assert!(parse_migration_name("0_init.sql")
            .unwrap_err()
            .contains("greater than zero"));
        assert!(parse_migration_name("99999999999999999999_x.sql")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn duplicate_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1_a.sql"), "select 1;").unwrap();
        std::fs::write(dir.path().join("1_b.sql"), "select 2;").unwrap();
        let message = read_migrations(dir.path()).unwrap_err().to_string();
        assert!(
            message.contains("1_a.sql")
                && message.contains("1_b.sql")
                && message.contains("version 1"),
            "{message}"
        );
    }

    #[test]
    fn reversible_pairs_are_one_version_each_way() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1_a.up.sql"), "create table a();").unwrap();
        std::fs::write(dir.path().join("1_a.down.sql"), "drop table a;").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a migration").unwrap();
        let migrations = read_migrations(dir.path()).unwrap();
        assert_eq!(migrations.len(), 2);
    }
}
