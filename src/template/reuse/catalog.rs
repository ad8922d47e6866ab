//! The server side of the reuse check, asked from the maintenance database (never from the test's own):
//! sessions still on the database, state held for it elsewhere (prepared transactions, replication slots,
//! subscriptions, dirty buffers), and a digest of the shared-catalog rows about it with the times statistics
//! were last reset and the server started.

use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;

/// The extension that shows which shared buffers are dirty; created in the maintenance database.
pub(crate) const BUFFERCACHE: &str = "CREATE EXTENSION IF NOT EXISTS pg_buffercache";

/// How long a finished test's sessions may take to leave before the database counts as modified.
const SESSIONS_DEADLINE: Duration = Duration::from_secs(2);

/// Lets sessions connect to database `name` again, or keeps them out: no superuser either (`datallowconn`).
pub(crate) async fn allow_connections(
    pool: &PgPool,
    name: &str,
    allowed: bool,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allowed}",
        super::quote_ident(name)
    );
    sqlx::raw_sql(&sql).execute(pool).await.map(drop)
}

/// The database's oid, or None if it does not exist.
pub(crate) async fn oid(pool: &PgPool, name: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT oid::int8 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// Waits until no session is on the database, one transaction per poll (the backend-status snapshot a
/// session reads lasts until its transaction ends); false if sessions are still there at the deadline.
pub(crate) async fn sessions_gone(pool: &PgPool, oid: i64) -> Result<bool, sqlx::Error> {
    let deadline = Instant::now() + SESSIONS_DEADLINE;
    loop {
        let sessions: i32 = sqlx::query_scalar("SELECT pg_stat_get_db_numbackends($1::oid)")
            .bind(oid)
            .fetch_one(pool)
            .await?;
        if sessions == 0 {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        // A session ends within milliseconds of its client; the poll gives the CPU to it meanwhile.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Rows inserted, updated or deleted in the database, as its statistics say so far. A count that grew
/// proves a write; one that did not proves nothing (statistics can lag, or be off for a session).
pub(crate) async fn rows_written(pool: &PgPool, oid: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT pg_stat_get_db_tuples_inserted($1::oid) + pg_stat_get_db_tuples_updated($1::oid) \
                + pg_stat_get_db_tuples_deleted($1::oid)",
    )
    .bind(oid)
    .fetch_one(pool)
    .await
}

/// What is held for the database outside its files: prepared transactions, replication slots,
/// subscriptions and dirty shared buffers. None if nothing is.
pub(crate) async fn held_elsewhere(
    pool: &PgPool,
    oid: i64,
    name: &str,
) -> Result<Option<String>, sqlx::Error> {
    let counts: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_prepared_xacts WHERE database::text = $2), \
                (SELECT count(*) FROM pg_replication_slots WHERE datoid = $1::oid), \
                (SELECT count(*) FROM pg_subscription WHERE subdbid = $1::oid), \
                (SELECT count(*) FROM pg_buffercache WHERE reldatabase = $1::oid AND isdirty)",
    )
    .bind(oid)
    .bind(name)
    .fetch_one(pool)
    .await?;
    let what = match counts {
        (0, 0, 0, 0) => return Ok(None),
        (prepared, 0, 0, 0) if prepared > 0 => "prepared transactions",
        (_, slots, 0, 0) if slots > 0 => "replication slots",
        (_, _, subscriptions, 0) if subscriptions > 0 => "subscriptions",
        _ => "dirty buffers",
    };
    Ok(Some(format!("it has {what}")))
}

/// The query whose one text value digests the shared-catalog rows about database `$1` (its `pg_database`
/// row without the frozen-xid columns, which only VACUUM moves, without its name, which reuse changes and
/// the check looks up by, and without `datallowconn`, which the check turns off and a hand-out on again;
/// its settings, comment, security labels and
/// shared dependencies), when the shared statistics were last reset (a crash resets them), when the
/// server started, and from 15 on when its own statistics were last reset. `server_major` also picks
/// where the checkpointer's reset time lives (17+).
pub(crate) fn digest_query(server_major: u32) -> String {
    let rows = |table: &str, condition: &str| {
        format!(
            "(SELECT string_agg(r::text, ',' ORDER BY r::text) FROM {table} r WHERE {condition})"
        )
    };
    let on_database = "r.objoid = $1::oid AND r.classoid = 'pg_database'::regclass";
    let mut parts = vec![
        "(SELECT (to_jsonb(d) - 'datname' - 'datallowconn' - 'datfrozenxid' - 'datminmxid')::text FROM pg_database d WHERE d.oid = $1::oid)"
            .to_owned(),
        rows("pg_db_role_setting", "r.setdatabase = $1::oid"),
        rows("pg_shdescription", on_database),
        rows("pg_shseclabel", on_database),
        rows("pg_shdepend", "r.dbid = $1::oid"),
        "(SELECT stats_reset::text FROM pg_stat_bgwriter)".to_owned(),
        "pg_postmaster_start_time()::text".to_owned(),
    ];
    // Before 15 the statistics collector sets a database's reset time when it first hears of it (after
    // any read), and hears of a reset asynchronously: neither says anything there.
    if server_major >= 15 {
        parts.push("pg_stat_get_db_stat_reset_time($1::oid)::text".to_owned());
    }
    if server_major >= 17 {
        parts.push("(SELECT stats_reset::text FROM pg_stat_checkpointer)".to_owned());
    }
    let listed: Vec<String> = parts
        .iter()
        .map(|part| format!("coalesce({part}, '-')"))
        .collect();
    format!("SELECT md5(concat_ws('|', {}))", listed.join(", "))
}

pub(crate) async fn digest(pool: &PgPool, query: &str, oid: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(query).bind(oid).fetch_one(pool).await
}
