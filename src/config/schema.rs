//! The pgtest table as written in a Cargo.toml: serde types, each key's value wrapped in a [`Spanned`] so
//! the line it came from survives deserialization. Values are checked here (a refusal is a serde error
//! with a reason a person can act on); paths stay as written until [`super::manifest`] anchors them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::{Isolation, PostgresChoice};

/// Every key of a pgtest table, sorted (for suggestions and for the list shown when none is close).
pub(crate) const KEYS: &[&str] = &[
    "database_env",
    "databases",
    "extensions",
    "fixtures",
    "group_read_only",
    "html",
    "isolation",
    "migrations",
    "postgres",
    "retries",
    "reuse",
    "server",
    "settings",
    "slow_timeout",
    "snapshots",
    "timeout",
    "tmpfs",
];

/// `[package.metadata.pgtest]` or `[workspace.metadata.pgtest]`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableText {
    pub(crate) postgres: Option<Spanned<PostgresText>>,
    pub(crate) tmpfs: Option<Spanned<Flag>>,
    pub(crate) isolation: Option<Spanned<IsolationText>>,
    pub(crate) database_env: Option<Spanned<EnvName>>,
    pub(crate) settings: Option<BTreeMap<Spanned<String>, Spanned<SettingText>>>,
    pub(crate) timeout: Option<Spanned<Wait>>,
    pub(crate) slow_timeout: Option<Spanned<Wait>>,
    /// How many more times a failing test runs before its failure counts.
    pub(crate) retries: Option<Spanned<u32>>,
    /// Whether a database its test left untouched is handed to the next test (on by default).
    pub(crate) reuse: Option<Spanned<Flag>>,
    /// Whether tests that read only in earlier runs run together, one database per group (on by default).
    pub(crate) group_read_only: Option<Spanned<Flag>>,
    /// Where every run writes its HTML report (relative to the manifest), as `--html` does.
    pub(crate) html: Option<Spanned<String>>,
    pub(crate) migrations: Option<Spanned<String>>,
    pub(crate) fixtures: Option<Spanned<Vec<String>>>,
    pub(crate) extensions: Option<Spanned<Vec<ExtensionName>>>,
    /// An existing server's URL, used instead of a cluster of our own.
    pub(crate) server: Option<Spanned<String>>,
    /// Named database states tests start from (see [`super::snapshots`]).
    pub(crate) snapshots: Option<super::snapshots::SnapshotsText>,
    /// `databases.NAME`: the extra databases every test gets a copy of (see [`super::extra`]).
    pub(crate) databases: Option<BTreeMap<Spanned<String>, Spanned<super::extra::DatabaseText>>>,
}

/// `postgres`: a major version (`15` or `"15"`), a bin directory (relative to the manifest until anchored),
/// or a table `{ version = "17", fetch = true }` that asks for that major to be fetched when set.
#[derive(Debug)]
pub(crate) struct PostgresText(pub(crate) PostgresChoice);

impl<'de> Deserialize<'de> for PostgresText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(PostgresVisitor)
            .map(PostgresText)
    }
}

struct PostgresVisitor;

impl PostgresVisitor {
    fn not_major<E: de::Error>(written: impl fmt::Display) -> E {
        E::custom(format!(
            "`{written}` is not a major version; write the major version only, such as \"15\""
        ))
    }
}

impl<'de> Visitor<'de> for PostgresVisitor {
    type Value = PostgresChoice;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a major version such as \"15\", a bin directory, or { version = \"17\", fetch = true }",
        )
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let table = PostgresTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
        let Some(version) = table.version else {
            return Err(de::Error::custom(
                "the table needs a `version`, the major to use, such as { version = \"17\", fetch = true }",
            ));
        };
        let major = match version {
            MajorText::Number(number) => {
                u32::try_from(number).map_err(|_| Self::not_major(number))?
            }
            MajorText::Text(text) => text.parse().map_err(|_| Self::not_major(&text))?,
        };
        Ok(if table.fetch {
            PostgresChoice::Fetch(major)
        } else {
            PostgresChoice::Major(major)
        })
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Self::Value, E> {
        u32::try_from(number)
            .map(PostgresChoice::Major)
            .map_err(|_| Self::not_major(number))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Self::Value, E> {
        u32::try_from(number)
            .map(PostgresChoice::Major)
            .map_err(|_| Self::not_major(number))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Self::Value, E> {
        Err(Self::not_major(number))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        if let Ok(major) = text.parse::<u32>() {
            return Ok(PostgresChoice::Major(major));
        }
        if text.is_empty() || text.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(Self::not_major(text));
        }
        Ok(PostgresChoice::BinDir(PathBuf::from(text)))
    }
}

