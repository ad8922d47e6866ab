//! The server side of the reuse check, asked from the maintenance database (never from the test's own):
//! sessions still on the database, state held for it elsewhere (prepared transactions, replication slots,
//! subscriptions, dirty buffers), and a digest of the shared-catalog rows about it with the times statistics
//! were last reset and the server started.
//!
//! Tests reach the maintenance database as superusers, so every name the check's SQL uses is qualified:
//! PostgreSQL's own functions, views, types and operators as `pg_catalog.` (a function, view, type or
//! operator is found by search path, and a search path can put another schema before pg_catalog, set for
//! the role or the database, or by a login event trigger), and `pg_buffercache` in a schema of its own
//! ([`BUFFERCACHE_SCHEMA`]). A test can still change these objects on purpose; it cannot shadow them by
//! accident.

use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;

/// `=` as PostgreSQL's own operator, not one a schema earlier on the search path defines.
const EQ: &str = "OPERATOR(pg_catalog.=)";

/// Where the extension that shows which shared buffers are dirty is created, in the maintenance database:
/// a schema no search path names, so nothing a test creates in `public` or in its role's schema shadows it.
const BUFFERCACHE_SCHEMA: &str = "pgtest_check";

/// Creates `pg_buffercache` (unless there), in [`BUFFERCACHE_SCHEMA`], and returns its view's qualified
/// name: where the extension is, which is elsewhere if an earlier version of ours created it there.
pub(crate) async fn buffercache(pool: &PgPool) -> Result<String, sqlx::Error> {
    let create = format!(
        "CREATE SCHEMA IF NOT EXISTS {BUFFERCACHE_SCHEMA}; \
         CREATE EXTENSION IF NOT EXISTS pg_buffercache WITH SCHEMA {BUFFERCACHE_SCHEMA}"
    );
    sqlx::raw_sql(&create).execute(pool).await?;
    let schema: String = sqlx::query_scalar(&format!(
        "SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e \
         JOIN pg_catalog.pg_namespace n ON n.oid {EQ} e.extnamespace \
         WHERE e.extname {EQ} 'pg_buffercache'"
    ))
    .fetch_one(pool)
    .await?;
    Ok(format!("{}.pg_buffercache", super::quote_ident(&schema)))
}

/// The server's major version and the name of its directories in each tablespace (`PG_<major>_<catalog
/// version>`, PostgreSQL's `TABLESPACE_VERSION_DIRECTORY`).
pub(crate) async fn version(pool: &PgPool) -> Result<(u32, String), sqlx::Error> {
    let (version, catalog): (i32, i32) = sqlx::query_as(
        "SELECT pg_catalog.current_setting('server_version_num')::pg_catalog.int4, \
                (SELECT catalog_version_no FROM pg_catalog.pg_control_system())",
    )
    .fetch_one(pool)
    .await?;
    let major = version.max(0) as u32 / 10000;
    Ok((major, format!("PG_{major}_{catalog}")))
}

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

/// Keeps every session out of database `name` (oid `oid`) from now on, superuser or not, and returns once
/// no session is on it and none is logging in; an error if one stays (5 s) or the server refuses.
///
/// Why closing (`ALLOW_CONNECTIONS false`) is not enough alone: a login reads `datallowconn` and only at the
/// end of its start shows in the statistics that count a database's sessions, so one under way when the
/// database is closed is counted by nothing, can write after the check, and leave before the hand-out.
/// What makes the rename below a sound fence, in PostgreSQL 13 to 18 alike (`InitPostgres`,
/// `RenameDatabase`): a login takes its database object's lock (`RowExclusiveLock`) before it reads
/// `datallowconn`, lists itself as a backend of the database (its `ProcArray` entry) right after, and keeps
/// the lock until its start commits. `ALTER DATABASE … RENAME` takes that object's `AccessExclusiveLock`, kept until commit, so it
/// waits for every login under way, and then fails if any backend is on the database
/// (`CountOtherDBBackends`, which first waits up to 5 s for them to leave). Renamed and renamed back in
/// the transaction that closes the database, so when it commits no session is on it, every login that
/// took the lock before has ended, and every later one waits for the commit and then reads `datallowconn`
/// false (taking a lock makes a session read the catalog changes committed meanwhile). What PostgreSQL
/// lets past `datallowconn` is not kept out: autovacuum workers (off on our clusters unless `settings`
/// turn it on) and background workers that ask to.
pub(crate) async fn close(pool: &PgPool, name: &str, oid: i64) -> Result<(), sqlx::Error> {
    let name = super::quote_ident(name);
    // A name no test uses; a clash only makes the rename fail, and the database count as modified.
    let fence = format!("pgtest_fence_{oid}");
    let sql = format!(
        // One query of three statements: PostgreSQL runs them as one transaction.
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false; \
         ALTER DATABASE {name} RENAME TO {fence}; \
         ALTER DATABASE {fence} RENAME TO {name}"
    );
    sqlx::raw_sql(&sql).execute(pool).await.map(drop)
}

