//! The template databases: extensions, migrations (sqlx's layout, recorded in `_sqlx_migrations` exactly as
//! sqlx records them) and fixture files applied once; then cheap clones of a template for tests, and drops.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sqlx::migrate::{Migrate, MigrateError, Migration};
use sqlx::postgres::{PgDatabaseError, PgErrorPosition, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

use crate::cluster::cache::KeyHasher;
use crate::cluster::Endpoint;
use crate::config::DatabaseSpec;

/// A template database, ready to be cloned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Template {
    pub name: String,
    pub migrations: usize,
    pub fixtures: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("could not connect to the cluster: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migration file {} does not follow sqlx's layout `<VERSION>_<DESCRIPTION>.sql` (or `.up.sql`/`.down.sql`): {reason}; rename it", path.display())]
    BadMigrationName { path: PathBuf, reason: String },
    #[error("migrations {} and {} have the same version {version}; give one of them a new version", first.display(), second.display())]
    DuplicateVersion {
        version: i64,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("could not read the migrations in {}: {message}", dir.display())]
    ReadMigrations { dir: PathBuf, message: String },
    #[error("migration {location} failed: {message}; fix the migration and run again")]
    Migration { location: String, message: String },
    #[error("fixture {location} failed: {message}; fix the file and run again")]
    Fixture { location: String, message: String },
    #[error("could not read fixture {}: {source}", path.display())]
    ReadFixture {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not create extension `{name}` (from the `extensions` key): {message}; install the package that provides it (Debian: postgresql-contrib, or postgresql-<major>-<extension>)")]
    Extension { name: String, message: String },
    #[error("could not prepare the template database `{name}`: {source}")]
    Sql { name: String, source: sqlx::Error },
}

/// Builds one template per distinct database spec, in spec order.
///
/// With `sqlx_test`, that spec's extensions and migrations also go into `template1`, which is what the
/// databases `#[sqlx::test]` creates are copies of: its migrator then finds every migration applied (same
/// versions, same checksums) and runs none (see [`sqlx_test_spec`]).
pub async fn prepare(
    endpoint: &Endpoint,
    specs: &[DatabaseSpec],
    sqlx_test: Option<usize>,
) -> Result<Vec<Template>, TemplateError> {
    let mut admin = PgConnection::connect_with(&endpoint.connect_options("postgres"))
        .await
        .map_err(TemplateError::Connect)?;
    let mut templates = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let name = if specs.len() == 1 {
            "pgtest_template".to_owned()
        } else {
            format!("pgtest_template_{index}")
        };
        let sql_error = |source| TemplateError::Sql {
            name: name.clone(),
            source,
        };
        let migrations = match &spec.migrations {
            Some(dir) => read_migrations(dir)?,
            None => Vec::new(),
        };
        // From template0: template1 may be given migrations below, and must not pass them on to our templates.
        sqlx::raw_sql(&format!(
            "CREATE DATABASE {} TEMPLATE template0",
            quote_ident(&name)
        ))
        .execute(&mut admin)
        .await
        .map_err(sql_error)?;

        let mut connection = PgConnection::connect_with(&endpoint.connect_options(&name))
            .await
            .map_err(TemplateError::Connect)?;
        create_extensions(&mut connection, &spec.extensions).await?;
        apply_migrations(&mut connection, &migrations).await?;
        for file in &spec.fixtures {
            apply_fixture(&mut connection, file).await?;
        }
        // Nobody may stay connected to a template while it is cloned.
        connection.close().await.map_err(sql_error)?;
        sqlx::raw_sql(&format!(
            "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
            quote_ident(&name)
        ))
        .execute(&mut admin)
        .await
        .map_err(sql_error)?;
        let applied = migrations
            .iter()
            .filter(|(m, _)| !m.migration_type.is_down_migration())
            .count();
        templates.push(Template {
            name,
            migrations: applied,
            fixtures: spec.fixtures.len(),
        });
    }
    let _ = admin.close().await;
    if let Some(spec) = sqlx_test.and_then(|index| specs.get(index)) {
        let mut template1 = PgConnection::connect_with(&endpoint.connect_options("template1"))
            .await
            .map_err(TemplateError::Connect)?;
        create_extensions(&mut template1, &spec.extensions).await?;
        let migrations = match &spec.migrations {
            Some(dir) => read_migrations(dir)?,
            None => Vec::new(),
        };
        apply_migrations(&mut template1, &migrations).await?;
        let _ = template1.close().await;
    }
    Ok(templates)
}

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

