//! A real cluster for the reuse tests: booted the way a run boots one, with a template prepared by
//! [`crate::template::prepare`] from a small schema (logged and unlogged tables and sequences), which
//! template1 gets too; the gateway's pool is tried on it as well.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use super::Step;
use crate::cluster::binaries::{self, SearchPlaces};
use crate::cluster::{privileges, storage, Cluster, ClusterSpec, Endpoint};
use crate::config::{DatabaseSpec, Origin, PostgresChoice, Setting};
use crate::template::reuse::Reuse;
use crate::template::{self, MaintenancePool};

const SCHEMA: &str = "
CREATE TABLE items (id serial PRIMARY KEY, v text);
INSERT INTO items (v) SELECT 'row ' || g FROM generate_series(1, 200) g;
CREATE UNLOGGED TABLE loose (id serial PRIMARY KEY, v text);
INSERT INTO loose (v) SELECT 'row ' || g FROM generate_series(1, 50) g;
CREATE SEQUENCE counter;
CREATE SEQUENCE loose_counter;
DO $$ BEGIN
  IF current_setting('server_version_num')::int >= 150000 THEN
    EXECUTE 'ALTER SEQUENCE loose_counter SET UNLOGGED';
  END IF;
END $$;
CREATE TABLE markers (what text);
";

/// What the async parts share (cheap to clone into tasks).
#[derive(Clone)]
pub(crate) struct World {
    pub(crate) endpoint: Endpoint,
    pub(crate) databases: MaintenancePool,
    pub(crate) reuse: Reuse,
    pub(crate) template: String,
    pub(crate) major: u32,
    /// The cluster's data directory (another [`Reuse`] can be started on it).
    pub(crate) data_dir: std::path::PathBuf,
}

pub(crate) struct Lab {
    runtime: tokio::runtime::Runtime,
    cluster: Option<Cluster>,
    pub(crate) world: World,
    _migrations: tempfile::TempDir,
}

