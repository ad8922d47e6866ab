//! The pool's bookkeeping, driven by hand: which job the worker gets, what a statement becomes.

use super::*;

fn create() -> TestStatement {
    TestStatement::Create("_sqlx_test_a".into())
}

fn drop_it() -> TestStatement {
    TestStatement::DropIfExists("_sqlx_test_a".into())
}

fn pool() -> Pool {
    let pool = Pool::new(2, " STRATEGY FILE_COPY");
    pool.worker_ready();
    pool
}

/// Runs `future` to its end on a runtime of its own.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn rewrite(pool: &Pool, statement: TestStatement) -> String {
    block_on(pool.rewrite(statement, Some(1)))
}

#[test]
fn a_test_gets_a_ready_copy_renamed_to_its_name() {
    let pool = pool();
    let Job::Make(first) = pool.next_job() else {
        panic!("keeps copies ready first")
    };
    let Job::Make(second) = pool.next_job() else {
        panic!("as many as tests run at once")
    };
    assert_eq!(pool.next_job(), Job::Wait);
    pool.made(first.clone(), Ok(()));
    pool.made(second, Ok(()));
    assert_eq!(
        rewrite(&pool, create()),
        format!("ALTER DATABASE \"{first}\" RENAME TO \"_sqlx_test_a\"")
    );
    assert!(
        matches!(pool.next_job(), Job::Make(_)),
        "a copy is made to replace it"
    );
    assert_eq!(pool.counts().ready, 1);
}

#[test]
fn with_no_copy_ready_the_test_gets_one_made_inline() {
    let pool = pool();
    assert_eq!(
        rewrite(&pool, create()),
        "CREATE DATABASE \"_sqlx_test_a\" TEMPLATE \"template1\" STRATEGY FILE_COPY"
    );
    assert_eq!(pool.counts().inline, 1);
}

#[test]
fn databases_handed_out_here_are_dropped_later_by_the_worker() {
    let pool = pool();
    let sqlx_drop = "drop database if exists \"_sqlx_test_a\";";
    assert_eq!(
        rewrite(&pool, drop_it()),
        sqlx_drop,
        "sqlx's cleanup before it creates"
    );
    rewrite(&pool, create());
    assert_eq!(rewrite(&pool, drop_it()), NOTHING);
    assert_eq!(
        rewrite(&pool, drop_it()),
        sqlx_drop,
        "a second drop is sqlx's own again"
    );
    pool.state().ready.extend(["x".to_owned(), "y".to_owned()]);
    assert_eq!(pool.next_job(), Job::Drop("_sqlx_test_a".into()));
    assert_eq!(pool.counts().deferred_drops, 1);
}

#[test]
fn a_name_asked_for_again_waits_for_its_drop() {
    let pool = std::sync::Arc::new(pool());
    pool.break_with("no copies ahead in this test".into());
    rewrite(&pool, create());
    rewrite(&pool, drop_it());
    block_on(async {
        let again = tokio::spawn({
            let pool = std::sync::Arc::clone(&pool);
            async move { pool.rewrite(create(), Some(1)).await }
        });
        tokio::task::yield_now().await;
        assert!(!again.is_finished(), "the old database still exists");
        assert_eq!(pool.next_job(), Job::Drop("_sqlx_test_a".into()));
        tokio::task::yield_now().await;
        assert!(!again.is_finished(), "the old database is being dropped");
        pool.state().dropping.clear();
        pool.dropped.notify_waiters();
        let sql = again.await.unwrap();
        assert!(sql.starts_with("CREATE DATABASE \"_sqlx_test_a\""), "{sql}");
    });
}

#[test]
fn workers_are_added_with_jobs_and_share_the_drops() {
    assert_eq!(Pool::new(JOBS_PER_WORKER, "").workers(), 1);
    let pool = Pool::new(4 * JOBS_PER_WORKER, "");
    assert_eq!(pool.workers(), 4);
    pool.worker_ready();
    pool.state().broken = Some("no copies in this test".into());
    pool.state()
        .used
        .extend(["_sqlx_test_a".to_owned(), "_sqlx_test_b".to_owned()]);
    // Two workers each take a drop; a create of either name waits until its own is done.
    assert_eq!(pool.next_job(), Job::Drop("_sqlx_test_a".into()));
    assert_eq!(pool.next_job(), Job::Drop("_sqlx_test_b".into()));
    let pool = std::sync::Arc::new(pool);
    block_on(async {
        let again = tokio::spawn({
            let pool = std::sync::Arc::clone(&pool);
            async move { pool.until_dropped("_sqlx_test_a").await }
        });
        pool.state().dropping.remove("_sqlx_test_b");
        pool.dropped.notify_waiters();
        tokio::task::yield_now().await;
        assert!(
            !again.is_finished(),
            "the other worker's drop is not this one"
        );
        pool.state().dropping.remove("_sqlx_test_a");
        pool.dropped.notify_waiters();
        again.await.unwrap();
    });
}