/// The database's oid, or None if it does not exist.
pub(crate) async fn oid(pool: &PgPool, name: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT oid::pg_catalog.int8 FROM pg_catalog.pg_database WHERE datname {EQ} $1"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await
}

/// Waits until no session is on the database, one transaction per poll (the backend-status snapshot a
/// session reads lasts until its transaction ends); false if sessions are still there at the deadline.
pub(crate) async fn sessions_gone(pool: &PgPool, oid: i64) -> Result<bool, sqlx::Error> {
    let deadline = Instant::now() + SESSIONS_DEADLINE;
    loop {
        let sessions: i32 =
            sqlx::query_scalar("SELECT pg_catalog.pg_stat_get_db_numbackends($1::pg_catalog.oid)")
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
    let (inserted, updated, deleted): (i64, i64, i64) = sqlx::query_as(
        "SELECT pg_catalog.pg_stat_get_db_tuples_inserted($1::pg_catalog.oid), \
                pg_catalog.pg_stat_get_db_tuples_updated($1::pg_catalog.oid), \
                pg_catalog.pg_stat_get_db_tuples_deleted($1::pg_catalog.oid)",
    )
    .bind(oid)
    .fetch_one(pool)
    .await?;
    Ok(inserted.saturating_add(updated).saturating_add(deleted))
}

/// What is held for the database outside its files: prepared transactions, replication slots,
/// subscriptions and dirty shared buffers (`buffercache`: the view's qualified name). None if nothing is.
pub(crate) async fn held_elsewhere(
    pool: &PgPool,
    buffercache: &str,
    oid: i64,
    name: &str,
) -> Result<Option<String>, sqlx::Error> {
    let count = "pg_catalog.count(*)";
    let this = format!("{EQ} $1::pg_catalog.oid");
    let counts: (i64, i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT (SELECT {count} FROM pg_catalog.pg_prepared_xacts \
                 WHERE database::pg_catalog.text {EQ} $2), \
                (SELECT {count} FROM pg_catalog.pg_replication_slots WHERE datoid {this}), \
                (SELECT {count} FROM pg_catalog.pg_subscription WHERE subdbid {this}), \
                (SELECT {count} FROM {buffercache} WHERE reldatabase {this} AND isdirty)"
    ))
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
    let text = "pg_catalog.text";
    let this = format!("{EQ} $1::pg_catalog.oid");
    let rows = |table: &str, condition: &str| {
        format!(
            "(SELECT pg_catalog.string_agg(r::{text}, ',' ORDER BY r::{text}) \
              FROM pg_catalog.{table} r WHERE {condition})"
        )
    };
    let on_database = format!(
        "r.objoid {this} AND r.classoid {EQ} 'pg_catalog.pg_database'::pg_catalog.regclass"
    );
    let left_out = "'{datname,datallowconn,datfrozenxid,datminmxid}'::pg_catalog.text[]";
    let mut parts = vec![
        format!(
            "(SELECT (pg_catalog.to_jsonb(d) OPERATOR(pg_catalog.-) {left_out})::{text} \
              FROM pg_catalog.pg_database d WHERE d.oid {this})"
        ),
        rows("pg_db_role_setting", &format!("r.setdatabase {this}")),
        rows("pg_shdescription", &on_database),
        rows("pg_shseclabel", &on_database),
        rows("pg_shdepend", &format!("r.dbid {this}")),
        format!("(SELECT stats_reset::{text} FROM pg_catalog.pg_stat_bgwriter)"),
        format!("pg_catalog.pg_postmaster_start_time()::{text}"),
    ];
    // Before 15 the statistics collector sets a database's reset time when it first hears of it (after
    // any read), and hears of a reset asynchronously: neither says anything there.
    if server_major >= 15 {
        parts.push(format!(
            "pg_catalog.pg_stat_get_db_stat_reset_time($1::pg_catalog.oid)::{text}"
        ));
    }
    if server_major >= 17 {
        parts.push(format!(
            "(SELECT stats_reset::{text} FROM pg_catalog.pg_stat_checkpointer)"
        ));
    }
    let listed: Vec<String> = parts
        .iter()
        .map(|part| format!("coalesce({part}, '-')"))
        .collect();
    format!(
        "SELECT pg_catalog.md5(pg_catalog.concat_ws('|', {}))",
        listed.join(", ")
    )
}

pub(crate) async fn digest(pool: &PgPool, query: &str, oid: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(query).bind(oid).fetch_one(pool).await
}
