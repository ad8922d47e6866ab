//! Who the server runs as. PostgreSQL refuses to run as root, so under root (normal in containers and CI)
//! `initdb` and `postgres` run as an unprivileged account, while the tests keep the invoking user.

use std::path::Path;

use nix::unistd::{Gid, Uid, User};

/// The account the server processes run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUser {
    pub uid: u32,
    pub(crate) gid: u32,
    pub(crate) name: String,
    /// True when this is another account than the invoking one (we are root).
    pub is_other_account: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegesError {
    #[error(
        "cargo-pgtest runs as root and PostgreSQL refuses to, but no unprivileged account to run it as was found \
         (tried {tried}); create one (`useradd --system postgres`) or set PGTEST_SERVER_USER to an existing account"
    )]
    NoAccount { tried: String },
    #[error("could not give {path} to the server account `{user}`: {source}")]
    Chown {
        path: String,
        user: String,
        source: nix::Error,
    },
}

/// Chooses the server account: ourselves unless root; under root `PGTEST_SERVER_USER`, else `postgres`,
/// else `nobody`.
pub fn server_user() -> Result<ServerUser, PrivilegesError> {
    let euid = Uid::effective();
    if !euid.is_root() {
        return Ok(ServerUser {
            uid: euid.as_raw(),
            gid: Gid::effective().as_raw(),
            name: invoking_user_name().unwrap_or_else(|| euid.to_string()),
            is_other_account: false,
        });
    }
    let wanted: Vec<String> = match std::env::var("PGTEST_SERVER_USER") {
        Ok(name) if !name.is_empty() => vec![name],
        _ => vec!["postgres".to_owned(), "nobody".to_owned()],
    };
    for name in &wanted {
        if let Ok(Some(user)) = User::from_name(name) {
            if !user.uid.is_root() {
                return Ok(ServerUser {
                    uid: user.uid.as_raw(),
                    gid: user.gid.as_raw(),
                    name: user.name,
                    is_other_account: true,
                });
            }
        }
    }
    Err(PrivilegesError::NoAccount {
        tried: wanted.join(", "),
    })
}

/// The login name of the invoking user, which the server's peer authentication maps to the database user.
pub(crate) fn invoking_user_name() -> Option<String> {
    User::from_uid(Uid::effective())
        .ok()
        .flatten()
        .map(|user| user.name)
}

/// Hands a path to the server account (a no-op when the server runs as ourselves).
pub(crate) fn give_to(path: &Path, user: &ServerUser) -> Result<(), PrivilegesError> {
    if !user.is_other_account {
        return Ok(());
    }
    nix::unistd::chown(
        path,
        Some(Uid::from_raw(user.uid)),
        Some(Gid::from_raw(user.gid)),
    )
    .map_err(|source| PrivilegesError::Chown {
        path: path.display().to_string(),
        user: user.name.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_never_runs_as_root() {
        let user = server_user().expect("root machines here have a postgres or nobody account");
        assert_ne!(user.uid, 0);
        assert_eq!(user.is_other_account, Uid::effective().is_root());
    }
}