#[test]
fn a_waiting_create_puts_its_drop_before_new_copies() {
    let pool = pool();
    rewrite(&pool, create());
    rewrite(&pool, drop_it());
    assert!(matches!(pool.next_job(), Job::Make(_)), "copies come first");
    pool.state().awaited.insert("_sqlx_test_a".into());
    assert_eq!(pool.next_job(), Job::Drop("_sqlx_test_a".into()));
    assert!(matches!(pool.next_job(), Job::Make(_)));
    assert_eq!(
        pool.put_back("_sqlx_test_a", true),
        None,
        "an awaited drop does not wait for sessions to end"
    );
}

#[test]
fn used_databases_twice_as_many_as_the_copies_kept_ready_are_dropped_first() {
    let pool = pool();
    let used = |n: usize| format!("_sqlx_test_{n}");
    pool.state().used.extend((0..3).map(used));
    assert!(
        matches!(pool.next_job(), Job::Make(_)),
        "below the bound, copies come first"
    );
    pool.state().used.push_back(used(3));
    assert_eq!(
        pool.next_job(),
        Job::Drop(used(0)),
        "a copy is wanted, but four used databases wait"
    );
    assert!(
        matches!(pool.next_job(), Job::Make(_)),
        "below the bound again"
    );
}

#[test]
fn copies_that_keep_failing_stop_the_making_not_the_tests() {
    let pool = pool();
    for attempt in 1..=COPY_ATTEMPTS {
        assert!(pool.broken().is_none(), "attempt {attempt}");
        let Job::Make(name) = pool.next_job() else {
            panic!("attempt {attempt} makes a copy")
        };
        let pause = pool.made(name, Err("no space left".into()));
        assert_eq!(pause, attempt < COPY_ATTEMPTS, "attempt {attempt}");
        pool.state().making = 0;
    }
    assert_eq!(pool.broken().as_deref(), Some("no space left"));
    assert_eq!(pool.next_job(), Job::Wait);
    assert!(rewrite(&pool, create()).starts_with("CREATE DATABASE"));
    pool.stop();
    assert_eq!(pool.next_job(), Job::Stop);
}

#[test]
fn a_copy_that_works_again_clears_the_failures() {
    let pool = pool();
    for _ in 1..COPY_ATTEMPTS {
        let Job::Make(name) = pool.next_job() else {
            panic!()
        };
        pool.made(name, Err("template1 is being accessed".into()));
    }
    let Job::Make(name) = pool.next_job() else {
        panic!()
    };
    assert!(!pool.made(name, Ok(())));
    let Job::Make(name) = pool.next_job() else {
        panic!()
    };
    pool.made(name, Err("template1 is being accessed".into()));
    assert!(pool.broken().is_none());
}

#[test]
fn without_a_worker_drops_go_to_the_server_and_nothing_waits() {
    let sqlx_drop = "drop database if exists \"_sqlx_test_a\";";
    for worker_never_came in [false, true] {
        let pool = Pool::new(2, " STRATEGY FILE_COPY");
        if worker_never_came {
            pool.break_with("could not connect".into());
            pool.worker_gone();
        }
        rewrite(&pool, create());
        assert_eq!(rewrite(&pool, drop_it()), sqlx_drop, "{worker_never_came}");
        let again = block_on(async {
            tokio::time::timeout(Duration::from_secs(10), pool.rewrite(create(), Some(1))).await
        });
        assert!(
            again.is_ok(),
            "a create of the same name waited ({worker_never_came})"
        );
        assert_eq!(pool.counts().deferred_drops, 0);
    }
}

#[test]
fn a_worker_that_goes_releases_the_creates_waiting_for_it() {
    let pool = std::sync::Arc::new(pool());
    rewrite(&pool, create());
    assert_eq!(rewrite(&pool, drop_it()), NOTHING);
    block_on(async {
        let again = tokio::spawn({
            let pool = std::sync::Arc::clone(&pool);
            async move { pool.rewrite(create(), Some(1)).await }
        });
        tokio::task::yield_now().await;
        assert!(!again.is_finished(), "the worker would drop it first");
        pool.worker_gone();
        let again = tokio::time::timeout(Duration::from_secs(10), again).await;
        assert!(again.is_ok(), "still waiting for a worker that is gone");
    });
}

#[test]
fn a_drop_waits_for_closing_sessions_but_not_for_ever() {
    let pool = pool();
    rewrite(&pool, create());
    rewrite(&pool, drop_it());
    pool.state().ready.extend(["x".to_owned(), "y".to_owned()]);
    assert_eq!(pool.next_job(), Job::Drop("_sqlx_test_a".into()));
    assert_eq!(
        pool.put_back("_sqlx_test_a", false),
        None,
        "no session: dropped now"
    );
    pool.state().used.push_back("_sqlx_test_a".into());
    for attempt in 1..=DROP_ATTEMPTS {
        assert_eq!(pool.next_job(), Job::Drop("_sqlx_test_a".into()));
        assert_eq!(
            pool.put_back("_sqlx_test_a", true),
            Some(true),
            "attempt {attempt}: put back, and nothing else to do"
        );
    }
    assert_eq!(pool.next_job(), Job::Drop("_sqlx_test_a".into()));
    assert_eq!(
        pool.put_back("_sqlx_test_a", true),
        None,
        "then dropped WITH (FORCE)"
    );
}

