//! The three ways a review found to get a write past the check, each tried against a real cluster: a
//! straggler logging in while its database is closed, a write to a table in another tablespace, and objects
//! that shadow the checker's own in the maintenance database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::{Connection, PgConnection};

use super::lab::{Lab, World};
use super::{Sql, Step};
use crate::cluster::privileges;
use crate::template::reuse::{Reuse, Verdict};
use crate::template::{self, MaintenancePool};

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
        let databases = MaintenancePool::connect(&lab.endpoint, lab.major, 2).await.unwrap();
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

#[test]
fn a_write_to_a_table_in_another_tablespace_is_seen() {
    let Some(lab) = Lab::boot(&[]) else {
        return;
    };
    // A location the server's account can reach and owns (a temporary directory is root's alone).
    let location = tempfile::tempdir().unwrap();
    let space = location.path().join("space");
    std::fs::create_dir(&space).unwrap();
    let traversable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(location.path(), traversable).unwrap();
    privileges::give_to(&space, &privileges::server_user().unwrap()).unwrap();
    lab.block_on(async {
        let location = space.display().to_string().replace('\'', "''");
        lab.sql("postgres", &format!("CREATE TABLESPACE lab_space LOCATION '{location}'")).await;
        let template = "spaced_template";
        lab.databases.create_from(&lab.template, template).await.unwrap();
        let mut connection = lab.connect(template).await;
        let table = "CREATE TABLE markers_elsewhere (what text) TABLESPACE lab_space; \
                     INSERT INTO markers_elsewhere SELECT 'row ' || g FROM generate_series(1, 100) g";
        sqlx::raw_sql(table).execute(&mut connection).await.unwrap();
        template::settle(&mut connection).await.unwrap();
        connection.close().await.unwrap();
        lab.sql("postgres", "CHECKPOINT").await;

        let cases: [(&str, &[Step], bool); 2] = [
            ("spaced_read", &[Sql("SELECT * FROM markers_elsewhere")], true),
            (
                "spaced_written",
                &[Sql("SET track_counts = off"), Sql("INSERT INTO markers_elsewhere VALUES ('x')")],
                false,
            ),
        ];
        let mut wrong = Vec::new();
        for (name, steps, untouched) in cases {
            lab.databases.create_from(template, name).await.unwrap();
            lab.reuse.prepared(template, name).await.unwrap();
            lab.run_steps(name, steps).await;
            // The write's buffer reaches its file under pg_tblspc: only the files can show it now.
            lab.sql("postgres", "CHECKPOINT").await;
            let verdict = lab.reuse.check(name).await;
            eprintln!("{name}: {verdict:?}");
            if (verdict == Verdict::Untouched) != untouched {
                wrong.push(format!("{name}: {verdict:?}"));
            }
            lab.drop_database(name).await;
        }
        lab.drop_database(template).await;
        lab.sql("postgres", "DROP TABLESPACE lab_space").await;
        assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
    });
    lab.shut_down();
}

/// Rounds whose straggler lingers in its login ([`straggle`]), and rounds whose straggler does not.
const LINGERING_ROUNDS: usize = 6;
const QUICK_ROUNDS: usize = 18;

/// A child a test left behind (outside its process group, so the kill missed it) that connects to the
/// database over and over and writes whenever it gets in, until `stop`; returns how many writes it made.
/// With `linger`, each login waits a second after the server's `datallowconn` check and before the
/// session is counted (`post_auth_delay`): the window a slow login has, held open so that every round
/// hits it.
async fn straggle(world: &World, name: &str, linger: bool, stop: &AtomicBool) -> usize {
    let mut options = world.endpoint.connect_options(name);
    if linger {
        options = options.options([("post_auth_delay", "1")]);
    }
    let mut writes = 0;
    while !stop.load(Ordering::Relaxed) {
        match PgConnection::connect_with(&options).await {
            Ok(mut connection) => {
                let insert = "INSERT INTO markers VALUES ('straggler')";
                if sqlx::raw_sql(insert).execute(&mut connection).await.is_ok() {
                    writes += 1;
                }
                let _ = connection.close().await;
            }
            // Turned away (or the database is gone): at once again, as a loop in a child would.
            Err(_) => tokio::task::yield_now().await,
        }
    }
    writes
}

/// The markers a database handed on holds (none, or a straggler's write got through).
async fn markers(world: &World, name: &str) -> i64 {
    let mut connection = world.connect(name).await;
    let count = sqlx::query_scalar("SELECT count(*) FROM markers")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    count
}

#[test]
fn a_straggler_logging_in_during_the_check_never_writes_to_a_database_handed_on() {
    let Some(lab) = Lab::boot(&[]) else {
        return;
    };
    lab.block_on(async {
        let (mut leaks, mut writes, mut handed_on) = (Vec::new(), 0, 0);
        for round in 0..LINGERING_ROUNDS + QUICK_ROUNDS {
            let linger = round < LINGERING_ROUNDS;
            let (name, next) = (format!("straggled_{round}"), format!("handed_{round}"));
            lab.clone_database(&name).await;
            let stop = AtomicBool::new(false);
            let judge = async {
                // A lingering straggler is past the server's datallowconn check well within this; a
                // quick one races the check from its first step.
                let head_start = if linger { 200 } else { round as u64 % 4 };
                tokio::time::sleep(Duration::from_millis(head_start)).await;
                let verdict = lab.reuse.check(&name).await;
                let taken = match verdict {
                    Verdict::Untouched => {
                        lab.reuse.give_back(&name);
                        lab.reuse.take(&lab.template, &next).await.is_some()
                    }
                    Verdict::Modified(_) => false,
                };
                stop.store(true, Ordering::Relaxed);
                (verdict, taken)
            };
            let (wrote, (verdict, taken)) = tokio::join!(straggle(&lab, &name, linger, &stop), judge);
            writes += wrote;
            eprintln!("round {round} (linger: {linger}): {verdict:?}, handed on: {taken}, straggler wrote {wrote}");
            if taken {
                handed_on += 1;
                let found = markers(&lab, &next).await;
                if found > 0 {
                    leaks.push(format!("round {round} (linger: {linger}): {found} write(s) handed on"));
                }
                lab.drop_database(&next).await;
            }
            lab.drop_database(&name).await;
        }
        eprintln!("{handed_on} handed on, the straggler wrote {writes} times");
        assert!(writes > 0, "the straggler never got in: the test tried nothing");
        assert!(leaks.is_empty(), "a straggler's write reached the next test:\n{}", leaks.join("\n"));
    });
    lab.shut_down();
}
