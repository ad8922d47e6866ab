//! An existing PostgreSQL server in place of a cluster of our own (`--server URL`, the `server` key,
//! `PGTEST_SERVER_URL`): checking that the role may create databases, a run id that makes this run's
//! database names its own, proof that the run is alive, and removing what the run made — and what runs
//! that are gone left behind.
//!
//! A run proves it is alive by holding a session-level advisory lock keyed by its run id for its whole
//! life, on one connection to the maintenance database (advisory locks belong to a database). A process
//! that is killed loses its connection, so the server releases the lock: a later run that can take the
//! lock of a run whose `pgtest_<run id>_…` databases are still there knows that run is gone and drops them.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::binaries::Version;
use super::endpoint::{Endpoint, Remote};
use crate::template::quote_ident;

/// The advisory lock class of run ids ("pgts"): the lock's second key is the run id.
const LOCK_CLASS: i32 = 0x7067_7473;

#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    #[error("the server URL `{shown}` is not one cargo-pgtest can use: {reason}; write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE")]
    BadUrl { shown: String, reason: String },
    #[error("could not connect to the server at {target}: {source}; check the URL and that the server accepts this role from here")]
    Connect { target: String, source: sqlx::Error },
    #[error("the role `{role}` may not create databases on the server at {target}, and cargo-pgtest makes one per test; give it the right (`ALTER ROLE {role} CREATEDB`) or use a role that has it")]
    NoCreatedb { role: String, target: String },
    #[error("could not {doing} on the server at {target}: {source}")]
    Sql {
        doing: &'static str,
        target: String,
        source: sqlx::Error,
    },
    #[error("the server at {target} reports a version cargo-pgtest cannot read: `{text}`")]
    Version { target: String, text: String },
    #[error("another run on the server at {target} drew the same run id {run_id} (a one in four billion chance); run again")]
    RunIdTaken { run_id: String, target: String },
    #[error("could not make a run id: the system's random source failed ({0})")]
    Random(#[source] getrandom::Error),
    #[error("the server at {0} is not cargo-pgtest's own: it cannot be stopped or snapshotted")]
    NotOurs(String),
}

/// A server that is not ours, connected, with this run's lock held.
#[derive(Debug)]
pub(crate) struct External {
    pub(crate) endpoint: Endpoint,
    pub(crate) version: Version,
    /// `host:port/database`, without the password, for messages.
    pub(crate) target: String,
    pub(crate) run_id: String,
    /// The session holding this run's advisory lock; also the one that drops databases.
    lock: PgConnection,
}

/// The server URL read and checked: the endpoint (with a fresh run id) and where it points.
pub(crate) fn parse(text: &str) -> Result<(Endpoint, String), ExternalError> {
    let bad = |reason: String| ExternalError::BadUrl {
        shown: redact(text),
        reason,
    };
    let url = url::Url::parse(text).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(bad(format!(
            "the scheme is `{}`, not `postgres`",
            url.scheme()
        )));
    }
    let options = <PgConnectOptions as sqlx::ConnectOptions>::from_url(&url)
        .map_err(|e| bad(e.to_string()))?;
    let maintenance = options.get_database().unwrap_or("postgres").to_owned();
    let target = format!(
        "{}:{}/{maintenance}",
        url.host_str().unwrap_or("localhost"),
        options.get_port()
    );
    let run_id = run_id()?;
    let endpoint = Endpoint {
        socket_dir: Default::default(),
        port: options.get_port(),
        user: options.get_username().to_owned(),
        password: String::new(),
        remote: Some(Remote {
            prefix: format!("pgtest_{run_id}_"),
            url,
            options,
            maintenance,
        }),
    };
    Ok((endpoint, target))
}

/// The URL with its password hidden, for messages.
pub(crate) fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// Eight random hex digits: the run's id, in its database names and its lock.
fn run_id() -> Result<String, ExternalError> {
    let mut bytes = [0u8; 4];
    getrandom::getrandom(&mut bytes).map_err(ExternalError::Random)?;
    Ok(format!("{:08x}", u32::from_be_bytes(bytes)))
}

/// The advisory lock key of a run id (its bits, as PostgreSQL's int4).
fn lock_key(run_id: &str) -> Option<i32> {
    u32::from_str_radix(run_id, 16).ok().map(|id| id as i32)
}

