//! `[package.metadata.pgtest.databases.NAME]`: the extra databases every test gets a fresh copy of beside
//! its main one (an audit or analytics database, say). Their table as written, the check of its keys, the
//! values anchored to the manifest that wrote them, and the run's list: the workspace's declarations under
//! each selected package's, every `env` checked against the others and against the main database's.
//!
//! Extra databases are run-wide: in a workspace, every tested package's tests get all of them.

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::Setter;
use super::schema::{EnvName, ExtensionName};
use super::{ConfigError, DatabaseSpec, Origin, SpecOrigins};

/// Every key of a `databases.NAME` table, sorted.
pub(crate) const DATABASE_KEYS: &[&str] = &["env", "extensions", "fixtures", "migrations"];

/// The longest name an extra database may have: its test copies are named `<test database>__<NAME>`, and
/// PostgreSQL cuts names at 63 bytes.
const LONGEST_NAME: usize = 30;

/// One `[...pgtest.databases.NAME]` table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabaseText {
    pub(crate) migrations: Option<Spanned<String>>,
    pub(crate) fixtures: Option<Spanned<Vec<String>>>,
    pub(crate) extensions: Option<Spanned<Vec<ExtensionName>>>,
    pub(crate) env: Option<Spanned<EnvName>>,
}

/// One extra database, checked, its paths absolute.
#[derive(Debug, Clone)]
pub(crate) struct ExtraDatabase {
    /// The table's name: `audit` for `[...databases.audit]`.
    pub(crate) name: String,
    /// The variable that carries its URL to tests and to the build.
    pub(crate) env: String,
    /// What its template is made of.
    pub(crate) spec: DatabaseSpec,
    /// Where `env` was set; the table's header when it is the default.
    pub(crate) env_origin: Origin,
}

impl ExtraDatabase {
    /// What makes two declarations the same database (where they were written does not).
    fn contents(&self) -> (&str, &str, &DatabaseSpec) {
        (&self.name, &self.env, &self.spec)
    }
}

impl PartialEq for ExtraDatabase {
    fn eq(&self, other: &Self) -> bool {
        self.contents() == other.contents()
    }
}