/// Reads a migrations directory with sqlx's own resolver, after checking every `.sql` file's name and that no
/// two migrations share a version (sqlx skips odd names silently and fails late on duplicates).
fn read_migrations(dir: &Path) -> Result<Vec<(Migration, PathBuf)>, TemplateError> {
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
    pub description: String,
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

async fn create_extensions(
    connection: &mut PgConnection,
    extensions: &[String],
) -> Result<(), TemplateError> {
    for extension in extensions {
        sqlx::raw_sql(&format!(
            "CREATE EXTENSION IF NOT EXISTS {}",
            quote_ident(extension)
        ))
        .execute(&mut *connection)
        .await
        .map_err(|e| TemplateError::Extension {
            name: extension.clone(),
            message: server_message(&e),
        })?;
    }
    Ok(())
}

async fn apply_migrations(
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

async fn apply_fixture(connection: &mut PgConnection, path: &Path) -> Result<(), TemplateError> {
    let sql = std::fs::read_to_string(path).map_err(|source| TemplateError::ReadFixture {
        path: path.to_owned(),
        source,
    })?;
    sqlx::raw_sql(&sql)
        .execute(&mut *connection)
        .await
        .map(drop)
        .map_err(|e| TemplateError::Fixture {
            location: locate(path, &sql, &e),
            message: server_message(&e),
        })
}

/// `file:line:column` of a server error inside the SQL text it ran, or just the file.
fn locate(path: &Path, sql: &str, error: &sqlx::Error) -> String {
    let position = error
        .as_database_error()
        .and_then(|e| e.try_downcast_ref::<PgDatabaseError>())
        .and_then(|e| match e.position() {
            Some(PgErrorPosition::Original(position)) => Some(position),
            _ => None,
        });
    match position.and_then(|p| line_and_column(sql, p)) {
        Some((line, column)) => format!("{}:{line}:{column}", path.display()),
        None => path.display().to_string(),
    }
}

/// Turns PostgreSQL's 1-based character position into a 1-based line and column.
pub fn line_and_column(text: &str, position: usize) -> Option<(usize, usize)> {
    let before: String = text.chars().take(position.checked_sub(1)?).collect();
    if before.chars().count() + 1 != position {
        return None;
    }
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, column))
}

/// The server's own words for an error: message, detail and hint.
pub fn server_message(error: &sqlx::Error) -> String {
    match error
        .as_database_error()
        .and_then(|e| e.try_downcast_ref::<PgDatabaseError>())
    {
        Some(pg) => {
            let mut text = format!("{} ({})", pg.message(), pg.code());
            if let Some(detail) = pg.detail() {
                text.push_str(&format!("; detail: {detail}"));
            }
            if let Some(hint) = pg.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => error.to_string(),
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Makes and drops the per-test databases over a small pool of connections to the maintenance database.
#[derive(Debug, Clone)]
pub struct Databases {
    pool: PgPool,
    /// `STRATEGY FILE_COPY` on PostgreSQL 15+, measured about twice as fast here as the default WAL_LOG.
    clone_suffix: &'static str,
}

impl Databases {
    pub async fn connect(
        endpoint: &Endpoint,
        server_major: u32,
        connections: u32,
    ) -> Result<Databases, TemplateError> {
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(1))
            // sqlx waits 30 s by default; a server that died mid-run must not hold the run up that long.
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(endpoint.connect_options("postgres"))
            .await
            .map_err(TemplateError::Connect)?;
        let clone_suffix = if server_major >= 15 {
            " STRATEGY FILE_COPY"
        } else {
            ""
        };
        Ok(Databases { pool, clone_suffix })
    }

    /// Creates `name` as a copy of `template`.
    pub async fn create_from(&self, template: &str, name: &str) -> Result<(), sqlx::Error> {
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE {}{}",
            quote_ident(name),
            quote_ident(template),
            self.clone_suffix
        );
        sqlx::raw_sql(&sql).execute(&self.pool).await.map(drop)
    }

    /// Drops `name`, disconnecting whatever a test left connected.
    pub async fn drop_database(&self, name: &str) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// How many databases the cluster holds (for leak checks).
    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM pg_database")
            .fetch_one(&self.pool)
            .await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
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

    #[test]
    fn positions_become_lines_and_columns() {
        let sql = "create table a (id int);\ncreate tabel b ();\n";
        assert_eq!(line_and_column(sql, 1), Some((1, 1)));
        assert_eq!(line_and_column(sql, 33), Some((2, 8)));
        assert_eq!(line_and_column(sql, 0), None);
        assert_eq!(line_and_column("ab", 9), None);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
