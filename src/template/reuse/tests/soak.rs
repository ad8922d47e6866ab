//! The soak: tests run `jobs` at a time, each taking a pooled database when there is one (as a run does),
//! reading everything a write could have left, then reading or writing at random, while another session
//! checkpoints over and over (writing dirty buffers out at every moment of the checks). Each kind of
//! write leaves a marker every later test looks for.

use tokio::task::JoinSet;

use super::lab::{Lab, World};
use super::{Sql, Step};
use crate::template::reuse::Verdict;

/// What any earlier write would show; empty when nothing does.
const MARKERS: &str = "SELECT concat_ws(',', \
    CASE WHEN (SELECT count(*) FROM markers) > 0 THEN 'marker row' END, \
    CASE WHEN (SELECT count(*) FROM items) <> 200 THEN 'items' END, \
    CASE WHEN (SELECT is_called FROM counter) THEN 'sequence' END, \
    CASE WHEN EXISTS (SELECT FROM pg_class WHERE relname LIKE 'marker%' AND relname <> 'markers') THEN 'table' END, \
    CASE WHEN coalesce(current_setting('pgtest.marker', true), '') <> '' THEN 'setting' END, \
    CASE WHEN EXISTS (SELECT FROM pg_largeobject_metadata) THEN 'large object' END, \
    CASE WHEN shobj_description((SELECT oid FROM pg_database WHERE datname = current_database()), 'pg_database') IS NOT NULL THEN 'comment' END)";

const WRITES: &[&[Step]] = &[
    &[Sql("INSERT INTO markers VALUES ('x')")],
    &[Sql("INSERT INTO markers VALUES ('x')"), Sql("CHECKPOINT")],
    &[Sql("SELECT nextval('counter')")],
    &[Sql("CREATE TABLE marker_table (x int)")],
    &[Sql("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET pgtest.marker = ''on''', current_database()); END $$")],
    &[Sql("SELECT lo_from_bytea(0, 'marker')")],
    &[Sql("DO $$ BEGIN EXECUTE format('COMMENT ON DATABASE %I IS ''marker''', current_database()); END $$")],
    &[Sql("DELETE FROM items WHERE id = 77")],
    &[Sql("BEGIN"), Sql("INSERT INTO markers VALUES ('x')"), Sql("ROLLBACK")],
];

#[derive(Debug, Default)]
pub(super) struct Report {
    pub(super) reused: usize,
    pub(super) writers: usize,
    pub(super) tests: usize,
}

/// One test's end: whether it got a reused database, whether it wrote, and what went wrong.
type Ended = (bool, bool, Option<String>);

/// Runs inside a [`tokio::task::LocalSet`] (sqlx's connection futures are not `Send` here).
pub(super) async fn run(lab: &Lab, tests: usize, jobs: usize) -> Report {
    let world = lab.world.clone();
    let checkpoints = tokio::task::spawn_local(checkpoint_forever(world.clone()));
    let mut random = 0x2545_f491_4f6c_dd1d_u64;
    let mut running: JoinSet<Ended> = JoinSet::new();
    let mut report = Report::default();
    let mut problems = Vec::new();
    for test in 0..tests {
        while running.len() >= jobs {
            tally(
                running.join_next().await.unwrap().unwrap(),
                &mut report,
                &mut problems,
            );
        }
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let write = random
            .is_multiple_of(2)
            .then(|| WRITES[(random >> 8) as usize % WRITES.len()]);
        running.spawn_local(one_test(world.clone(), format!("soak_{test}"), write));
    }
    while let Some(ended) = running.join_next().await {
        tally(ended.unwrap(), &mut report, &mut problems);
    }
    checkpoints.abort();
    lab.reuse.drop_idle().await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    report
}

fn tally(ended: Ended, report: &mut Report, problems: &mut Vec<String>) {
    let (reused, wrote, problem) = ended;
    report.tests += 1;
    report.reused += usize::from(reused);
    report.writers += usize::from(wrote);
    problems.extend(problem);
}

async fn one_test(world: World, name: String, write: Option<&'static [Step]>) -> Ended {
    let reused = world.reuse.take(&world.template, &name).await.is_some();
    if !reused {
        world.clone_database(&name).await;
    }
    let mut connection = world.connect(&name).await;
    let seen: String = sqlx::query_scalar(MARKERS)
        .fetch_one(&mut connection)
        .await
        .unwrap();
    drop(sqlx::Connection::close(connection).await);
    let mut problem = (!seen.is_empty()).then(|| format!("{name} (reused: {reused}) saw {seen}"));
    if let Some(steps) = write {
        world.try_steps(&name, steps).await.unwrap();
    }
    match world.reuse.check(&name).await {
        Verdict::Untouched if write.is_some() => {
            problem = Some(format!(
                "{name}: a write ({write:?}) was found untouched",
                write = steps_text(write)
            ));
            world.drop_database(&name).await;
        }
        Verdict::Untouched => world.reuse.give_back(&name),
        Verdict::Modified(_) => world.drop_database(&name).await,
    }
    (reused, write.is_some(), problem)
}

fn steps_text(steps: Option<&[Step]>) -> Vec<&'static str> {
    steps
        .unwrap_or_default()
        .iter()
        .map(|step| match step {
            Step::Sql(sql) | Step::CopyIn(sql, _) => *sql,
        })
        .collect()
}

async fn checkpoint_forever(world: World) {
    let mut connection = world.connect("postgres").await;
    loop {
        let _ = sqlx::raw_sql("CHECKPOINT").execute(&mut connection).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
