//! Reads one pgtest table out of a Cargo.toml's own text: finds it, refuses unknown keys (suggesting the
//! closest), deserializes it into [`TableText`] and turns that into a [`Table`] whose every value knows the
//! manifest and line that set it, with paths made absolute against the manifest's directory.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::error::closest_key;
use super::schema::{SettingText, TableText, KEYS};
use super::snapshots::{self, Snapshot};
use super::{ConfigError, Isolation, Origin, PostgresChoice, Setting};

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sourced<T> {
    pub(crate) value: T,
    pub(crate) origin: Origin,
}

/// One pgtest table, checked, with paths made absolute against the directory of its manifest.
#[derive(Debug, Default, Clone)]
pub(crate) struct Table {
    pub(crate) postgres: Option<Sourced<PostgresChoice>>,
    pub(crate) tmpfs: Option<Sourced<bool>>,
    pub(crate) isolation: Option<Sourced<Isolation>>,
    pub(crate) database_env: Option<Sourced<String>>,
    pub(crate) settings: BTreeMap<String, Setting>,
    pub(crate) timeout: Option<Sourced<Duration>>,
    pub(crate) slow_timeout: Option<Sourced<Duration>>,
    pub(crate) retries: Option<Sourced<u32>>,
    pub(crate) reuse: Option<Sourced<bool>>,
    pub(crate) group_read_only: Option<Sourced<bool>>,
    pub(crate) html: Option<Sourced<PathBuf>>,
    pub(crate) migrations: Option<Sourced<PathBuf>>,
    pub(crate) fixtures: Option<Sourced<Vec<PathBuf>>>,
    pub(crate) extensions: Option<Sourced<Vec<String>>>,
    pub(crate) server: Option<Sourced<String>>,
    /// The table's snapshots, in name order.
    pub(crate) snapshots: Vec<Snapshot>,
    /// `databases.NAME`, in name order.
    pub(crate) databases: Vec<super::extra::ExtraDatabase>,
}

/// A key of a parsed table and its value, spans included.
type Entry<'t, 'i> = (&'t Spanned<Cow<'i, str>>, &'t Spanned<DeValue<'i>>);

/// Which table of which manifest to read.
pub(crate) struct Source<'a> {
    /// `package` or `workspace`: the table read is `[<section>.metadata.pgtest]`.
    pub(crate) section: &'static str,
    pub(crate) manifest: &'a Path,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    fn header(&self) -> String {
        format!("[{}.metadata.pgtest]", self.section)
    }

    fn settings_header(&self) -> String {
        format!("[{}.metadata.pgtest.settings]", self.section)
    }

    fn origin(&self, table: String, offset: usize) -> Origin {
        Origin {
            table,
            manifest: self.manifest.to_owned(),
            line: Some(line_of(self.text, offset)),
        }
    }

    /// A key's value, converted, with the line it was written on.
    fn sourced<T, U>(
        &self,
        written: Option<Spanned<T>>,
        convert: impl FnOnce(T) -> U,
    ) -> Option<Sourced<U>> {
        written.map(|spanned| Sourced {
            origin: self.origin(self.header(), spanned.span().start),
            value: convert(spanned.into_inner()),
        })
    }

    /// The directory the table's paths are relative to.
    fn base_dir(&self) -> &Path {
        self.manifest.parent().unwrap_or(Path::new("."))
    }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Reads the source's pgtest table; a manifest without one gives an empty table.
pub(crate) fn read_table(source: &Source<'_>) -> Result<Table, ConfigError> {
    let document = DeTable::parse(source.text).map_err(|error| ConfigError::Syntax {
        manifest: source.manifest.to_owned(),
        line: error.span().map(|span| line_of(source.text, span.start)),
        message: error.message().to_owned(),
    })?;
    let Some((key, value)) = find_table(document.get_ref(), source.section) else {
        return Ok(Table::default());
    };
    let DeValue::Table(entries) = value.get_ref() else {
        return Err(ConfigError::WrongType {
            key: "pgtest".to_owned(),
            origin: Box::new(source.origin(source.header(), key.span().start)),
            expected: "a table".to_owned(),
            found: value.get_ref().type_str().to_owned(),
        });
    };
    check_keys(entries, source)?;
    check_snapshot_keys(entries, source)?;
    let text = TableText::deserialize(ValueDeserializer::from(value.clone()))
        .map_err(|error| refused(entries, source, &error))?;
    anchor(text, source)
}

/// `<section>.metadata.pgtest`, key and value, when the manifest has it.
fn find_table<'t, 'i>(document: &'t DeTable<'i>, section: &str) -> Option<Entry<'t, 'i>> {
    let DeValue::Table(section) = document.get(section)?.get_ref() else {
        return None;
    };
    let DeValue::Table(metadata) = section.get("metadata")?.get_ref() else {
        return None;
    };
    metadata.get_key_value("pgtest")
}

/// Refuses a key the schema does not have, naming the closest one.
fn check_keys(entries: &DeTable<'_>, source: &Source<'_>) -> Result<(), ConfigError> {
    match entries
        .keys()
        .find(|key| !KEYS.contains(&key.get_ref().as_ref()))
    {
        Some(key) => Err(ConfigError::UnknownKey {
            key: key.get_ref().to_string(),
            origin: Box::new(source.origin(source.header(), key.span().start)),
            suggestion: closest_key(key.get_ref()),
        }),
        None => super::extra::check_keys(entries, source.section, |table, offset| {
            source.origin(table, offset)
        }),
    }
}