/// `postgres = { version = "17", fetch = true }`: the major, and whether to fetch it (false: as `"17"`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresTable {
    version: Option<MajorText>,
    #[serde(default)]
    fetch: bool,
}

/// The `version` of a `postgres` table: `17` or `"17"`.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a major version such as \"17\"")]
enum MajorText {
    Number(i64),
    Text(String),
}

/// `tmpfs`: a TOML boolean, named the way a person writes it in errors.
#[derive(Debug)]
pub(crate) struct Flag(pub(crate) bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bool(FlagVisitor).map(Flag)
    }
}

struct FlagVisitor;

impl Visitor<'_> for FlagVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true or false")
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<bool, E> {
        Ok(flag)
    }
}

/// `isolation`: `"test"` or `"shared"`.
#[derive(Debug)]
pub(crate) struct IsolationText(pub(crate) Isolation);

impl<'de> Deserialize<'de> for IsolationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "test" => Ok(IsolationText(Isolation::Test)),
            "shared" => Ok(IsolationText(Isolation::Shared)),
            other => Err(de::Error::custom(format!(
                "`{other}` is neither \"test\" nor \"shared\""
            ))),
        }
    }
}

/// `database_env`: the name of an environment variable.
#[derive(Debug)]
pub(crate) struct EnvName(pub(crate) String);

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(de::Error::custom(format!(
                "`{name}` is not an environment variable name"
            )));
        }
        Ok(EnvName(name))
    }
}

/// One of `extensions`: a name `CREATE EXTENSION` can quote.
#[derive(Debug)]
pub(crate) struct ExtensionName(pub(crate) String);

impl<'de> Deserialize<'de> for ExtensionName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name.is_empty() || name.contains(['"', '\0']) {
            return Err(de::Error::custom(format!(
                "`{name}` is not an extension name"
            )));
        }
        Ok(ExtensionName(name))
    }
}

/// A value in the `settings` table, in postgresql.conf's spelling (booleans become `on`/`off`).
#[derive(Debug)]
pub(crate) struct SettingText(pub(crate) String);

impl<'de> Deserialize<'de> for SettingText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(SettingVisitor)
            .map(SettingText)
    }
}

struct SettingVisitor;

impl Visitor<'_> for SettingVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<String, E> {
        Ok(if flag { "on" } else { "off" }.to_owned())
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<String, E> {
        Ok(number.to_string())
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<String, E> {
        Ok(number.to_string())
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<String, E> {
        if number.is_finite() {
            Ok(number.to_string())
        } else {
            Err(E::custom(format!(
                "{number} is not a number PostgreSQL reads"
            )))
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
        Ok(text.to_owned())
    }
}

/// `timeout`, `slow_timeout`: a number of seconds, or a duration in humantime's spelling ("90s", "2m").
#[derive(Debug)]
pub(crate) struct Wait(pub(crate) Duration);

impl<'de> Deserialize<'de> for Wait {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WaitVisitor).map(Wait)
    }
}

struct WaitVisitor;

impl WaitVisitor {
    fn positive<E: de::Error>(
        duration: Duration,
        written: impl fmt::Display,
    ) -> Result<Duration, E> {
        if duration.is_zero() {
            return Err(E::custom(format!("{written} is not a positive duration")));
        }
        Ok(duration)
    }

    fn seconds<E: de::Error>(seconds: f64) -> Result<Duration, E> {
        if seconds.is_nan() || seconds <= 0.0 {
            return Err(E::custom(format!("{seconds} is not a positive duration")));
        }
        Duration::try_from_secs_f64(seconds).map_err(|_| {
            E::custom(format!(
                "{seconds} seconds is longer than any test can be waited for"
            ))
        })
    }
}

