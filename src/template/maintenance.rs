//! The per-test databases: clones of a template, and their drops.

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::quote_ident;
use super::TemplateError;
use crate::cluster::Endpoint;

/// `STRATEGY FILE_COPY` on PostgreSQL 15+ (copying files is about twice as fast here as the default
/// WAL_LOG, which writes every page to the WAL); earlier versions only copy files.
pub(crate) fn clone_strategy(server_major: u32) -> &'static str {
    if server_major >= 15 {
        " STRATEGY FILE_COPY"
    } else {
        ""
    }
}

/// `CREATE DATABASE name TEMPLATE template`, with `clone_suffix` (from [`clone_strategy`]).
pub(crate) fn create_statement(template: &str, name: &str, clone_suffix: &str) -> String {
    format!(
        "CREATE DATABASE {} TEMPLATE {}{clone_suffix}",
        quote_ident(name),
        quote_ident(template)
    )
}

/// Makes and drops the per-test databases over a small pool of connections to the maintenance database.
#[derive(Debug, Clone)]
pub(crate) struct MaintenancePool {
    pool: PgPool,
    /// `STRATEGY FILE_COPY` on PostgreSQL 15+, measured about twice as fast here as the default WAL_LOG.
    clone_suffix: &'static str,
    /// Gives names their run's form on an existing server ([`Endpoint::database_name`]).
    endpoint: Endpoint,
}

impl MaintenancePool {
    pub(crate) async fn connect(
        endpoint: &Endpoint,
        server_major: u32,
        connections: u32,
    ) -> Result<MaintenancePool, TemplateError> {
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(1))
            // sqlx waits 30 s by default; a server that died mid-run must not hold the run up that long.
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(endpoint.connect_options("postgres"))
            .await
            .map_err(TemplateError::Connect)?;
        let clone_suffix = clone_strategy(server_major);
        Ok(MaintenancePool {
            pool,
            clone_suffix,
            endpoint: endpoint.clone(),
        })
    }

    /// Creates `name` as a copy of `template`.
    pub(crate) async fn create_from(&self, template: &str, name: &str) -> Result<(), sqlx::Error> {
        let (template, name) = (self.name(template), self.name(name));
        let sql = create_statement(&template, &name, self.clone_suffix);
        sqlx::raw_sql(&sql).execute(&self.pool).await.map(drop)
    }

    /// Drops `name`, disconnecting whatever a test left connected.
    pub(crate) async fn drop_database(&self, name: &str) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&self.name(name))
        ))
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// How many sessions are on `name`.
    pub(crate) async fn sessions_on(&self, name: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(self.name(name).as_ref())
            .fetch_one(&self.pool)
            .await
    }

    /// How many databases the cluster holds (for leak checks), but for those of `#[sqlx::test]`s, which a
    /// run leaves to the teardown: the ones sqlx makes each test's database from, and the gateway's copies
    /// made ahead and used ones it drops later.
    pub(crate) async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            r"SELECT count(*) FROM pg_database
              WHERE datname NOT LIKE 'pgtest\_ready\_%' AND datname NOT LIKE '\_sqlx\_test%'
                AND datname NOT LIKE 'pgtest\_sqlx\_%'",
        )
        .fetch_one(&self.pool)
        .await
    }

    /// The connections to the maintenance database (which reuse's checks share).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn name<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        self.endpoint.database_name(name)
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}
