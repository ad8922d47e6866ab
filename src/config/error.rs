//! The one error type of configuration, and [`Origin`]: where a key was written, so every message can say
//! which Cargo.toml and which line to fix.

use std::fmt;
use std::path::PathBuf;

use super::schema::KEYS;

/// Where a key was written: table, manifest and (when known) line, for error messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub(crate) table: String,
    pub(crate) manifest: PathBuf,
    pub(crate) line: Option<usize>,
}

impl Origin {
    /// The manifest and line alone, `path:line`, for messages that already name the table.
    pub(crate) fn location(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.manifest.display()),
            None => self.manifest.display().to_string(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.table, self.location())
    }
}

/// A package (or the workspace, when `package` is `None`) and where it set a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Setter {
    pub(crate) package: Option<String>,
    pub(crate) origin: Origin,
}

impl fmt::Display for Setter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.package {
            Some(package) => write!(f, "`{package}` ({})", self.origin.location()),
            None => write!(f, "the workspace ({})", self.origin.location()),
        }
    }
}

// Origins are boxed: they hold a path and a table name, and an error travels in every `Result` of this
// module, so keeping the enum small keeps the happy path cheap (clippy::result_large_err).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error(
        "{} is not valid TOML: {message}; fix it (cargo reads the same file)",
        location(manifest, *line)
    )]
    Syntax {
        manifest: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("unknown key `{key}` in {origin}{}", keys_text(*.suggestion, KEYS))]
    UnknownKey {
        key: String,
        origin: Box<Origin>,
        suggestion: Option<&'static str>,
    },
    #[error("unknown key `{key}` in {origin}{}", keys_text(*.suggestion, super::snapshots::SNAPSHOT_KEYS))]
    UnknownSnapshotKey {
        key: String,
        origin: Box<Origin>,
        suggestion: Option<&'static str>,
    },
    #[error("unknown key `{key}` in {origin}{}", keys_text(*.suggestion, super::extra::DATABASE_KEYS))]
    UnknownDatabaseKey {
        key: String,
        origin: Box<Origin>,
        suggestion: Option<&'static str>,
    },
    #[error("`{key}` in {origin} must be {expected}, but it is {found}")]
    WrongType {
        key: String,
        origin: Box<Origin>,
        expected: String,
        found: String,
    },
    #[error("`{key}` in {origin} is invalid: {reason}")]
    BadValue {
        key: String,
        origin: Box<Origin>,
        reason: String,
    },
    #[error(
        "`{key}` in {origin} names {}, which does not exist; fix the path or remove the key",
        path.display()
    )]
    MissingPath {
        key: String,
        origin: Box<Origin>,
        path: PathBuf,
    },
    #[error(
        "packages {first} and {second} set `{key}` differently, but one run has one cluster; \
         set it once in [workspace.metadata.pgtest] or test the packages separately with -p"
    )]
    Conflict {
        key: String,
        first: Box<Setter>,
        second: Box<Setter>,
    },
}

impl ConfigError {
    /// The error for a value serde refused: its standard "invalid type: X, expected Y" becomes our
    /// "must be Y, but it is X"; any other message (from our own value types) is the reason as written.
    pub(crate) fn refused(key: &str, origin: Origin, message: &str) -> ConfigError {
        let mismatch = message
            .strip_prefix("invalid type: ")
            .and_then(|rest| rest.rsplit_once(", expected "));
        match mismatch {
            Some((found, expected)) => ConfigError::WrongType {
                key: key.to_owned(),
                origin: Box::new(origin),
                expected: expected.to_owned(),
                found: found.to_owned(),
            },
            None => ConfigError::BadValue {
                key: key.to_owned(),
                origin: Box::new(origin),
                reason: message.to_owned(),
            },
        }
    }
}

fn location(manifest: &std::path::Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", manifest.display()),
        None => manifest.display().to_string(),
    }
}

/// A key's suggestion, or the valid keys of its table when none is close.
fn keys_text(suggestion: Option<&'static str>, keys: &[&str]) -> String {
    match suggestion {
        Some(key) => format!("; did you mean `{key}`?"),
        None => format!("; valid keys are {}", keys.join(", ")),
    }
}

/// The valid `pgtest` key closest to a misspelt one, when it is close enough to be what was meant.
pub(crate) fn closest_key(unknown: &str) -> Option<&'static str> {
    closest_among(unknown, KEYS)
}

/// The key of `keys` closest to a misspelt one (case and `-` for `_` aside), when it is close enough to be
/// what was meant.
pub(crate) fn closest_among(unknown: &str, keys: &[&'static str]) -> Option<&'static str> {
    let unknown = unknown.to_ascii_lowercase().replace('-', "_");
    keys.iter()
        .map(|key| (strsim::damerau_levenshtein(&unknown, key), *key))
        .filter(|(distance, key)| *distance <= (key.len() / 3).max(1))
        .min()
        .map(|(_, key)| key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            table: "[package.metadata.pgtest]".into(),
            manifest: PathBuf::from("/p/Cargo.toml"),
            line: Some(5),
        }
    }

    #[test]
    fn close_typos_are_matched() {
        assert_eq!(closest_key("fixture"), Some("fixtures"));
        assert_eq!(closest_key("extentions"), Some("extensions"));
        assert_eq!(closest_key("database-env"), Some("database_env"));
        assert_eq!(closest_key("isolaton"), Some("isolation"));
        assert_eq!(closest_key("migraitons"), Some("migrations"));
        assert_eq!(closest_key("zzz"), None);
    }

    #[test]
    fn serde_mismatches_read_as_sentences() {
        let error = ConfigError::refused(
            "tmpfs",
            origin(),
            "invalid type: string \"yes\", expected a boolean",
        );
        assert_eq!(
            error.to_string(),
            "`tmpfs` in [package.metadata.pgtest] in /p/Cargo.toml:5 must be a boolean, \
             but it is string \"yes\""
        );
        let error = ConfigError::refused("postgres", origin(), "`15.4` is not a major version");
        assert_eq!(
            error.to_string(),
            "`postgres` in [package.metadata.pgtest] in /p/Cargo.toml:5 is invalid: \
             `15.4` is not a major version"
        );
    }

    #[test]
    fn errors_stay_small() {
        // clippy::result_large_err warns from 128 bytes on.
        assert!(std::mem::size_of::<ConfigError>() <= 96);
    }
}
