//! Ways a review found to get a write past the check, each tried against a real cluster: objects that
//! shadow the checker's own in the maintenance database.

use super::lab::Lab;
use super::{Sql, Step};
use crate::template::reuse::{Reuse, Verdict};
use crate::template::Databases;

/// A write that leaves no statistics behind (the check's quick look at the row counters misses it) and,
/// into a page that has room, no file grown either: only the dirty buffer shows it.
const QUIET_WRITE: &[Step] = &[
    Sql("SET track_counts = off"),
    Sql("INSERT INTO items (v) VALUES ('quiet')"),
];

/// A `pg_buffercache` that says no buffer is dirty, of the columns the check reads.
const EMPTY_BUFFERCACHE: &str =
    "AS SELECT NULL::oid AS reldatabase, NULL::int2 AS reltablespace, false AS isdirty WHERE false";

#[test]
fn objects_that_shadow_the_checkers_own_do_not_fool_it() {
    let Some(lab) = Lab::boot(&[]) else {
        return;
    };
    lab.block_on(async {
        // A schema named after the role comes first on the default search path ("$user", public), for
        // sessions already open too.
        let shadow = format!(
            "DO $$ BEGIN \
               EXECUTE format('CREATE SCHEMA %I', current_user); \
               EXECUTE format('CREATE VIEW %I.pg_buffercache {EMPTY_BUFFERCACHE}', current_user); \
             END $$"
        );
        lab.sql("postgres", &shadow).await;
        lab.clone_database("shadowed").await;
        lab.run_steps("shadowed", QUIET_WRITE).await;
        let in_user_schema = lab.reuse.check("shadowed").await;
        lab.drop_database("shadowed").await;

        // A search path that puts another schema before pg_catalog, for every new session of the role
        // (the checker's pool among them).
        let path = format!(
            "CREATE SCHEMA shadow; \
             CREATE VIEW shadow.pg_buffercache {EMPTY_BUFFERCACHE}; \
             CREATE FUNCTION shadow.pg_stat_get_db_numbackends(oid) RETURNS int LANGUAGE sql AS 'SELECT 0'; \
             DO $$ BEGIN \
               EXECUTE format('ALTER ROLE %I SET search_path = shadow, pg_catalog, public', current_user); \
             END $$"
        );
        lab.sql("postgres", &path).await;
        let databases = Databases::connect(&lab.endpoint, lab.major, 2).await.unwrap();
        let reuse = Reuse::start(databases.pool().clone(), lab.data_dir.clone())
            .await
            .unwrap();
        lab.databases.create_from(&lab.template, "searched").await.unwrap();
        reuse.record(&lab.template, "searched").await.unwrap();
        lab.run_steps("searched", QUIET_WRITE).await;
        let before_pg_catalog = reuse.check("searched").await;
        reuse.forget("searched");
        lab.drop_database("searched").await;
        databases.close().await;
        let fooled: Vec<String> = [
            ("a view in the \"$user\" schema", in_user_schema),
            ("a search path before pg_catalog", before_pg_catalog),
        ]
        .into_iter()
        .filter(|(_, verdict)| *verdict == Verdict::Untouched)
        .map(|(how, _)| format!("{how}: a write was found untouched"))
        .collect();
        assert!(fooled.is_empty(), "{}", fooled.join("\n"));
    });
    lab.shut_down();
}
