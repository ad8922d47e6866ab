//! The SQL that makes snapshots: a fixture snapshot is a copy of its template with its SQL files applied; a
//! `from_test` snapshot's copy is made by the runner, and [`seal`]ed here once its test has passed. Both
//! end as templates nobody may connect to, as the plain template does.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use super::{NamedSnapshot, NamedSnapshots, SnapshotsError};
use crate::cluster::Endpoint;
use crate::template::{apply_fixture, maintenance, quote_ident, server_message};

/// Builds every fixture snapshot of `plan` (right after the templates, so the cluster cache stores them
/// too); `from_test` snapshots are left to the runner.
pub(crate) async fn build_fixture_snapshots(
    endpoint: &Endpoint,
    plan: &NamedSnapshots,
    server_major: u32,
) -> Result<(), SnapshotsError> {
    for snapshot in plan.snapshots.iter().filter(|s| s.from_test.is_none()) {
        let mut admin = connect(endpoint, "postgres", snapshot).await?;
        let create = maintenance::create_statement(
            &snapshot.base,
            &snapshot.database,
            maintenance::clone_strategy(server_major),
        );
        run(&mut admin, &create, snapshot).await?;
        let mut connection = connect(endpoint, &snapshot.database, snapshot).await?;
        for file in &snapshot.fixtures {
            apply_fixture(&mut connection, file)
                .await
                .map_err(|source| SnapshotsError::Fixture {
                    name: snapshot.name.clone(),
                    source: Box::new(source),
                })?;
        }
        finish(endpoint, &mut admin, connection, snapshot).await?;
        let _ = admin.close().await;
    }
    Ok(())
}

/// Makes the database a `from_test` snapshot's test left into a template: no new sessions, the ones its
/// test left (a process that just exited may still have one closing) ended, so it can be copied; then
/// settled like every template, so that copies only read from can be reused.
pub(crate) async fn seal(
    endpoint: &Endpoint,
    snapshot: &NamedSnapshot,
) -> Result<(), SnapshotsError> {
    let mut admin = connect(endpoint, "postgres", snapshot).await?;
    mark_template(&mut admin, snapshot).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
        )
        .bind(&snapshot.database)
        .fetch_one(&mut admin)
        .await
        .map_err(|e| sql_error(snapshot, &e))?;
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(SnapshotsError::Sql {
                name: snapshot.name.clone(),
                database: snapshot.database.clone(),
                message: format!("{left} sessions stayed connected to it after its test ended"),
            });
        }
        // A terminated backend is gone within milliseconds.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if endpoint.is_ours() {
        // Its test is gone: only we connect, for the settling, and then nobody again.
        let database = quote_ident(&snapshot.database);
        let allow = format!("ALTER DATABASE {database} WITH ALLOW_CONNECTIONS true");
        run(&mut admin, &allow, snapshot).await?;
        let connection = connect(endpoint, &snapshot.database, snapshot).await?;
        finish(endpoint, &mut admin, connection, snapshot).await?;
    }
    let _ = admin.close().await;
    Ok(())
}

/// Closes the snapshot's own `connection` and makes it a template. On our own cluster it is settled first
/// and checkpointed last, so that copies start from settled pages on disk and can be reused (an existing
/// server's role may not be allowed a `CHECKPOINT`, and nothing is reused there).
async fn finish(
    endpoint: &Endpoint,
    admin: &mut PgConnection,
    mut connection: PgConnection,
    snapshot: &NamedSnapshot,
) -> Result<(), SnapshotsError> {
    if endpoint.is_ours() {
        settle(&mut connection, snapshot).await?;
    }
    let _ = connection.close().await;
    mark_template(admin, snapshot).await?;
    match endpoint.is_ours() {
        true => run(admin, "CHECKPOINT", snapshot).await,
        false => Ok(()),
    }
}

/// [`crate::template::settle`]: reading a copy then dirties nothing, so reuse can hand it on.
async fn settle(
    connection: &mut PgConnection,
    snapshot: &NamedSnapshot,
) -> Result<(), SnapshotsError> {
    crate::template::settle(connection)
        .await
        .map_err(|e| sql_error(snapshot, &e))
}

async fn mark_template(
    admin: &mut PgConnection,
    snapshot: &NamedSnapshot,
) -> Result<(), SnapshotsError> {
    let sql = format!(
        "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
        quote_ident(&snapshot.database)
    );
    run(admin, &sql, snapshot).await
}

async fn connect(
    endpoint: &Endpoint,
    database: &str,
    snapshot: &NamedSnapshot,
) -> Result<PgConnection, SnapshotsError> {
    PgConnection::connect_with(&endpoint.connect_options(database))
        .await
        .map_err(|source| SnapshotsError::Connect {
            name: snapshot.name.clone(),
            source,
        })
}

async fn run(
    admin: &mut PgConnection,
    sql: &str,
    snapshot: &NamedSnapshot,
) -> Result<(), SnapshotsError> {
    sqlx::raw_sql(sql)
        .execute(&mut *admin)
        .await
        .map(drop)
        .map_err(|e| sql_error(snapshot, &e))
}

fn sql_error(snapshot: &NamedSnapshot, error: &sqlx::Error) -> SnapshotsError {
    SnapshotsError::Sql {
        name: snapshot.name.clone(),
        database: snapshot.database.clone(),
        message: server_message(error),
    }
}
