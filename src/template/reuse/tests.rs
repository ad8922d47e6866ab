//! The correctness matrix against a real cluster: every kind of change a test can make leaves its database
//! [`Verdict::Modified`], reading leaves it [`Verdict::Untouched`]; a restart of the server is a change;
//! and a soak of random readers and writers beside concurrent checkpoints never lets a write reach a later
//! test.

mod holes;
pub(crate) mod lab;
mod soak;

use lab::Lab;
use sqlx::{Connection, PgConnection};

use super::Verdict;

/// A test's statements, run in its own database one at a time; `COPY` rows go in by the copy protocol.
#[derive(Clone, Copy)]
pub(crate) enum Step {
    Sql(&'static str),
    CopyIn(&'static str, &'static str),
}
use Step::{CopyIn, Sql};

/// The changes, each of which must make the next test get a fresh database.
const CHANGES: &[(&str, &[Step])] = &[
    ("insert", &[Sql("INSERT INTO items (v) VALUES ('new')")]),
    ("update", &[Sql("UPDATE items SET v = 'changed' WHERE id = 1")]),
    ("delete", &[Sql("DELETE FROM items WHERE id = 2")]),
    (
        "aborted insert",
        &[Sql("BEGIN"), Sql("INSERT INTO items (v) VALUES ('gone')"), Sql("ROLLBACK")],
    ),
    (
        "aborted update",
        &[Sql("BEGIN"), Sql("UPDATE items SET v = 'gone'"), Sql("ROLLBACK")],
    ),
    (
        "aborted delete",
        &[Sql("BEGIN"), Sql("DELETE FROM items"), Sql("ROLLBACK")],
    ),
    ("truncate", &[Sql("TRUNCATE items")]),
    ("create table", &[Sql("CREATE TABLE other (x int)")]),
    ("alter table", &[Sql("ALTER TABLE items ADD COLUMN w int")]),
    ("create index", &[Sql("CREATE INDEX ON items (v)")]),
    ("nextval", &[Sql("SELECT nextval('counter')")]),
    ("setval", &[Sql("SELECT setval('counter', 42)")]),
    ("nextval unlogged", &[Sql("SELECT nextval('loose_counter')")]),
    ("setval unlogged", &[Sql("SELECT setval('loose_counter', 7)")]),
    ("large object", &[Sql("SELECT lo_from_bytea(0, 'blob')")]),
    ("copy", &[CopyIn("COPY items (v) FROM STDIN", "copied\n")]),
    (
        "temporary table",
        &[Sql("CREATE TEMP TABLE scratch (x int)"), Sql("INSERT INTO scratch VALUES (1)")],
    ),
    ("unlogged table", &[Sql("INSERT INTO loose (v) VALUES ('new')")]),
    ("vacuum", &[Sql("VACUUM items")]),
    ("vacuum full", &[Sql("VACUUM FULL items")]),
    ("analyze", &[Sql("ANALYZE items")]),
    (
        "alter database set",
        &[Sql("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET work_mem = ''8MB''', current_database()); END $$")],
    ),
    (
        "alter role in database set",
        &[Sql("DO $$ BEGIN EXECUTE format('ALTER ROLE current_user IN DATABASE %I SET work_mem = ''8MB''', current_database()); END $$")],
    ),
    (
        "comment on database",
        &[Sql("DO $$ BEGIN EXECUTE format('COMMENT ON DATABASE %I IS ''seen''', current_database()); END $$")],
    ),
    (
        "grant on database",
        &[Sql("DO $$ BEGIN EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', current_database()); END $$")],
    ),
    ("statistics reset", &[Sql("SELECT pg_stat_reset()")]),
    (
        "writes without statistics",
        &[Sql("SET track_counts = off"), Sql("INSERT INTO items (v) VALUES ('quiet')")],
    ),
    (
        "prepared transaction",
        &[Sql("BEGIN"), Sql("SELECT count(*) FROM items"), Sql("PREPARE TRANSACTION 'held'")],
    ),
];

/// Changes that, before PostgreSQL 15, may leave nothing but statistics, which reach the server's view
/// asynchronously there (over UDP to the statistics collector): a statistics reset, and a `VACUUM` of an
/// already frozen table (the template's are), whose only trace on 13 is its `last_vacuum`. Like earlier
/// reads, which reuse never hides, a later test sees them only in the statistics views. From 15 on each
/// must be seen.
const STATISTICS_ONLY_BEFORE_15: &[&str] = &["statistics reset", "vacuum"];

/// Reads, each of which must leave the database to the next test.
const READS: &[(&str, &[Step])] = &[
    ("nothing", &[]),
    (
        "select",
        &[Sql("SELECT * FROM items"), Sql("SELECT * FROM loose")],
    ),
    (
        "index scan",
        &[
            Sql("SET enable_seqscan = off"),
            Sql("SELECT * FROM items WHERE id = 3"),
        ],
    ),
    (
        "catalogs",
        &[Sql(
            "SELECT count(*) FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid",
        )],
    ),
    (
        "sequence read",
        &[Sql("SELECT last_value, is_called FROM counter")],
    ),
    (
        "large object read",
        &[Sql("SELECT count(*) FROM pg_largeobject_metadata")],
    ),
    (
        "read transaction",
        &[
            Sql("BEGIN"),
            Sql("SELECT count(*) FROM items"),
            Sql("COMMIT"),
        ],
    ),
    ("xid assigned", &[Sql("SELECT txid_current()")]),
    (
        "explain analyze",
        &[Sql("EXPLAIN ANALYZE SELECT * FROM items ORDER BY v")],
    ),
    ("failed statement", &[Sql("SELECT * FROM missing_table")]),
    (
        "statistics views",
        &[Sql("SELECT * FROM pg_stat_user_tables")],
    ),
];

#[test]
fn every_change_is_seen_and_reads_are_not() {
    let Some(lab) = Lab::boot(&[("max_prepared_transactions", "4")]) else {
        return;
    };
    lab.block_on(async {
        let mut wrong = Vec::new();
        let cases = CHANGES.iter().chain(READS).enumerate();
        // Each case twice: as the test left it, and with its buffers written out by a checkpoint first
        // (then the files must show what the buffers no longer do).
        for ((round, (label, steps)), flushed) in cases.flat_map(|c| [(c, false), (c, true)]) {
            let expect_untouched = READS.iter().any(|(read, _)| read == label);
            let name = format!("matrix_{round}_{flushed}");
            lab.clone_database(&name).await;
            lab.run_steps(&name, steps).await;
            if flushed {
                lab.sql("postgres", "CHECKPOINT").await;
            }
            let verdict = lab.reuse.check(&name).await;
            eprintln!("{label} (flushed: {flushed}): {verdict:?}");
            let either = lab.major < 15 && STATISTICS_ONLY_BEFORE_15.contains(label);
            if (verdict == Verdict::Untouched) != expect_untouched && !either {
                wrong.push(format!("{label} (flushed: {flushed}): {verdict:?}"));
            }
            if *label == "prepared transaction" {
                lab.sql(&name, "ROLLBACK PREPARED 'held'").await;
            }
            lab.drop_database(&name).await;
        }
        assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
    });
    lab.shut_down();
}

#[test]
fn a_server_restart_between_clone_and_check_is_a_change() {
    let Some(mut lab) = Lab::boot(&[]) else {
        return;
    };
    let untouched = lab.block_on(async {
        lab.clone_database("before_restart").await;
        lab.run_steps("before_restart", &[Sql("SELECT * FROM items")])
            .await;
        lab.reuse.check("before_restart").await
    });
    assert_eq!(untouched, Verdict::Untouched, "the control case");
    lab.block_on(lab.clone_database("across_restart"));
    lab.block_on(lab.run_steps("across_restart", &[Sql("SELECT * FROM items")]));
    lab.restart();
    let verdict = lab.block_on(lab.reuse.check("across_restart"));
    assert!(matches!(verdict, Verdict::Modified(_)), "{verdict:?}");
    lab.block_on(async {
        lab.clone_database("across_crash").await;
        lab.run_steps("across_crash", &[Sql("SELECT * FROM items")])
            .await;
        lab.crash_a_backend().await;
        let verdict = lab.reuse.check("across_crash").await;
        assert!(matches!(verdict, Verdict::Modified(_)), "{verdict:?}");
    });
    lab.shut_down();
}

#[test]
fn nothing_can_connect_to_a_checked_database_until_it_is_handed_out() {
    let Some(lab) = Lab::boot(&[]) else {
        return;
    };
    lab.block_on(async {
        lab.clone_database("checked").await;
        lab.run_steps("checked", &[Sql("SELECT * FROM items")])
            .await;
        assert_eq!(lab.reuse.check("checked").await, Verdict::Untouched);
        lab.reuse.give_back("checked");
        // A straggler of the test (a child it left behind, say) that connects after the check would write
        // to what the next test gets: it is turned away, superuser as it is.
        let late = PgConnection::connect_with(&lab.endpoint.connect_options("checked")).await;
        let refused = late.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            refused.contains("not currently accepting connections"),
            "a connection after the check: {refused:?}"
        );
        lab.reuse
            .take(&lab.template, "next")
            .await
            .expect("handed out");
        lab.run_steps("next", &[Sql("SELECT * FROM items")]).await;
        assert_eq!(
            lab.reuse.check("next").await,
            Verdict::Untouched,
            "a rename and a re-allow change nothing the check sees"
        );

        // A database found modified is left open, for whoever drops or inspects it.
        lab.clone_database("written").await;
        lab.run_steps("written", &[Sql("SELECT nextval('counter')")])
            .await;
        assert!(matches!(
            lab.reuse.check("written").await,
            Verdict::Modified(_)
        ));
        lab.run_steps("written", &[Sql("SELECT * FROM items")])
            .await;
        lab.drop_database("written").await;
        lab.drop_database("next").await;
    });
    lab.shut_down();
}

#[test]
fn a_soak_of_readers_writers_and_checkpoints_never_leaks_a_write() {
    let Some(lab) = Lab::boot(&[]) else {
        return;
    };
    let local = tokio::task::LocalSet::new();
    let report = lab.block_on(local.run_until(soak::run(&lab, 160, 4)));
    assert!(report.reused > 20, "reads were reused: {report:?}");
    assert!(report.writers > 20, "writes were tried: {report:?}");
    lab.shut_down();
}