impl std::ops::Deref for Lab {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

/// Notes why a test did not run; under CI (`CI=true` or `CI=1`) a test that cannot run fails instead.
fn skip(why: &str) {
    let ci = crate::ci::in_ci();
    assert!(!ci, "under CI this test must run, but {why}");
    eprintln!("skipped: {why}");
}

impl Lab {
    /// A cluster with `settings`, its template prepared and reuse started; None (skipped) without
    /// PostgreSQL.
    pub(crate) fn boot(settings: &[(&str, &str)]) -> Option<Lab> {
        let found = binaries::discover(&PostgresChoice::Newest, &SearchPlaces::from_env());
        let binaries = match found {
            Ok(binaries) => binaries,
            Err(error) => {
                skip(&format!("PostgreSQL is missing: {error}"));
                return None;
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let settings: Vec<Setting> = settings
            .iter()
            .map(|(name, value)| Setting {
                name: (*name).to_owned(),
                value: (*value).to_owned(),
                origin: Origin {
                    table: "test".into(),
                    manifest: "Cargo.toml".into(),
                    line: None,
                },
            })
            .collect();
        let server_user = privileges::server_user().unwrap();
        let placement = storage::choose(true, None, server_user.is_other_account);
        let spec = ClusterSpec {
            binaries: &binaries,
            placement: &placement,
            server_user: &server_user,
            settings: &settings,
            jobs: 4,
        };
        let migrations = tempfile::tempdir().unwrap();
        std::fs::write(migrations.path().join("0001_schema.sql"), SCHEMA).unwrap();
        let database = DatabaseSpec {
            migrations: Some(migrations.path().to_owned()),
            ..DatabaseSpec::default()
        };
        let (cluster, world) = runtime.block_on(async {
            let cluster = Cluster::boot(&spec, None).await.unwrap();
            let endpoint = cluster.endpoint().clone();
            let major = cluster.info.version.major;
            // template1 gets the schema too, as for `#[sqlx::test]`: the gateway's tests copy it.
            let templates = template::prepare(&endpoint, &[database], Some(0), major)
                .await
                .unwrap();
            template::warm_relation_caches(&endpoint, &templates)
                .await
                .unwrap();
            let databases = MaintenancePool::connect(&endpoint, major, 6).await.unwrap();
            let reuse = Reuse::start(databases.pool().clone(), cluster.data_dir().to_owned())
                .await
                .unwrap();
            reuse.record_every_clone();
            let template = templates[0].name.clone();
            let data_dir = cluster.data_dir().to_owned();
            (
                cluster,
                World {
                    endpoint,
                    databases,
                    reuse,
                    template,
                    major,
                    data_dir,
                },
            )
        });
        Some(Lab {
            runtime,
            cluster: Some(cluster),
            world,
            _migrations: migrations,
        })
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Stops the server cleanly and starts it again.
    pub(crate) fn restart(&mut self) {
        let cluster = self.cluster.as_mut().unwrap();
        self.runtime
            .block_on(cluster.while_stopped(|_| ()))
            .unwrap();
    }

    pub(crate) fn shut_down(mut self) {
        self.runtime.block_on(self.world.databases.close());
        let cluster = self.cluster.take().unwrap();
        let (_, problems) = self.runtime.block_on(cluster.shutdown());
        assert!(problems.is_empty(), "{problems:?}");
    }
}

impl World {
    /// Clones `name` from the template and records it, as a run does before its test.
    pub(crate) async fn clone_database(&self, name: &str) {
        self.databases
            .create_from(&self.template, name)
            .await
            .unwrap();
        self.reuse.prepared(&self.template, name).await.unwrap();
    }

    pub(crate) async fn connect(&self, name: &str) -> PgConnection {
        PgConnection::connect_with(&self.endpoint.connect_options(name))
            .await
            .unwrap()
    }

    /// Runs `steps` in one session of `name`; the first error, if any.
    pub(crate) async fn try_steps(&self, name: &str, steps: &[Step]) -> Result<(), String> {
        let mut connection = self.connect(name).await;
        let mut result = Ok(());
        for step in steps {
            let done = match step {
                Step::Sql(sql) => sqlx::raw_sql(sql).execute(&mut connection).await.map(drop),
                Step::CopyIn(sql, rows) => copy(&mut connection, sql, rows).await,
            };
            if let Err(error) = done {
                result = Err(format!("{step:?}: {error}", step = step_text(step)));
                break;
            }
        }
        connection.close().await.unwrap();
        result
    }

    /// Runs `steps`, which must succeed unless one reads a table that does not exist.
    pub(crate) async fn run_steps(&self, name: &str, steps: &[Step]) {
        if let Err(error) = self.try_steps(name, steps).await {
            assert!(error.contains("missing_table"), "{error}");
        }
    }

    pub(crate) async fn sql(&self, database: &str, sql: &str) {
        let mut connection = self.connect(database).await;
        sqlx::raw_sql(sql).execute(&mut connection).await.unwrap();
        connection.close().await.unwrap();
    }

    pub(crate) async fn drop_database(&self, name: &str) {
        self.reuse.forget(name);
        self.databases.drop_database(name).await.unwrap();
    }

    /// Kills one server process the way a crash would: the server restarts its shared memory and recovers.
    pub(crate) async fn crash_a_backend(&self) {
        let mut victim = self.connect("postgres").await;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut victim)
            .await
            .unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
        drop(victim);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let options = self.endpoint.connect_options("postgres");
            if let Ok(mut connection) = PgConnection::connect_with(&options).await {
                if sqlx::raw_sql("SELECT 1")
                    .execute(&mut connection)
                    .await
                    .is_ok()
                {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the server did not come back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn step_text(step: &Step) -> &'static str {
    match step {
        Step::Sql(sql) | Step::CopyIn(sql, _) => sql,
    }
}

async fn copy(connection: &mut PgConnection, sql: &str, rows: &str) -> Result<(), sqlx::Error> {
    let mut copy = connection.copy_in_raw(sql).await?;
    copy.send(rows.as_bytes()).await?;
    copy.finish().await.map(drop)
}