/// Refuses a key a snapshot table does not have, naming the closest one.
fn check_snapshot_keys(entries: &DeTable<'_>, source: &Source<'_>) -> Result<(), ConfigError> {
    let Some(DeValue::Table(tables)) = entries.get("snapshots").map(Spanned::get_ref) else {
        return Ok(());
    };
    for (name, table) in tables {
        let DeValue::Table(keys) = table.get_ref() else {
            continue;
        };
        let unknown = keys
            .keys()
            .find(|key| !snapshots::SNAPSHOT_KEYS.contains(&key.get_ref().as_ref()));
        if let Some(key) = unknown {
            return Err(ConfigError::UnknownSnapshotKey {
                key: key.get_ref().to_string(),
                origin: Box::new(source.origin(
                    snapshots::header(source.section, name.get_ref()),
                    key.span().start,
                )),
                suggestion: snapshots::closest_snapshot_key(key.get_ref()),
            });
        }
    }
    Ok(())
}

/// The error for a value the schema refused, naming the key (or setting) whose value holds the error.
fn refused(entries: &DeTable<'_>, source: &Source<'_>, error: &toml::de::Error) -> ConfigError {
    let start = error.span().map_or(0, |span| span.start);
    let path = path_to(entries, start);
    let (header, key) = match path.as_slice() {
        ["settings", name, ..] => (source.settings_header(), *name),
        ["snapshots", name, key, ..] => (snapshots::header(source.section, name), *key),
        ["databases", name, key, ..] => (super::extra::header(source.section, name), *key),
        [key, ..] => (source.header(), *key),
        [] => (source.header(), "pgtest"),
    };
    ConfigError::refused(key, source.origin(header, start), error.message())
}

/// The keys leading to the value written at byte `offset`. A table written under its own `[header]` spans
/// only its header, so tables are searched key by key rather than by their span.
fn path_to<'t>(entries: &'t DeTable<'_>, offset: usize) -> Vec<&'t str> {
    for (key, value) in entries {
        if let DeValue::Table(inner) = value.get_ref() {
            let mut path = path_to(inner, offset);
            if !path.is_empty() {
                path.insert(0, key.get_ref().as_ref());
                return path;
            }
        }
        if key.span().start <= offset && offset < value.span().end.max(key.span().end) {
            return vec![key.get_ref().as_ref()];
        }
    }
    Vec::new()
}

/// Turns the table as written into values with origins and absolute paths.
fn anchor(text: TableText, source: &Source<'_>) -> Result<Table, ConfigError> {
    let base = source.base_dir();
    Ok(Table {
        postgres: source.sourced(text.postgres, |choice| match choice.0 {
            PostgresChoice::BinDir(dir) => PostgresChoice::BinDir(base.join(dir)),
            other => other,
        }),
        tmpfs: source.sourced(text.tmpfs, |flag| flag.0),
        server: source.sourced(text.server, |url| url),
        isolation: source.sourced(text.isolation, |isolation| isolation.0),
        database_env: source.sourced(text.database_env, |name| name.0),
        settings: settings(text.settings.unwrap_or_default(), source)?,
        timeout: source.sourced(text.timeout, |wait| wait.0),
        slow_timeout: source.sourced(text.slow_timeout, |wait| wait.0),
        retries: source.sourced(text.retries, |retries| retries),
        reuse: source.sourced(text.reuse, |flag| flag.0),
        group_read_only: source.sourced(text.group_read_only, |flag| flag.0),
        html: source.sourced(text.html, |file| base.join(file)),
        migrations: source.sourced(text.migrations, |dir| base.join(dir)),
        fixtures: source.sourced(text.fixtures, |files| {
            files.iter().map(|file| base.join(file)).collect()
        }),
        extensions: source.sourced(text.extensions, |names| {
            names.into_iter().map(|name| name.0).collect()
        }),
        snapshots: text
            .snapshots
            .unwrap_or_default()
            .into_iter()
            .map(|(name, table)| {
                let origin = source.origin(
                    snapshots::header(source.section, name.get_ref()),
                    name.span().start,
                );
                snapshots::anchor(name.into_inner(), table, origin, base)
            })
            .collect::<Result<_, _>>()?,
        databases: super::extra::anchor(
            text.databases.unwrap_or_default(),
            source.section,
            base,
            |table, offset| source.origin(table, offset),
        )?,
    })
}

fn settings(
    written: BTreeMap<Spanned<String>, Spanned<SettingText>>,
    source: &Source<'_>,
) -> Result<BTreeMap<String, Setting>, ConfigError> {
    let mut settings = BTreeMap::new();
    for (name, value) in written {
        let origin = source.origin(source.settings_header(), name.span().start);
        let name = name.into_inner();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid_name {
            return Err(ConfigError::BadValue {
                key: name,
                origin: Box::new(origin),
                reason: "not a PostgreSQL setting name".to_owned(),
            });
        }
        let value = value.into_inner().0;
        settings.insert(
            name.clone(),
            Setting {
                name,
                value,
                origin,
            },
        );
    }
    Ok(settings)
}
