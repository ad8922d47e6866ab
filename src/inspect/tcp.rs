//! `cargo pgtest serve --port N`: the cluster also listens on 127.0.0.1 (and nowhere else) at port N, where
//! only password authentication with the run's random password lets a client in. The socket's rules stay
//! as they are; one rule is added for the loopback address.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

use super::InspectError;
use crate::cluster::{Cluster, Endpoint};
use crate::config::{Origin, Setting};

/// The loopback address: the only one ever listened on.
const LOOPBACK: &str = "127.0.0.1";
/// How long the server may take to read the new access rule.
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

/// The settings that make the server listen at `port` on the loopback address only.
pub(crate) fn settings(port: u16) -> Vec<Setting> {
    let origin = Origin {
        table: "`cargo pgtest serve --port`".to_owned(),
        manifest: PathBuf::from("the command line"),
        line: None,
    };
    [
        ("listen_addresses", LOOPBACK.to_owned()),
        ("port", port.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| Setting {
        name: name.to_owned(),
        value,
        origin: origin.clone(),
    })
    .collect()
}

/// Lets password-authenticated clients in over the loopback address, and waits (with a deadline) until
/// the server has read the rule: a client told the URL can connect at once.
pub(crate) async fn open(cluster: &Cluster, database: &str) -> Result<(), InspectError> {
    let endpoint = cluster.endpoint();
    let fail = |detail: String| InspectError::Tcp {
        port: endpoint.port,
        detail,
    };
    let hba = cluster.data_dir().join("pg_hba.conf");
    let mut rules = std::fs::read_to_string(&hba)
        .map_err(|e| fail(format!("cannot read {}: {e}", hba.display())))?;
    rules.push_str(&format!("host all all {LOOPBACK}/32 scram-sha-256\n"));
    std::fs::write(&hba, rules)
        .map_err(|e| fail(format!("cannot write {}: {e}", hba.display())))?;
    let mut connection = sqlx::PgConnection::connect_with(&endpoint.connect_options("postgres"))
        .await
        .map_err(|e| fail(e.to_string()))?;
    sqlx::raw_sql("SELECT pg_reload_conf()")
        .execute(&mut connection)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let _ = connection.close().await;
    let started = Instant::now();
    loop {
        match sqlx::PgConnection::connect_with(&options(endpoint, database)).await {
            Ok(connection) => {
                let _ = connection.close().await;
                return Ok(());
            }
            Err(error) if started.elapsed() > RELOAD_DEADLINE => {
                return Err(fail(error.to_string()))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn options(endpoint: &Endpoint, database: &str) -> PgConnectOptions {
    PgConnectOptions::new_without_pgpass()
        .host(LOOPBACK)
        .port(endpoint.port)
        .username(&endpoint.user)
        .password(&endpoint.password)
        .database(database)
}

/// The endpoint of the loopback listener: its URL and `PG*` variables name 127.0.0.1 where the socket's
/// name the socket directory.
pub fn endpoint(socket: &Endpoint) -> Endpoint {
    Endpoint {
        socket_dir: PathBuf::from(LOOPBACK),
        ..socket.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_endpoint_names_127_0_0_1_and_keeps_the_password() {
        let socket = Endpoint {
            socket_dir: PathBuf::from("/dev/shm/cargo-pgtest-x1/socket"),
            port: 15432,
            user: "postgres".into(),
            password: "secret".into(),
            remote: None,
        };
        let tcp = endpoint(&socket);
        assert_eq!(
            tcp.url("db"),
            "postgres://postgres:secret@127.0.0.1:15432/db"
        );
        assert!(tcp
            .env("db", "DATABASE_URL")
            .contains(&("PGHOST".to_owned(), "127.0.0.1".to_owned())));
    }

    #[test]
    fn only_the_loopback_address_is_listened_on() {
        let settings = settings(15432);
        let listen = settings
            .iter()
            .find(|s| s.name == "listen_addresses")
            .unwrap();
        assert_eq!(listen.value, "127.0.0.1");
    }
}
