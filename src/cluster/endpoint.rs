//! How clients reach the cluster: the URL and `PG*` variables handed to tests and builds, and sqlx's own
//! connect options. The URL names the socket directory as a percent-encoded host, a form that sqlx,
//! tokio-postgres and libpq (so diesel and psql) all accept. On an existing server ([`Remote`]) the user's
//! URL is kept as written (host, TLS parameters) with only the database changed, and every `pgtest_` name
//! becomes the run's own (`pgtest_<run id>_…`), so the names the rest of the program picks stay the same.

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

pub(crate) use super::server::Endpoint;

/// An existing server's address, as the user's URL gave it.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    /// The URL as written, password and query parameters (`sslmode`, …) included.
    pub(crate) url: url::Url,
    /// sqlx's reading of `url`.
    pub(crate) options: PgConnectOptions,
    /// `pgtest_<run id>_`: what `pgtest_` becomes in this run's database names.
    pub(crate) prefix: String,
    /// The database named in the URL (`postgres` when none is), which stands in for `postgres`.
    pub(crate) maintenance: String,
}

/// `options` is read from `url`: comparing the URL and the run is enough.
impl PartialEq for Remote {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url && self.prefix == other.prefix
    }
}

impl Eq for Remote {}

impl Endpoint {
    /// Whether this is a cluster of our own (not an existing server): only there are databases reused, so
    /// only there are templates settled and checkpointed for it (a `CHECKPOINT` needs a privilege an
    /// existing server's role may lack).
    pub(crate) fn is_ours(&self) -> bool {
        self.remote.is_none()
    }

    /// The name `database` has in this run: itself on our own cluster; on an existing server, `pgtest_…`
    /// gets the run's prefix and `postgres` is the URL's database.
    pub(crate) fn database_name<'a>(&self, database: &'a str) -> Cow<'a, str> {
        let Some(remote) = &self.remote else {
            return Cow::Borrowed(database);
        };
        if database == "postgres" {
            return Cow::Owned(remote.maintenance.clone());
        }
        match database.strip_prefix("pgtest_") {
            Some(rest) if !database.starts_with(&remote.prefix) => {
                Cow::Owned(format!("{}{rest}", remote.prefix))
            }
            _ => Cow::Borrowed(database),
        }
    }

    /// `postgres://USER:PASSWORD@%2Fpath%2Fto%2Fsocket:PORT/DATABASE`, or the server's URL with `database`.
    pub(crate) fn url(&self, database: &str) -> String {
        let database = self.database_name(database);
        if let Some(remote) = &self.remote {
            let mut url = remote.url.clone();
            url.set_path(&format!("/{}", percent_encode(&database)));
            return url.to_string();
        }
        let host = percent_encode(&self.socket_dir.to_string_lossy());
        let credentials = if self.password.is_empty() {
            percent_encode(&self.user)
        } else {
            format!(
                "{}:{}",
                percent_encode(&self.user),
                percent_encode(&self.password)
            )
        };
        format!(
            "postgres://{credentials}@{host}:{}/{}",
            self.port,
            percent_encode(&database)
        )
    }

    /// The variables a test process gets: the URL under `url_variable`, and libpq's `PG*` variables.
    pub(crate) fn env(&self, database: &str, url_variable: &str) -> Vec<(String, String)> {
        if let Some(remote) = &self.remote {
            return remote_env(
                remote,
                &self.url(database),
                &self.database_name(database),
                url_variable,
            );
        }
        let mut env = vec![
            (url_variable.to_owned(), self.url(database)),
            (
                "PGHOST".to_owned(),
                self.socket_dir.to_string_lossy().into_owned(),
            ),
            ("PGPORT".to_owned(), self.port.to_string()),
            ("PGUSER".to_owned(), self.user.clone()),
            ("PGDATABASE".to_owned(), database.to_owned()),
        ];
        if !self.password.is_empty() {
            env.push(("PGPASSWORD".to_owned(), self.password.clone()));
        }
        env
    }

    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        if let Some(remote) = &self.remote {
            return remote
                .options
                .clone()
                .database(&self.database_name(database))
                .application_name("cargo-pgtest");
        }
        // A private Unix socket: TLS would only cost a round trip (and the gateway relays no TLS).
        PgConnectOptions::new_without_pgpass()
            .ssl_mode(PgSslMode::Disable)
            .socket(&self.socket_dir)
            .port(self.port)
            .username(&self.user)
            .password(&self.password)
            .database(database)
            .application_name("cargo-pgtest")
    }
}

/// The variables a test process gets on an existing server: libpq's, read from the URL.
fn remote_env(
    remote: &Remote,
    url: &str,
    database: &str,
    url_variable: &str,
) -> Vec<(String, String)> {
    let options = &remote.options;
    let host = match options.get_socket() {
        Some(dir) => dir.to_string_lossy().into_owned(),
        None => options.get_host().to_owned(),
    };
    let mut env = vec![
        (url_variable.to_owned(), url.to_owned()),
        ("PGHOST".to_owned(), host),
        ("PGPORT".to_owned(), options.get_port().to_string()),
        ("PGUSER".to_owned(), options.get_username().to_owned()),
        ("PGDATABASE".to_owned(), database.to_owned()),
    ];
    if let Some(password) = remote.url.password() {
        let password = percent_decode_str(password).decode_utf8_lossy();
        env.push(("PGPASSWORD".to_owned(), password.into_owned()));
    }
    for (key, value) in remote.url.query_pairs() {
        let variable = match key.as_ref() {
            "sslmode" => "PGSSLMODE",
            "sslrootcert" => "PGSSLROOTCERT",
            "sslcert" => "PGSSLCERT",
            "sslkey" => "PGSSLKEY",
            _ => continue,
        };
        env.push((variable.to_owned(), value.into_owned()));
    }
    env
}

/// Everything but RFC 3986's unreserved characters gets encoded.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn endpoint() -> Endpoint {
        Endpoint {
            socket_dir: PathBuf::from("/dev/shm/cargo-pgtest-x1/socket"),
            port: 5432,
            user: "postgres".into(),
            password: "p@ss".into(),
            remote: None,
        }
    }

    #[test]
    fn the_url_names_the_socket_directory_as_an_encoded_host() {
        assert_eq!(
            endpoint().url("pgtest_7"),
            "postgres://postgres:p%40ss@%2Fdev%2Fshm%2Fcargo-pgtest-x1%2Fsocket:5432/pgtest_7"
        );
    }

    #[test]
    fn only_unreserved_characters_stay_as_they_are() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(percent_encode("a b/c:d@é%"), "a%20b%2Fc%3Ad%40%C3%A9%25");
    }

    #[test]
    fn sqlx_reads_the_url_back_to_the_same_socket() {
        let options: PgConnectOptions = endpoint().url("db").parse().unwrap();
        assert_eq!(
            options.get_socket(),
            Some(&PathBuf::from("/dev/shm/cargo-pgtest-x1/socket"))
        );
        assert_eq!(options.get_port(), 5432);
        assert_eq!(options.get_database(), Some("db"));
        assert_eq!(options.get_username(), "postgres");
    }

    #[test]
    fn libpq_variables_are_set_too() {
        let env = endpoint().env("db", "MY_URL");
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert!(get("MY_URL").unwrap().starts_with("postgres://"));
        assert_eq!(get("PGHOST"), Some("/dev/shm/cargo-pgtest-x1/socket"));
        assert_eq!(get("PGDATABASE"), Some("db"));
        assert_eq!(get("PGPASSWORD"), Some("p@ss"));
        assert_eq!(get("DATABASE_URL"), None);
    }
}