/// The run id in a database name this program made on a server not its own, if it is one.
fn run_of(database: &str) -> Option<&str> {
    let rest = database.strip_prefix("pgtest_")?;
    let (id, _) = rest.split_once('_')?;
    (id.len() == 8 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(id)
}

impl External {
    /// Connects, checks the role, takes the run's lock; the databases of runs that are gone are dropped
    /// (their names are returned, with what could not be dropped).
    pub(crate) async fn connect(
        endpoint: Endpoint,
        target: String,
    ) -> Result<(External, Vec<String>, Vec<String>), ExternalError> {
        let sql = |doing: &'static str| {
            let target = target.clone();
            move |source| ExternalError::Sql {
                doing,
                target,
                source,
            }
        };
        let mut lock = PgConnection::connect_with(&endpoint.connect_options("postgres"))
            .await
            .map_err(|source| ExternalError::Connect {
                target: target.clone(),
                source,
            })?;
        let (role, may_create): (String, bool) = sqlx::query_as(
            "SELECT current_user::text, rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&mut lock)
        .await
        .map_err(sql("read the role's rights"))?;
        if !may_create {
            return Err(ExternalError::NoCreatedb { role, target });
        }
        let version = server_version(&mut lock, &target).await?;
        let run_id = endpoint
            .remote
            .as_ref()
            .map(|remote| remote.prefix["pgtest_".len()..remote.prefix.len() - 1].to_owned())
            .unwrap_or_default();
        // Tried, not waited for: another live run with the same id would hold it for its whole life.
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(lock_key(&run_id).unwrap_or_default())
            .fetch_one(&mut lock)
            .await
            .map_err(sql("take the run's lock"))?;
        if !locked {
            return Err(ExternalError::RunIdTaken { run_id, target });
        }
        let mut external = External {
            endpoint,
            version,
            target,
            run_id,
            lock,
        };
        let (dropped, problems) = external.sweep().await;
        Ok((external, dropped, problems))
    }

    /// Drops the databases of runs whose lock is free: those runs are gone.
    async fn sweep(&mut self) -> (Vec<String>, Vec<String>) {
        let mut problems = Vec::new();
        let names = match self.databases_like("pgtest_").await {
            Ok(names) => names,
            Err(error) => return (Vec::new(), vec![error.to_string()]),
        };
        let mut runs: Vec<&str> = names
            .iter()
            .filter_map(|name| run_of(name))
            .filter(|id| *id != self.run_id)
            .collect();
        runs.sort_unstable();
        runs.dedup();
        let mut gone = Vec::new();
        for id in runs {
            let key = lock_key(id).unwrap_or_default();
            let free: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(LOCK_CLASS)
                .bind(key)
                .fetch_one(&mut self.lock)
                .await;
            if let Ok(true) = free {
                gone.push((id.to_owned(), key));
            }
        }
        let mut dropped = Vec::new();
        for (id, key) in gone {
            let prefix = format!("pgtest_{id}_");
            for name in names.iter().filter(|name| name.starts_with(&prefix)) {
                match self.drop_database(name).await {
                    Ok(()) => dropped.push(name.clone()),
                    Err(error) => problems.push(error.to_string()),
                }
            }
            let _ = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(LOCK_CLASS)
                .bind(key)
                .execute(&mut self.lock)
                .await;
        }
        (dropped, problems)
    }

    /// The databases whose name starts with `prefix`, oldest first.
    async fn databases_like(&mut self, prefix: &str) -> Result<Vec<String>, ExternalError> {
        sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY oid",
        )
        .bind(prefix)
        .fetch_all(&mut self.lock)
        .await
        .map_err(|source| ExternalError::Sql {
            doing: "list the databases",
            target: self.target.clone(),
            source,
        })
    }

    /// Drops a database this program made, a template included, whoever is still connected to it.
    async fn drop_database(&mut self, name: &str) -> Result<(), ExternalError> {
        let quoted = quote_ident(name);
        // Two statements sent apart: DROP DATABASE refuses to run in the transaction a multi-statement
        // query makes.
        for statement in [
            format!("ALTER DATABASE {quoted} IS_TEMPLATE false"),
            format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"),
        ] {
            sqlx::raw_sql(&statement)
                .execute(&mut self.lock)
                .await
                .map_err(|source| ExternalError::Sql {
                    doing: "drop a database of cargo-pgtest's",
                    target: format!("{} (database {name})", self.target),
                    source,
                })?;
        }
        Ok(())
    }

    /// Drops every database of this run and releases its lock; returns what went wrong.
    pub async fn shutdown(mut self) -> Vec<String> {
        let prefix = format!("pgtest_{}_", self.run_id);
        let mut problems = Vec::new();
        match self.databases_like(&prefix).await {
            // Newest first: test databases before the templates they were copied from.
            Ok(names) => {
                for name in names.iter().rev() {
                    if let Err(error) = self.drop_database(name).await {
                        problems.push(error.to_string());
                    }
                }
            }
            Err(error) => problems.push(error.to_string()),
        }
        // Closing the session releases the lock.
        let _ = self.lock.close().await;
        problems
    }
}