#[test]
fn a_drop_waits_a_moment_for_a_worker_still_connecting() {
    let pool = std::sync::Arc::new(Pool::new(2, " STRATEGY FILE_COPY"));
    rewrite(&pool, create());
    block_on(async {
        let dropping = tokio::spawn({
            let pool = std::sync::Arc::clone(&pool);
            async move { pool.rewrite(drop_it(), Some(1)).await }
        });
        tokio::task::yield_now().await;
        assert!(!dropping.is_finished(), "the worker may connect any moment");
        pool.worker_ready();
        assert_eq!(dropping.await.unwrap(), NOTHING);
    });
}

/// Against a real cluster: sqlx's create and drop as a test binary sends them, through a pool with reuse.
mod reuse {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::template::maintenance::clone_strategy;
    use crate::template::reuse::tests::lab::{Lab, World};
    use crate::template::MaintenancePool;

    /// The process a test binary would be.
    const BINARY: Option<u32> = Some(7);

    /// Polls `done` until it holds, failing after ten seconds.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn oid_of(world: &World, name: &str) -> Option<i64> {
        let mut connection = world.connect("postgres").await;
        let oid = sqlx::query_scalar("SELECT oid::int8 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut connection)
            .await
            .unwrap();
        sqlx::Connection::close(connection).await.unwrap();
        oid
    }

    /// One `#[sqlx::test]`: its database created (from a copy made ahead), `sql` run in it after checking
    /// that no earlier test's row is there, then dropped by `dropper`; its database's oid, once the worker
    /// has dropped or handed it on.
    async fn one_test(
        world: &World,
        pool: &Pool,
        name: &str,
        sql: &str,
        dropper: Option<u32>,
    ) -> i64 {
        until("a copy is ready", || !pool.state().ready.is_empty()).await;
        let create = pool
            .rewrite(TestStatement::Create(name.into()), BINARY)
            .await;
        world.sql("postgres", &create).await;
        let oid = oid_of(world, name)
            .await
            .expect("the test's database exists");
        world
            .sql(
                name,
                "DO $$ BEGIN ASSERT (SELECT count(*) FROM markers) = 0; END $$",
            )
            .await;
        world.sql(name, sql).await;
        let drop = pool
            .rewrite(TestStatement::DropIfExists(name.into()), dropper)
            .await;
        assert_eq!(drop, NOTHING);
        until("the worker is done with it", || {
            let state = pool.state();
            state.used.is_empty() && state.dropping.is_empty()
        })
        .await;
        assert_eq!(oid_of(world, name).await, None, "dropped or renamed");
        oid
    }

    #[test]
    fn an_untouched_database_comes_back_and_a_written_or_foreign_one_does_not() {
        let Some(lab) = Lab::boot(&[]) else {
            return;
        };
        let world = lab.world.clone();
        lab.block_on(async move {
            let pool = Arc::new(Pool::new(1, clone_strategy(world.major)));
            pool.reuse_with(world.reuse.clone());
            pool.worker_ready();
            let databases = MaintenancePool::connect(&world.endpoint, world.major, 1)
                .await
                .unwrap();
            let reuse = Some(world.reuse.clone());
            let databases = TestDatabases::over(databases, world.endpoint.clone(), reuse);
            let worker = tokio::spawn({
                let pool = Arc::clone(&pool);
                async move {
                    pool.work(&databases).await;
                    databases.close().await;
                }
            });
            let read = "SELECT * FROM items";
            let first = one_test(&world, &pool, "_sqlx_test_1", read, BINARY).await;
            let second = one_test(&world, &pool, "_sqlx_test_2", read, BINARY).await;
            assert_eq!(second, first, "a read-only test's database is handed on");
            let write = "INSERT INTO markers VALUES ('written')";
            let third = one_test(&world, &pool, "_sqlx_test_3", write, BINARY).await;
            assert_eq!(third, first, "handed on once more");
            let fourth = one_test(&world, &pool, "_sqlx_test_4", read, BINARY).await;
            assert_ne!(fourth, third, "a written database is dropped");
            // Dropped by another process (sqlx's cleanup before a create, of a failed test's database).
            let fifth = one_test(&world, &pool, "_sqlx_test_5", read, Some(8)).await;
            assert_eq!(fifth, fourth);
            let sixth = one_test(&world, &pool, "_sqlx_test_6", read, BINARY).await;
            assert_ne!(
                sixth, fifth,
                "only its own binary's drop hands a database on"
            );
            assert_eq!(pool.counts().reused, 3);
            pool.stop();
            worker.await.unwrap();
        });
        lab.shut_down();
    }
}