/// The default variable of database `name`: `audit` → `AUDIT_DATABASE_URL`.
pub(crate) fn default_env(name: &str) -> String {
    format!(
        "{}_DATABASE_URL",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// The header of database `name`'s table in `section` (`package` or `workspace`).
pub(crate) fn header(section: &str, name: &str) -> String {
    format!("[{section}.metadata.pgtest.databases.{name}]")
}

/// Refuses a key that a `databases.NAME` table does not have, naming the closest one. `origin` gives the
/// origin of a byte offset in the manifest, under a table header.
pub(crate) fn check_keys(
    entries: &DeTable<'_>,
    section: &str,
    origin: impl Fn(String, usize) -> Origin,
) -> Result<(), ConfigError> {
    let Some(DeValue::Table(databases)) = entries.get("databases").map(|v| v.get_ref()) else {
        return Ok(());
    };
    for (name, table) in databases {
        let DeValue::Table(keys) = table.get_ref() else {
            continue;
        };
        let unknown = keys
            .keys()
            .find(|key| !DATABASE_KEYS.contains(&key.get_ref().as_ref()));
        if let Some(key) = unknown {
            return Err(ConfigError::UnknownDatabaseKey {
                key: key.get_ref().to_string(),
                origin: Box::new(origin(header(section, name.get_ref()), key.span().start)),
                suggestion: closest(key.get_ref().as_ref()),
            });
        }
    }
    Ok(())
}

/// The valid key closest to a misspelt one, when it is close enough to be what was meant.
fn closest(unknown: &str) -> Option<&'static str> {
    super::error::closest_among(unknown, DATABASE_KEYS)
}

/// Turns the written tables into databases: names checked, paths joined to `base`, `env` defaulted.
/// `origin` as for [`check_keys`].
pub(crate) fn anchor(
    written: std::collections::BTreeMap<Spanned<String>, Spanned<DatabaseText>>,
    section: &str,
    base: &std::path::Path,
    origin: impl Fn(String, usize) -> Origin,
) -> Result<Vec<ExtraDatabase>, ConfigError> {
    let mut databases = Vec::new();
    for (name, text) in written {
        let header = header(section, name.get_ref());
        let at = |offset: usize| origin(header.clone(), offset);
        let name_origin = at(name.span().start);
        let name = name.into_inner();
        if let Some(reason) = bad_name(&name) {
            return Err(ConfigError::BadValue {
                key: format!("databases.{name}"),
                origin: Box::new(name_origin),
                reason,
            });
        }
        let text = text.into_inner();
        let (env, env_origin) = match text.env {
            Some(env) => (env.get_ref().0.clone(), at(env.span().start)),
            None => (default_env(&name), name_origin),
        };
        let migrations = text.migrations.map(|dir| (at(dir.span().start), dir));
        let fixtures = text.fixtures.map(|files| (at(files.span().start), files));
        databases.push(ExtraDatabase {
            spec: DatabaseSpec {
                migrations: migrations.as_ref().map(|(_, dir)| base.join(dir.get_ref())),
                fixtures: fixtures.as_ref().map_or_else(Vec::new, |(_, files)| {
                    files.get_ref().iter().map(|f| base.join(f)).collect()
                }),
                extensions: text.extensions.map_or_else(Vec::new, |names| {
                    names.into_inner().into_iter().map(|n| n.0).collect()
                }),
                origins: SpecOrigins {
                    migrations: migrations.map(|(origin, _)| origin),
                    fixtures: fixtures.map(|(origin, _)| origin),
                },
            },
            name,
            env,
            env_origin,
        });
    }
    Ok(databases)
}

/// Why `name` cannot name an extra database, if it cannot.
fn bad_name(name: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || !name.chars().all(allowed) {
        Some(format!(
            "`{name}` is not a database name here; use letters, digits, `_` and `-`"
        ))
    } else if name.len() > LONGEST_NAME {
        Some(format!(
            "`{name}` is longer than {LONGEST_NAME} characters; its test copies' names would not fit PostgreSQL's 63"
        ))
    } else {
        None
    }
}

/// The run's extra databases, laid as run-wide keys are: the workspace's first, then each selected
/// package's, which may override the workspace's but must agree with another package's.
#[derive(Debug, Default)]
pub(crate) struct RunDatabases {
    laid: Vec<(ExtraDatabase, Setter)>,
}

impl RunDatabases {
    /// Lays one table's databases; `package` is `None` for the workspace's.
    pub(crate) fn lay(
        &mut self,
        databases: &[ExtraDatabase],
        package: Option<&str>,
    ) -> Result<(), ConfigError> {
        for database in databases {
            let setter = Setter {
                package: package.map(str::to_owned),
                origin: database.env_origin.clone(),
            };
            match self.laid.iter_mut().find(|(d, _)| d.name == database.name) {
                Some((laid, first)) if first.package.is_some() && package.is_some() => {
                    if laid != database {
                        return Err(ConfigError::Conflict {
                            key: format!("databases.{}", database.name),
                            first: Box::new(first.clone()),
                            second: Box::new(setter),
                        });
                    }
                }
                Some(slot) => *slot = (database.clone(), setter),
                None => self.laid.push((database.clone(), setter)),
            }
        }
        Ok(())
    }

    /// The databases, each `env` checked against `database_env` (the main database's variable), against
    /// the variables every test gets and against the other databases'.
    pub(crate) fn finish(self, database_env: &str) -> Result<Vec<ExtraDatabase>, ConfigError> {
        let databases: Vec<ExtraDatabase> = self.laid.into_iter().map(|(d, _)| d).collect();
        for (index, database) in databases.iter().enumerate() {
            let other = databases[..index].iter().find(|d| d.env == database.env);
            if let Some(reason) = env_clash(&database.env, database_env, other) {
                return Err(ConfigError::BadValue {
                    key: "env".to_owned(),
                    origin: Box::new(database.env_origin.clone()),
                    reason,
                });
            }
        }
        Ok(databases)
    }
}

/// Why `env` cannot carry an extra database's URL, if it cannot.
fn env_clash(env: &str, database_env: &str, other: Option<&ExtraDatabase>) -> Option<String> {
    let name = format!("`{env}`");
    if env == database_env || env == "DATABASE_URL" {
        Some(format!(
            "{name} already carries the main database's URL (`database_env`, and DATABASE_URL for the build); give this database another variable with `env`"
        ))
    } else if env.starts_with("PG") {
        Some(format!(
            "{name} is a PG* variable, which psql and libpq read for the main database; give this database another variable with `env`"
        ))
    } else {
        other.map(|other| {
            format!(
                "{name} is also the variable of database `{}` ({}); give each database its own with `env`",
                other.name, other.env_origin
            )
        })
    }
}

#[cfg(test)]
mod tests {
    // The config tests' one-package project: its `pgtest` text starts on line 5 of its Cargo.toml.
    use super::super::tests::{error_of as error, package as project, resolve_one as resolved};
    use super::super::{resolve, Member, Overrides, Workspace};
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn declared_databases_are_read_with_their_paths_and_variables() {
        let config = resolved(
            "[package.metadata.pgtest.databases.audit]\n\
             migrations = \"audit/migrations\"\n\
             fixtures = [\"audit/seed.sql\"]\n\
             extensions = [\"pgcrypto\"]\n\
             [package.metadata.pgtest.databases.stats]\n\
             env = \"STATS_URL\"\n",
        )
        .unwrap();
        let extras = &config.extra_databases;
        assert_eq!(extras.len(), 2);
        assert_eq!(
            (extras[0].name.as_str(), extras[0].env.as_str()),
            ("audit", "AUDIT_DATABASE_URL")
        );
        assert_eq!(
            extras[0].spec.migrations,
            Some(PathBuf::from("/p/audit/migrations"))
        );
        assert_eq!(
            extras[0].spec.fixtures,
            [PathBuf::from("/p/audit/seed.sql")]
        );
        assert_eq!(extras[0].spec.extensions, ["pgcrypto"]);
        assert_eq!(
            (extras[1].name.as_str(), extras[1].env.as_str()),
            ("stats", "STATS_URL")
        );
        assert_eq!(extras[1].spec, DatabaseSpec::default());
        assert!(resolved("").unwrap().extra_databases.is_empty());
    }

    #[test]
    fn an_unknown_key_names_its_table_line_and_the_closest_key() {
        let message = error(
            "[package.metadata.pgtest.databases.audit]\nmigrations = \"m\"\nfixture = [\"a.sql\"]\n",
        );
        assert_eq!(
            message,
            "unknown key `fixture` in [package.metadata.pgtest.databases.audit] in \
             /p/Cargo.toml:7; did you mean `fixtures`?"
        );
        let message = error("[package.metadata.pgtest.databases.audit]\nzzz = 1\n");
        assert!(
            message.ends_with("valid keys are env, extensions, fixtures, migrations"),
            "{message}"
        );
    }

    #[test]
    fn a_wrong_value_names_its_key_table_and_line() {
        let message = error("[package.metadata.pgtest.databases.audit]\n\nmigrations = 3\n");
        assert!(
            message.starts_with(
                "`migrations` in [package.metadata.pgtest.databases.audit] in /p/Cargo.toml:7 \
                 must be a string"
            ),
            "{message}"
        );
        let message = error("[package.metadata.pgtest.databases.\"a b\"]\n");
        assert!(
            message.contains("`a b` is not a database name"),
            "{message}"
        );
    }

    #[test]
    fn a_variable_that_clashes_is_refused_with_its_line() {
        let clash = |env: &str, more: &str| {
            error(&format!(
                "[package.metadata.pgtest]\n{more}\n[package.metadata.pgtest.databases.audit]\nenv = \"{env}\"\n"
            ))
        };
        let message = clash("DATABASE_URL", "");
        assert!(message.starts_with("`env` in [package.metadata.pgtest.databases.audit] in /p/Cargo.toml:8 is invalid: `DATABASE_URL` already carries the main database's URL"), "{message}");
        assert!(clash("APP_URL", "database_env = \"APP_URL\"").contains("main database"));
        assert!(clash("PGDATABASE", "").contains("is a PG* variable"));
        assert!(
            resolved("[package.metadata.pgtest.databases.audit]\nenv = \"AUDIT_URL\"\n").is_ok()
        );
        // Another database's default variable, written out.
        let message = error(
            "[package.metadata.pgtest.databases.audit]\n\
             [package.metadata.pgtest.databases.stats]\nenv = \"AUDIT_DATABASE_URL\"\n",
        );
        assert!(
            message.contains("Cargo.toml:7 is invalid: `AUDIT_DATABASE_URL` is also the variable of database `audit`"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_folder_or_fixture_names_its_key_table_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("m")).unwrap();
        let mut workspace = project(
            "[package.metadata.pgtest.databases.audit]\nfixtures = [\"seed.sql\"]\nmigrations = \"audit\"\n",
        );
        workspace.root = dir.path().to_owned();
        workspace.members[0].manifest_path = dir.path().join("Cargo.toml");
        let config = resolve(&workspace, &Overrides::default(), 2).unwrap();
        let message = config.check_paths(&workspace).unwrap_err().to_string();
        assert!(
            message.starts_with("`migrations` in [package.metadata.pgtest.databases.audit] in ")
                && message.contains("Cargo.toml:7 names ")
                && message.contains("audit, which does not exist"),
            "{message}"
        );
        std::fs::create_dir(dir.path().join("audit")).unwrap();
        let message = config.check_paths(&workspace).unwrap_err().to_string();
        assert!(
            message.starts_with("`fixtures` in [package.metadata.pgtest.databases.audit] in ")
                && message.contains("Cargo.toml:6 names "),
            "{message}"
        );
        std::fs::write(dir.path().join("seed.sql"), "").unwrap();
        assert!(config.check_paths(&workspace).is_ok());
    }

    #[test]
    fn packages_may_share_a_database_but_not_disagree_on_it() {
        let member = |name: &str, env: &str| {
            Member {
            name: name.into(),
            manifest_path: PathBuf::from(format!("/w/{name}/Cargo.toml")),
            manifest_text: format!(
                "[package]\nname = \"{name}\"\n[package.metadata.pgtest.databases.audit]\nenv = \"{env}\"\n"
            ),
        }
        };
        let mut workspace = Workspace {
            root: PathBuf::from("/w"),
            root_manifest_text: "[workspace]\n".into(),
            members: vec![member("a", "AUDIT_URL"), member("b", "AUDIT_URL")],
            selected: vec!["a".into(), "b".into()],
        };
        let config = resolve(&workspace, &Overrides::default(), 2).unwrap();
        assert_eq!(config.extra_databases.len(), 1);
        workspace.members[1] = member("b", "OTHER_URL");
        let message = resolve(&workspace, &Overrides::default(), 2)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("set `databases.audit` differently"),
            "{message}"
        );
    }

    #[test]
    fn the_default_variable_comes_from_the_name() {
        assert_eq!(default_env("audit"), "AUDIT_DATABASE_URL");
        assert_eq!(default_env("audit-log"), "AUDIT_LOG_DATABASE_URL");
    }

    #[test]
    fn names_that_would_not_make_database_names_are_refused() {
        assert_eq!(bad_name("audit_2"), None);
        assert!(bad_name("").is_some());
        assert!(bad_name("a b").is_some());
        assert!(bad_name("a\"b").is_some());
        assert!(bad_name(&"a".repeat(LONGEST_NAME + 1)).is_some());
    }

    #[test]
    fn misspelt_keys_get_the_closest_one() {
        assert_eq!(closest("migration"), Some("migrations"));
        assert_eq!(closest("evn"), Some("env"));
        assert_eq!(closest("zzz"), None);
    }
}