/// The server's version, from `server_version_num` (`150004` is 15.4).
async fn server_version(
    connection: &mut PgConnection,
    target: &str,
) -> Result<Version, ExternalError> {
    let text: String = sqlx::query_scalar("SELECT current_setting('server_version_num')")
        .fetch_one(connection)
        .await
        .map_err(|source| ExternalError::Sql {
            doing: "read the server's version",
            target: target.to_owned(),
            source,
        })?;
    version_from_num(&text).ok_or_else(|| ExternalError::Version {
        target: target.to_owned(),
        text,
    })
}

fn version_from_num(text: &str) -> Option<Version> {
    let number: u32 = text.trim().parse().ok()?;
    let major = number / 10_000;
    (major >= 10).then(|| Version {
        major,
        full: format!("{major}.{}", number % 10_000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_version_number() {
        let version = version_from_num("150004").unwrap();
        assert_eq!((version.major, version.full.as_str()), (15, "15.4"));
        assert_eq!(version_from_num("180000").unwrap().major, 18);
        assert!(version_from_num("90624").is_none());
        assert!(version_from_num("x").is_none());
    }

    #[test]
    fn only_run_names_carry_a_run_id() {
        assert_eq!(run_of("pgtest_0a1b2c3d_7"), Some("0a1b2c3d"));
        assert_eq!(run_of("pgtest_0a1b2c3d_template"), Some("0a1b2c3d"));
        assert_eq!(run_of("pgtest_template"), None);
        assert_eq!(run_of("pgtest_0A1B2C3D_7"), None);
        assert_eq!(run_of("pgtest_shared_app"), None);
        assert_eq!(run_of("app_pgtest_0a1b2c3d_7"), None);
    }

    #[test]
    fn run_ids_are_lock_keys() {
        assert_eq!(lock_key("ffffffff"), Some(-1));
        assert_eq!(lock_key("00000010"), Some(16));
        assert_ne!(run_id().unwrap(), run_id().unwrap());
    }

    #[test]
    fn names_become_the_runs_own_and_the_url_keeps_its_parameters() {
        let (endpoint, target) =
            parse("postgres://app:s%40cret@db.example:6543/main?sslmode=require").unwrap();
        assert_eq!(target, "db.example:6543/main");
        let prefix = endpoint.remote.as_ref().unwrap().prefix.clone();
        let name = endpoint.database_name("pgtest_7").into_owned();
        assert_eq!(name, format!("{prefix}7"));
        assert_eq!(endpoint.database_name(&name), name);
        assert_eq!(endpoint.database_name("postgres"), "main");
        assert_eq!(endpoint.database_name("template1"), "template1");
        assert_eq!(
            endpoint.url("pgtest_7"),
            format!("postgres://app:s%40cret@db.example:6543/{prefix}7?sslmode=require")
        );
        let env = endpoint.env("pgtest_7", "DATABASE_URL");
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("PGHOST"), Some("db.example"));
        assert_eq!(get("PGPORT"), Some("6543"));
        assert_eq!(get("PGPASSWORD"), Some("s@cret"));
        assert_eq!(get("PGSSLMODE"), Some("require"));
        let options = endpoint.connect_options("pgtest_7");
        assert_eq!(options.get_database(), Some(name.as_str()));
        assert_eq!(options.get_host(), "db.example");
    }

    #[test]
    fn bad_urls_are_refused_without_showing_the_password() {
        let error = parse("mysql://u:hunter2@h/db").unwrap_err().to_string();
        assert!(error.contains("scheme is `mysql`"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        assert!(parse("not a url").is_err());
    }
}
