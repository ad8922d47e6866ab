//! The template databases: extensions, migrations (sqlx's layout, recorded in `_sqlx_migrations` exactly as
//! sqlx records them) and fixture files applied once; then cheap clones of a template for tests, and drops.

pub(crate) mod extra;
pub(crate) mod keep;
pub(crate) mod maintenance;
pub(crate) mod migrations;
pub(crate) mod reuse;
pub(crate) mod snapshots;
pub(crate) mod test_databases;

use std::path::{Path, PathBuf};

use sqlx::postgres::{PgDatabaseError, PgErrorPosition};
use sqlx::{Connection, PgConnection};

use crate::cluster::Endpoint;
use crate::config::DatabaseSpec;
pub(crate) use extra::Extras;
pub(crate) use keep::KeptDatabase;
pub(crate) use maintenance::MaintenancePool;
use migrations::{apply_migrations, read_migrations};
pub use migrations::{parse_migration_name, MigrationName};
pub(crate) use test_databases::{Obtain, Return, TestDatabases};

/// A template database, ready to be cloned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Template {
    pub(crate) name: String,
    pub(crate) migrations: usize,
    pub(crate) fixtures: usize,
    /// Whether the migrations made unlogged tables (which a recovering server empties: such a cluster is
    /// cached from a clean stop).
    #[serde(default)]
    pub(crate) unlogged_tables: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TemplateError {
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

/// Reads every spec's migrations directory, so that badly named files and duplicate versions stop the run
/// before anything is started.
pub(crate) fn check_migrations(specs: &[DatabaseSpec]) -> Result<(), TemplateError> {
    for dir in specs.iter().filter_map(|spec| spec.migrations.as_ref()) {
        read_migrations(dir)?;
    }
    Ok(())
}

/// Builds one template per distinct database spec, in spec order.
///
/// With `sqlx_test`, that spec's extensions and migrations also go into `template1`, which is what the
/// databases `#[sqlx::test]` creates are copies of: its migrator then finds every migration applied (same
/// versions, same checksums) and runs none (see [`crate::sqlx::sqlx_test_spec`]).
pub(crate) async fn prepare(
    endpoint: &Endpoint,
    specs: &[DatabaseSpec],
    sqlx_test: Option<usize>,
    server_major: u32,
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
        let name = endpoint.database_name(&name).into_owned();
        templates.push(prepare_one(endpoint, &mut admin, spec, name, server_major).await?);
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
        // Like our templates: reading a copy then writes nothing, so the gateway may hand it on.
        settle(&mut template1)
            .await
            .map_err(|source| TemplateError::Sql {
                name: "template1".into(),
                source,
            })?;
        let _ = template1.close().await;
    }
    Ok(templates)
}

/// Creates the template `name` from `spec`: a fresh database, its extensions, migrations and fixtures,
/// then marked a template nobody may connect to.
async fn prepare_one(
    endpoint: &Endpoint,
    admin: &mut PgConnection,
    spec: &DatabaseSpec,
    name: String,
    server_major: u32,
) -> Result<Template, TemplateError> {
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
        "CREATE DATABASE {} TEMPLATE template0{}",
        quote_ident(&name),
        maintenance::clone_strategy(server_major)
    ))
    .execute(&mut *admin)
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
    let unlogged_tables: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_class WHERE relpersistence = 'u')")
            .fetch_one(&mut connection)
            .await
            .map_err(sql_error)?;
    if endpoint.is_ours() {
        settle(&mut connection).await.map_err(sql_error)?;
    }
    // Nobody may stay connected to a template while it is cloned.
    connection.close().await.map_err(sql_error)?;
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
        quote_ident(&name)
    ))
    .execute(&mut *admin)
    .await
    .map_err(sql_error)?;
    // Its settled pages on disk, so that the clones (and a cached cluster) start from them.
    if endpoint.is_ours() {
        sqlx::raw_sql("CHECKPOINT")
            .execute(&mut *admin)
            .await
            .map_err(sql_error)?;
    }
    let applied = migrations
        .iter()
        .filter(|(m, _)| !m.migration_type.is_down_migration())
        .count();
    Ok(Template {
        name,
        migrations: applied,
        fixtures: spec.fixtures.len(),
        unlogged_tables,
    })
}

/// Settles a template so that reading a copy of it writes nothing: statistics gathered (`ANALYZE`, which
/// leaves dead catalog rows), then every row frozen and every page marked all-visible (`VACUUM FREEZE`), so
/// that no read sets hint bits or prunes a page. Reuse ([`reuse`]) relies on it; a copy it missed is only
/// not reused.
pub(crate) async fn settle(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    // One statement at a time: VACUUM refuses to run inside the implicit transaction of several.
    for statement in ["ANALYZE", "VACUUM FREEZE"] {
        sqlx::raw_sql(statement).execute(&mut *connection).await?;
    }
    Ok(())
}

/// Has PostgreSQL write the relation-cache init file (`pg_internal.init`) of each template and of
/// `template1`, which it removes at every start. Copies take the file with the rest, so a test's first
/// connection reads it instead of building that cache from the catalogs: about 4 ms of server time less
/// per fresh database here. Returns once no session is left on them (a copy waits for those).
pub(crate) async fn warm_relation_caches(
    endpoint: &Endpoint,
    templates: &[Template],
) -> Result<(), TemplateError> {
    let mut admin = PgConnection::connect_with(&endpoint.connect_options("postgres"))
        .await
        .map_err(TemplateError::Connect)?;
    let allow = |name: &str, allowed: bool| {
        format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allowed}",
            quote_ident(name)
        )
    };
    let mut names = vec!["template1"];
    names.extend(templates.iter().map(|t| t.name.as_str()));
    for name in &names {
        let ours = *name != "template1";
        let sql_error = |source| TemplateError::Sql {
            name: (*name).to_owned(),
            source,
        };
        if ours {
            sqlx::raw_sql(&allow(name, true))
                .execute(&mut admin)
                .await
                .map_err(sql_error)?;
        }
        // Connecting is enough: the file is written while the session starts.
        let connection = PgConnection::connect_with(&endpoint.connect_options(name))
            .await
            .map_err(TemplateError::Connect)?;
        connection.close().await.map_err(sql_error)?;
        if ours {
            sqlx::raw_sql(&allow(name, false))
                .execute(&mut admin)
                .await
                .map_err(sql_error)?;
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let sessions: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = ANY($1)")
                .bind(&names)
                .fetch_one(&mut admin)
                .await
                .map_err(|source| TemplateError::Sql {
                    name: "postgres".into(),
                    source,
                })?;
        if sessions == 0 || std::time::Instant::now() > deadline {
            break;
        }
        // Sessions end within milliseconds; meanwhile cargo builds on the same CPUs.
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let _ = admin.close().await;
    Ok(())
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

pub(crate) async fn apply_fixture(
    connection: &mut PgConnection,
    path: &Path,
) -> Result<(), TemplateError> {
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
pub(crate) fn line_and_column(text: &str, position: usize) -> Option<(usize, usize)> {
    let before: String = text.chars().take(position.checked_sub(1)?).collect();
    if before.chars().count() + 1 != position {
        return None;
    }
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, column))
}

/// The server's own words for an error: message, detail and hint.
pub(crate) fn server_message(error: &sqlx::Error) -> String {
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

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

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
