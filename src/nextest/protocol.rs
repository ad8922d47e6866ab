//! The line protocol between cargo-pgtest and its target runner (`cargo-pgtest __pgtest-exec`), over the
//! run's Unix socket. One connection per test process:
//!
//! ```text
//! runner → cargo-pgtest   database <package>
//! cargo-pgtest → runner   env <KEY>=<VALUE>      (zero or more)
//!                         unset <KEY>            (zero or more)
//!                         ready <database>       (or: error <message>)
//! ```
//!
//! The connection then stays open for as long as the test process lives (the runner execs the test with
//! the socket inherited), and its end is the test's end: cargo-pgtest drops the database when it reads
//! end-of-file, however the test ended, a SIGKILL included. Hand-written: the protocol is five line kinds,
//! and the runner, started once per test, must not pay for a serialisation crate's start-up.

/// What a runner asks for: a fresh database for a test of `package` (empty when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) package: String,
}

impl Request {
    pub(crate) fn line(&self) -> String {
        format!("database {}\n", self.package)
    }

    pub(crate) fn parse(line: &str) -> Result<Request, String> {
        match line.trim_end_matches(['\n', '\r']).split_once(' ') {
            Some(("database", package)) => Ok(Request {
                package: package.to_owned(),
            }),
            _ if line.trim_end() == "database" => Ok(Request {
                package: String::new(),
            }),
            _ => Err(format!("not a request: {:?}", line.trim_end())),
        }
    }
}

/// One line of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Env(String, String),
    Unset(String),
    Ready(String),
    Error(String),
}

impl Reply {
    /// The line, or an error when a value cannot travel on one line.
    pub(crate) fn line(&self) -> Result<String, String> {
        let (kind, text) = match self {
            Reply::Env(key, value) => {
                if key.contains('=') {
                    return Err(format!("the variable name {key:?} contains `=`"));
                }
                ("env", format!("{key}={value}"))
            }
            Reply::Unset(key) => ("unset", key.clone()),
            Reply::Ready(database) => ("ready", database.clone()),
            // A message is one sentence; line ends inside it are not worth failing over.
            Reply::Error(message) => ("error", message.replace(['\n', '\r'], " ")),
        };
        if text.contains(['\n', '\r']) {
            return Err(format!("the value {text:?} spans lines"));
        }
        Ok(format!("{kind} {text}\n"))
    }

    pub(crate) fn parse(line: &str) -> Result<Reply, String> {
        let line = line.trim_end_matches(['\n', '\r']);
        let (kind, text) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "env" => match text.split_once('=') {
                Some((key, value)) if !key.is_empty() => {
                    Ok(Reply::Env(key.to_owned(), value.to_owned()))
                }
                _ => Err(format!("not a variable: {text:?}")),
            },
            "unset" if !text.is_empty() => Ok(Reply::Unset(text.to_owned())),
            "ready" if !text.is_empty() => Ok(Reply::Ready(text.to_owned())),
            "error" => Ok(Reply::Error(text.to_owned())),
            _ => Err(format!("not a reply: {line:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_back_as_written() {
        for package in ["sqlx-app", "", "a b"] {
            let request = Request {
                package: package.to_owned(),
            };
            assert_eq!(Request::parse(&request.line()), Ok(request));
        }
        assert!(Request::parse("give me one\n").is_err());
    }

    #[test]
    fn replies_read_back_as_written_even_with_spaces_and_equals_signs() {
        let replies = [
            Reply::Env(
                "DATABASE_URL".into(),
                "postgres://u:p=q@%2Fdev%2Fshm:5432/pgtest_nx_1".into(),
            ),
            Reply::Env("PGHOST".into(), "/tmp/a dir/socket".into()),
            Reply::Env("EMPTY".into(), String::new()),
            Reply::Unset("DATABASE_URL".into()),
            Reply::Ready("pgtest_nx_1".into()),
            Reply::Error("the template is gone".into()),
        ];
        for reply in replies {
            let line = reply.line().unwrap();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            assert_eq!(Reply::parse(&line), Ok(reply));
        }
    }

    #[test]
    fn what_cannot_travel_on_one_line_is_refused_not_garbled() {
        assert!(Reply::Env("PGHOST".into(), "a\nb".into()).line().is_err());
        assert!(Reply::Env("A=B".into(), "c".into()).line().is_err());
        assert_eq!(
            Reply::Error("one\ntwo".into()).line().unwrap(),
            "error one two\n"
        );
        for bad in ["ready", "ready \n", "env NOEQUALS", "env =x", "hello"] {
            assert!(Reply::parse(bad).is_err(), "{bad:?}");
        }
    }
}