impl Visitor<'_> for WaitVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number of seconds or a string such as \"90s\"")
    }

    fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Duration, E> {
        match u64::try_from(seconds) {
            Ok(seconds) => Self::positive(Duration::from_secs(seconds), seconds),
            Err(_) => Err(E::custom(format!("{seconds} is not a positive duration"))),
        }
    }

    fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Duration, E> {
        Self::positive(Duration::from_secs(seconds), seconds)
    }

    fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<Duration, E> {
        Self::seconds(seconds)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        if let Ok(seconds) = text.trim().parse::<f64>() {
            return Self::seconds(seconds);
        }
        match humantime::parse_duration(text) {
            Ok(duration) => Self::positive(duration, format!("`{text}`")),
            Err(error) => Err(E::custom(format!(
                "`{text}` is not a duration ({error}); write a number of seconds or \"90s\", \"2m\", \"500ms\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Result<TableText, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn keys_lists_every_field_of_the_table() {
        // serde names the fields it expects when it meets an unknown one: that list must be KEYS.
        let message = table("zzz = 1").unwrap_err().message().to_owned();
        let mut named: Vec<&str> = message.split('`').skip(3).step_by(2).collect();
        named.sort_unstable();
        assert_eq!(named, KEYS, "{message}");
    }

    #[test]
    fn durations_are_seconds_or_humantime() {
        let wait = |text: &str| table(text).map(|t| t.timeout.unwrap().into_inner().0);
        assert_eq!(wait("timeout = 90").unwrap(), Duration::from_secs(90));
        assert_eq!(wait("timeout = 1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(wait("timeout = \"2m\"").unwrap(), Duration::from_secs(120));
        assert_eq!(
            wait("timeout = \"500ms\"").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            wait("timeout = \"1h 30m\"").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(wait("timeout = \"45\"").unwrap(), Duration::from_secs(45));
        for bad in [
            "timeout = \"soon\"",
            "timeout = 0",
            "timeout = -3",
            "timeout = \"0s\"",
            "timeout = nan",
            "timeout = 1e300",
            "timeout = \"1e300m\"",
            "timeout = true",
        ] {
            assert!(wait(bad).is_err(), "{bad} was accepted");
        }
        let message = wait("timeout = \"soon\"").unwrap_err().message().to_owned();
        assert!(message.contains("\"90s\""), "{message}");
    }

    #[test]
    fn postgres_is_a_major_version_or_a_directory() {
        let choice = |text: &str| table(text).map(|t| t.postgres.unwrap().into_inner().0);
        assert_eq!(choice("postgres = 16").unwrap(), PostgresChoice::Major(16));
        assert_eq!(
            choice("postgres = \"15\"").unwrap(),
            PostgresChoice::Major(15)
        );
        assert_eq!(
            choice("postgres = \"/opt/pg/bin\"").unwrap(),
            PostgresChoice::BinDir(PathBuf::from("/opt/pg/bin"))
        );
        for bad in [
            "postgres = \"15.4\"",
            "postgres = 15.4",
            "postgres = -1",
            "postgres = \"\"",
        ] {
            let message = choice(bad).unwrap_err().message().to_owned();
            assert!(message.contains("major version"), "{bad}: {message}");
        }
        assert!(choice("postgres = true").is_err());
    }

    #[test]
    fn postgres_as_a_table_asks_for_a_major_to_be_fetched() {
        let choice = |text: &str| {
            table(text)
                .map(|t| t.postgres.unwrap().into_inner().0)
                .map_err(|e| e.message().to_owned())
        };
        assert_eq!(
            choice("postgres = { version = \"17\", fetch = true }"),
            Ok(PostgresChoice::Fetch(17))
        );
        assert_eq!(
            choice("postgres = { version = 16, fetch = true }"),
            Ok(PostgresChoice::Fetch(16))
        );
        assert_eq!(
            choice("postgres = { version = \"15\", fetch = false }"),
            Ok(PostgresChoice::Major(15))
        );
        assert_eq!(
            choice("postgres = { version = \"15\" }"),
            Ok(PostgresChoice::Major(15))
        );
        let refused = |text: &str| choice(text).unwrap_err();
        assert!(refused("postgres = { fetch = true }").contains("needs a `version`"));
        assert!(
            refused("postgres = { version = \"17.2\", fetch = true }").contains("major version")
        );
        assert!(refused("postgres = { version = -1, fetch = true }").contains("major version"));
        assert!(refused("postgres = { version = \"17\", fetch = \"yes\" }").contains("boolean"));
        assert!(refused("postgres = { version = \"17\", fecth = true }").contains("fecth"));
    }

    #[test]
    fn settings_take_strings_numbers_and_booleans() {
        let settings =
            table("settings = { work_mem = \"8MB\", max_connections = 50, fsync = false }")
                .unwrap()
                .settings
                .unwrap();
        let values: Vec<(&str, &str)> = settings
            .iter()
            .map(|(name, value)| (name.get_ref().as_str(), value.get_ref().0.as_str()))
            .collect();
        assert_eq!(
            values,
            [
                ("fsync", "off"),
                ("max_connections", "50"),
                ("work_mem", "8MB")
            ]
        );
        assert!(table("settings = { work_mem = [\"8MB\"] }").is_err());
        assert!(table("settings = \"work_mem=8MB\"").is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(table("isolation = \"none\"")
            .unwrap_err()
            .message()
            .contains("\"shared\""));
        assert!(table("database_env = \"A=B\"").is_err());
        assert!(table("database_env = \"\"").is_err());
        assert!(table("extensions = [\"pg\\\"crypto\"]").is_err());
        assert!(table("extensions = \"pgcrypto\"").is_err());
        assert!(table("fixtures = [1]").is_err());
    }
}
