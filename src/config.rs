//! Turns the `[workspace.metadata.pgtest]` and `[package.metadata.pgtest]` tables (as `cargo metadata` hands
//! them over) and the command-line flags into one checked [`Config`]. No I/O but [`Config::check_paths`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// Keys that shape the one cluster of a run (and so must agree across the packages being tested).
const RUN_KEYS: &[&str] = &[
    "postgres",
    "tmpfs",
    "isolation",
    "database_env",
    "settings",
    "timeout",
    "slow_timeout",
];
/// Keys that shape a package's template database.
const DATABASE_KEYS: &[&str] = &["migrations", "fixtures", "extensions"];

const DEFAULT_DATABASE_ENV: &str = "DATABASE_URL";
const DEFAULT_SLOW_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything a run needs to know, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub postgres: PostgresChoice,
    pub tmpfs: bool,
    pub isolation: Isolation,
    /// Name of the environment variable that carries the connection URL.
    pub database_env: String,
    /// PostgreSQL settings from the user, over cargo-pgtest's fast defaults.
    pub settings: Vec<Setting>,
    /// How many tests run at once.
    pub jobs: usize,
    /// A test running longer than this is killed and reported as TIMEOUT.
    pub timeout: Option<Duration>,
    /// A test running longer than this is reported as slow (once) while it goes on.
    pub slow_timeout: Duration,
    /// The distinct template databases the tested packages need.
    pub databases: Vec<DatabaseSpec>,
    /// Package name → index into `databases`.
    pub package_database: BTreeMap<String, usize>,
}

/// Which PostgreSQL installation to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresChoice {
    /// The newest major version found.
    Newest,
    /// This major version (for example 15).
    Major(u32),
    /// The binaries in this directory.
    BinDir(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A fresh database cloned from the template for every test.
    Test,
    /// One migrated database for the whole run.
    Shared,
}

/// One `postgresql.conf` setting chosen by the user, and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub origin: Origin,
}

/// What goes into one template database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatabaseSpec {
    /// The sqlx-layout migrations directory, if any.
    pub migrations: Option<PathBuf>,
    /// SQL files applied after the migrations, in order.
    pub fixtures: Vec<PathBuf>,
    /// Extensions created before the migrations run.
    pub extensions: Vec<String>,
}

/// Where a key was written: table, manifest and (when found) line, for error messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub table: String,
    pub manifest: PathBuf,
    pub line: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.table, self.manifest.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        Ok(())
    }
}

/// The workspace as `cargo metadata` describes it, reduced to what configuration needs.
#[derive(Debug, Clone, Default)]
pub struct Workspace {
    pub root: PathBuf,
    /// `[workspace.metadata]`, if any.
    pub metadata: Value,
    /// Text of the workspace's root Cargo.toml, used to point errors at a line.
    pub root_manifest_text: String,
    pub members: Vec<Member>,
    /// Names of the members `cargo test` will test with the given flags.
    pub selected: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Member {
    pub name: String,
    pub manifest_path: PathBuf,
    /// `[package.metadata]`, if any.
    pub metadata: Value,
    pub manifest_text: String,
}

/// The flags that override configuration keys.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub no_tmpfs: bool,
    pub jobs: Option<usize>,
    pub isolation: Option<Isolation>,
    pub timeout: Option<Duration>,
    /// `--test-threads N` after `--`, which means the same as `--jobs` for cargo test.
    pub test_threads: Option<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("unknown key `{key}` in {origin}{}", suggestion_text(.suggestion))]
    UnknownKey {
        key: String,
        origin: Origin,
        suggestion: Option<&'static str>,
    },
    #[error("`{key}` in {origin} must be {expected}, but it is {found}")]
    WrongType {
        key: String,
        origin: Origin,
        expected: &'static str,
        found: String,
    },
    #[error("`{key}` in {origin} is invalid: {reason}")]
    BadValue {
        key: String,
        origin: Origin,
        reason: String,
    },
    #[error(
        "`{key}` in {origin} names {path}, which does not exist; fix the path or remove the key"
    )]
    MissingPath {
        key: String,
        origin: Origin,
        path: PathBuf,
    },
    #[error(
        "packages `{first}` and `{second}` set `{key}` differently, but one run has one cluster; \
         set it once in [workspace.metadata.pgtest] or test the packages separately with -p"
    )]
    Conflict {
        key: String,
        first: String,
        second: String,
    },
}

fn suggestion_text(suggestion: &Option<&'static str>) -> String {
    match suggestion {
        Some(key) => format!("; did you mean `{key}`?"),
        None => format!("; valid keys are {}", all_keys().join(", ")),
    }
}

fn all_keys() -> Vec<&'static str> {
    let mut keys: Vec<_> = RUN_KEYS.iter().chain(DATABASE_KEYS).copied().collect();
    keys.sort_unstable();
    keys
}

/// One pgtest table, checked, with paths made absolute against the directory of its manifest.
#[derive(Debug, Default, Clone)]
struct Table {
    postgres: Option<PostgresChoice>,
    tmpfs: Option<bool>,
    isolation: Option<Isolation>,
    database_env: Option<String>,
    settings: BTreeMap<String, Setting>,
    timeout: Option<Duration>,
    slow_timeout: Option<Duration>,
    migrations: Option<PathBuf>,
    fixtures: Option<Vec<PathBuf>>,
    extensions: Option<Vec<String>>,
}

/// Where one table lives, for reading it and for pointing at it.
struct TableSource<'a> {
    header: &'static str,
    manifest: &'a Path,
    manifest_text: &'a str,
    base_dir: &'a Path,
}

impl TableSource<'_> {
    fn origin(&self, key: &str) -> Origin {
        let dotted = format!("{}.{key}", self.header.trim_matches(['[', ']']));
        Origin {
            table: self.header.to_owned(),
            manifest: self.manifest.to_owned(),
            line: find_key_line(self.manifest_text, &dotted),
        }
    }

    fn settings_origin(&self, key: &str) -> Origin {
        let table = format!("{}.settings", self.header.trim_end_matches(']'));
        let dotted = format!("{}.{key}", table.trim_start_matches('['));
        Origin {
            table: format!("{table}]"),
            manifest: self.manifest.to_owned(),
            line: find_key_line(self.manifest_text, &dotted),
        }
    }
}

/// Resolves the configuration of a run.
pub fn resolve(
    workspace: &Workspace,
    overrides: &Overrides,
    cpus: usize,
) -> Result<Config, ConfigError> {
    let root_manifest = workspace.root.join("Cargo.toml");
    let workspace_table = parse_table(
        workspace.metadata.get("pgtest"),
        &TableSource {
            header: "[workspace.metadata.pgtest]",
            manifest: &root_manifest,
            manifest_text: &workspace.root_manifest_text,
            base_dir: &workspace.root,
        },
    )?;

    let mut run = workspace_table.clone();
    let mut run_owner: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut databases: Vec<DatabaseSpec> = Vec::new();
    let mut package_database = BTreeMap::new();

    for member in &workspace.members {
        let package_dir = member.manifest_path.parent().unwrap_or(Path::new("."));
        let table = parse_table(
            member.metadata.get("pgtest"),
            &TableSource {
                header: "[package.metadata.pgtest]",
                manifest: &member.manifest_path,
                manifest_text: &member.manifest_text,
                base_dir: package_dir,
            },
        )?;
        if !workspace.selected.contains(&member.name) {
            continue;
        }
        merge_run_keys(&mut run, &table, &member.name, &mut run_owner)?;

        let default_migrations = package_dir.join("migrations");
        let spec = DatabaseSpec {
            migrations: table
                .migrations
                .clone()
                .or(workspace_table.migrations.clone())
                .or_else(|| {
                    // The conventional directory is used when it exists, as sqlx's `migrate!()` does.
                    default_migrations.is_dir().then_some(default_migrations)
                }),
            fixtures: table
                .fixtures
                .clone()
                .or(workspace_table.fixtures.clone())
                .unwrap_or_default(),
            extensions: table
                .extensions
                .clone()
                .or(workspace_table.extensions.clone())
                .unwrap_or_default(),
        };
        let index = databases
            .iter()
            .position(|known| *known == spec)
            .unwrap_or_else(|| {
                databases.push(spec);
                databases.len() - 1
            });
        package_database.insert(member.name.clone(), index);
    }

    let isolation = overrides
        .isolation
        .or(run.isolation)
        .unwrap_or(Isolation::Test);
    Ok(Config {
        postgres: run.postgres.unwrap_or(PostgresChoice::Newest),
        tmpfs: !overrides.no_tmpfs && run.tmpfs.unwrap_or(true),
        isolation,
        database_env: run
            .database_env
            .unwrap_or_else(|| DEFAULT_DATABASE_ENV.to_owned()),
        settings: run.settings.into_values().collect(),
        jobs: overrides
            .jobs
            .or(overrides.test_threads)
            .unwrap_or(cpus)
            .max(1),
        timeout: overrides.timeout.or(run.timeout),
        slow_timeout: run.slow_timeout.unwrap_or(DEFAULT_SLOW_TIMEOUT),
        databases,
        package_database,
    })
}

/// Lays a selected package's run-level keys over the run's, refusing two packages that disagree.
fn merge_run_keys(
    run: &mut Table,
    package: &Table,
    package_name: &str,
    owners: &mut BTreeMap<&'static str, String>,
) -> Result<(), ConfigError> {
    fn take<T: Clone + PartialEq>(
        key: &'static str,
        run_value: &mut Option<T>,
        package_value: &Option<T>,
        package_name: &str,
        owners: &mut BTreeMap<&'static str, String>,
    ) -> Result<(), ConfigError> {
        let Some(value) = package_value else {
            return Ok(());
        };
        if let Some(owner) = owners.get(key) {
            if run_value.as_ref() != Some(value) {
                return Err(ConfigError::Conflict {
                    key: key.to_owned(),
                    first: owner.clone(),
                    second: package_name.to_owned(),
                });
            }
        }
        owners.insert(key, package_name.to_owned());
        *run_value = Some(value.clone());
        Ok(())
    }
    take(
        "postgres",
        &mut run.postgres,
        &package.postgres,
        package_name,
        owners,
    )?;
    take(
        "tmpfs",
        &mut run.tmpfs,
        &package.tmpfs,
        package_name,
        owners,
    )?;
    take(
        "isolation",
        &mut run.isolation,
        &package.isolation,
        package_name,
        owners,
    )?;
    take(
        "database_env",
        &mut run.database_env,
        &package.database_env,
        package_name,
        owners,
    )?;
    take(
        "timeout",
        &mut run.timeout,
        &package.timeout,
        package_name,
        owners,
    )?;
    take(
        "slow_timeout",
        &mut run.slow_timeout,
        &package.slow_timeout,
        package_name,
        owners,
    )?;
    for (name, setting) in &package.settings {
        let key: &'static str = "settings";
        if let Some(existing) = run.settings.get(name) {
            if existing.value != setting.value && owners.contains_key(key) {
                return Err(ConfigError::Conflict {
                    key: format!("settings.{name}"),
                    first: owners[key].clone(),
                    second: package_name.to_owned(),
                });
            }
        }
        owners.insert(key, package_name.to_owned());
        run.settings.insert(name.clone(), setting.clone());
    }
    Ok(())
}

fn parse_table(value: Option<&Value>, source: &TableSource<'_>) -> Result<Table, ConfigError> {
    let mut table = Table::default();
    // TOML has no null; treat one (from a hand-made metadata value) as no table.
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(table);
    };
    let Some(entries) = value.as_object() else {
        return Err(wrong_type(
            "pgtest",
            source.origin("pgtest"),
            "a table",
            value,
        ));
    };
    for (key, value) in entries {
        let origin = || source.origin(key);
        match key.as_str() {
            "postgres" => table.postgres = Some(parse_postgres(value, origin(), source.base_dir)?),
            "tmpfs" => table.tmpfs = Some(expect_bool(key, value, origin())?),
            "isolation" => {
                table.isolation = Some(match expect_str(key, value, origin())? {
                    "test" => Isolation::Test,
                    "shared" => Isolation::Shared,
                    other => {
                        return Err(bad_value(
                            key,
                            origin(),
                            format!("`{other}` is neither \"test\" nor \"shared\""),
                        ))
                    }
                })
            }
            "database_env" => {
                let name = expect_str(key, value, origin())?;
                if name.is_empty() || name.contains(['=', '\0']) {
                    return Err(bad_value(
                        key,
                        origin(),
                        format!("`{name}` is not an environment variable name"),
                    ));
                }
                table.database_env = Some(name.to_owned());
            }
            "timeout" => table.timeout = Some(parse_duration(key, value, origin())?),
            "slow_timeout" => table.slow_timeout = Some(parse_duration(key, value, origin())?),
            "migrations" => {
                table.migrations = Some(source.base_dir.join(expect_str(key, value, origin())?))
            }
            "fixtures" => {
                let files = expect_str_list(key, value, origin())?;
                table.fixtures = Some(
                    files
                        .iter()
                        .map(|file| source.base_dir.join(file))
                        .collect(),
                );
            }
            "extensions" => {
                let names = expect_str_list(key, value, origin())?;
                if let Some(bad) = names
                    .iter()
                    .find(|name| name.is_empty() || name.contains('"'))
                {
                    return Err(bad_value(
                        key,
                        origin(),
                        format!("`{bad}` is not an extension name"),
                    ));
                }
                table.extensions = Some(names);
            }
            "settings" => table.settings = parse_settings(value, source)?,
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.clone(),
                    origin: origin(),
                    suggestion: closest_key(key),
                })
            }
        }
    }
    Ok(table)
}

fn parse_settings(
    value: &Value,
    source: &TableSource<'_>,
) -> Result<BTreeMap<String, Setting>, ConfigError> {
    let Some(entries) = value.as_object() else {
        return Err(wrong_type(
            "settings",
            source.origin("settings"),
            "a table of PostgreSQL settings",
            value,
        ));
    };
    let mut settings = BTreeMap::new();
    for (name, value) in entries {
        let origin = source.settings_origin(name);
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid_name {
            return Err(bad_value(
                name,
                origin,
                "not a PostgreSQL setting name".to_owned(),
            ));
        }
        let value = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => if *flag { "on" } else { "off" }.to_owned(),
            other => {
                return Err(wrong_type(
                    name,
                    origin,
                    "a string, number or boolean",
                    other,
                ))
            }
        };
        settings.insert(
            name.clone(),
            Setting {
                name: name.clone(),
                value,
                origin,
            },
        );
    }
    Ok(settings)
}

fn parse_postgres(
    value: &Value,
    origin: Origin,
    base_dir: &Path,
) -> Result<PostgresChoice, ConfigError> {
    let text = match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.clone(),
        other => {
            return Err(wrong_type(
                "postgres",
                origin,
                "a major version such as \"15\" or a bin directory",
                other,
            ))
        }
    };
    if let Ok(major) = text.parse::<u32>() {
        return Ok(PostgresChoice::Major(major));
    }
    if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad_value(
            "postgres",
            origin,
            format!(
                "`{text}` is not a major version; write the major version only, such as \"15\""
            ),
        ));
    }
    Ok(PostgresChoice::BinDir(base_dir.join(text)))
}

/// Accepts a number of seconds, or a string such as "90s", "2m" or "500ms".
fn parse_duration(key: &str, value: &Value, origin: Origin) -> Result<Duration, ConfigError> {
    let invalid = |what: String| bad_value(key, origin.clone(), what);
    let seconds = match value {
        Value::Number(number) => number.as_f64().unwrap_or(-1.0),
        Value::String(text) => parse_duration_text(text).ok_or_else(|| {
            invalid(format!("`{text}` is not a duration; write a number of seconds or \"90s\", \"2m\", \"500ms\""))
        })?,
        other => return Err(wrong_type(key, origin, "a number of seconds or a string such as \"90s\"", other)),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(invalid(format!("{value} is not a positive duration")));
    }
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| invalid(format!("{value} is longer than any test can be waited for")))
}

fn parse_duration_text(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = if let Some(number) = text.strip_suffix("ms") {
        (number, 0.001)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1.0)
    } else if let Some(number) = text.strip_suffix('m') {
        (number, 60.0)
    } else if let Some(number) = text.strip_suffix('h') {
        (number, 3600.0)
    } else {
        (text, 1.0)
    };
    number.trim().parse::<f64>().ok().map(|n| n * scale)
}

fn expect_bool(key: &str, value: &Value, origin: Origin) -> Result<bool, ConfigError> {
    value
        .as_bool()
        .ok_or_else(|| wrong_type(key, origin, "true or false", value))
}

fn expect_str<'v>(key: &str, value: &'v Value, origin: Origin) -> Result<&'v str, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| wrong_type(key, origin, "a string", value))
}

fn expect_str_list(key: &str, value: &Value, origin: Origin) -> Result<Vec<String>, ConfigError> {
    let expected = "a list of strings";
    let items = value
        .as_array()
        .ok_or_else(|| wrong_type(key, origin.clone(), expected, value))?;
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| wrong_type(key, origin.clone(), expected, value))
        })
        .collect()
}

fn wrong_type(key: &str, origin: Origin, expected: &'static str, found: &Value) -> ConfigError {
    let found = match found {
        Value::Null => "empty".to_owned(),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) => format!("the string \"{text}\""),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a table".to_owned(),
    };
    ConfigError::WrongType {
        key: key.to_owned(),
        origin,
        expected,
        found,
    }
}

fn bad_value(key: &str, origin: Origin, reason: String) -> ConfigError {
    ConfigError::BadValue {
        key: key.to_owned(),
        origin,
        reason,
    }
}

/// The valid key closest to a misspelt one, when it is close enough to be what was meant.
fn closest_key(unknown: &str) -> Option<&'static str> {
    let unknown = unknown.to_ascii_lowercase().replace('-', "_");
    all_keys()
        .into_iter()
        .map(|key| (edit_distance(&unknown, key), key))
        .filter(|(distance, key)| *distance <= (key.len() / 3).max(1))
        .min()
        .map(|(_, key)| key)
}

/// Levenshtein distance, counting a swap of two neighbours as one edit (as typos usually are).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for j in 0..=b.len() {
        rows[0][j] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// Finds the line (1-based) of a dotted key such as `package.metadata.pgtest.migrations` in a manifest,
/// written under its table header (`[package.metadata.pgtest]` then `migrations = …`) or in dotted form
/// under a shorter header.
pub fn find_key_line(text: &str, dotted_key: &str) -> Option<usize> {
    let mut table = String::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            table = line.trim_matches(['[', ']']).replace(' ', "");
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key: String = key
            .split('.')
            .map(|part| part.trim().trim_matches('"'))
            .collect::<Vec<_>>()
            .join(".");
        let full = if table.is_empty() {
            key
        } else {
            format!("{table}.{key}")
        };
        if full == dotted_key {
            return Some(index + 1);
        }
    }
    None
}

impl Config {
    /// Checks that every configured file and directory exists, before anything is started.
    pub fn check_paths(&self, workspace: &Workspace) -> Result<(), ConfigError> {
        for spec in &self.databases {
            if let Some(dir) = &spec.migrations {
                if !dir.is_dir() {
                    return Err(missing_path(workspace, "migrations", dir));
                }
            }
            for file in &spec.fixtures {
                if !file.is_file() {
                    return Err(missing_path(workspace, "fixtures", file));
                }
            }
        }
        if let PostgresChoice::BinDir(dir) = &self.postgres {
            if !dir.is_dir() {
                return Err(missing_path(workspace, "postgres", dir));
            }
        }
        Ok(())
    }
}

/// Builds the error for a missing path, pointing at the table that set it.
fn missing_path(workspace: &Workspace, key: &str, path: &Path) -> ConfigError {
    let package_origin = workspace.members.iter().find_map(|member| {
        let dotted = format!("package.metadata.pgtest.{key}");
        find_key_line(&member.manifest_text, &dotted).map(|line| Origin {
            table: "[package.metadata.pgtest]".to_owned(),
            manifest: member.manifest_path.clone(),
            line: Some(line),
        })
    });
    let origin = package_origin.unwrap_or_else(|| Origin {
        table: "[workspace.metadata.pgtest]".to_owned(),
        manifest: workspace.root.join("Cargo.toml"),
        line: find_key_line(
            &workspace.root_manifest_text,
            &format!("workspace.metadata.pgtest.{key}"),
        ),
    });
    ConfigError::MissingPath {
        key: key.to_owned(),
        origin,
        path: path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn package(manifest_text: &str, pgtest: Value) -> Workspace {
        Workspace {
            root: PathBuf::from("/p"),
            metadata: Value::Null,
            root_manifest_text: manifest_text.to_owned(),
            members: vec![Member {
                name: "app".into(),
                manifest_path: PathBuf::from("/p/Cargo.toml"),
                metadata: json!({ "pgtest": pgtest }),
                manifest_text: manifest_text.to_owned(),
            }],
            selected: vec!["app".into()],
        }
    }

    fn resolve_one(pgtest: Value) -> Result<Config, ConfigError> {
        resolve(&package("", pgtest), &Overrides::default(), 4)
    }

    #[test]
    fn a_project_without_a_table_gets_the_defaults() {
        let mut workspace = package("", Value::Null);
        workspace.members[0].metadata = Value::Null;
        let config = resolve(&workspace, &Overrides::default(), 4).unwrap();
        assert_eq!(config.postgres, PostgresChoice::Newest);
        assert!(config.tmpfs);
        assert_eq!(config.isolation, Isolation::Test);
        assert_eq!(config.database_env, "DATABASE_URL");
        assert_eq!(config.jobs, 4);
        assert_eq!(config.databases.len(), 1);
        assert_eq!(config.package_database["app"], 0);
    }

    #[test]
    fn every_documented_key_is_read() {
        let config = resolve_one(json!({
            "migrations": "db/migrations",
            "fixtures": ["seed/base.sql", "seed/more.sql"],
            "postgres": "15",
            "tmpfs": false,
            "isolation": "shared",
            "database_env": "PG_URL",
            "extensions": ["pgcrypto"],
            "settings": { "work_mem": "8MB", "max_connections": 50, "autovacuum": false },
            "timeout": "2m",
            "slow_timeout": 5,
        }))
        .unwrap();
        assert_eq!(config.postgres, PostgresChoice::Major(15));
        assert!(!config.tmpfs);
        assert_eq!(config.isolation, Isolation::Shared);
        assert_eq!(config.database_env, "PG_URL");
        assert_eq!(config.timeout, Some(Duration::from_secs(120)));
        assert_eq!(config.slow_timeout, Duration::from_secs(5));
        let spec = &config.databases[0];
        assert_eq!(
            spec.migrations.as_deref(),
            Some(Path::new("/p/db/migrations"))
        );
        assert_eq!(
            spec.fixtures,
            [
                PathBuf::from("/p/seed/base.sql"),
                PathBuf::from("/p/seed/more.sql")
            ]
        );
        assert_eq!(spec.extensions, ["pgcrypto"]);
        let settings: Vec<_> = config
            .settings
            .iter()
            .map(|s| (s.name.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            settings,
            [
                ("autovacuum", "off"),
                ("max_connections", "50"),
                ("work_mem", "8MB")
            ]
        );
    }

    #[test]
    fn a_typo_names_the_key_its_line_and_the_closest_valid_key() {
        let text =
            "[package]\nname = \"app\"\n\n[package.metadata.pgtest]\nmigraitons = \"migrations\"\n";
        let error = resolve(
            &package(text, json!({ "migraitons": "migrations" })),
            &Overrides::default(),
            1,
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("unknown key `migraitons`"), "{message}");
        assert!(message.contains("/p/Cargo.toml:5"), "{message}");
        assert!(message.contains("did you mean `migrations`?"), "{message}");
    }

    #[test]
    fn a_key_far_from_every_valid_one_lists_them_all() {
        let message = resolve_one(json!({ "colour": true }))
            .unwrap_err()
            .to_string();
        assert!(message.contains("valid keys are"), "{message}");
        assert!(message.contains("database_env"), "{message}");
    }

    #[test]
    fn wrong_types_say_what_was_expected_and_found() {
        let message = resolve_one(json!({ "tmpfs": "yes" }))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("`tmpfs`") && message.contains("true or false"),
            "{message}"
        );
        assert!(message.contains("the string \"yes\""), "{message}");
        assert!(resolve_one(json!({ "fixtures": "seed.sql" })).is_err());
        assert!(resolve_one(json!({ "fixtures": [1] })).is_err());
        assert!(resolve_one(json!({ "isolation": "none" }))
            .unwrap_err()
            .to_string()
            .contains("\"shared\""));
        assert!(resolve_one(json!({ "settings": { "work_mem": ["8MB"] } })).is_err());
        assert!(resolve_one(json!({ "settings": "work_mem=8MB" })).is_err());
        assert!(resolve_one(json!({ "timeout": "soon" })).is_err());
        assert!(resolve_one(json!({ "timeout": 0 })).is_err());
        // Found by tests/fuzz.rs: too long a wait once panicked converting to a Duration.
        assert!(resolve_one(json!({ "timeout": 1e300 })).is_err());
        assert!(resolve_one(json!({ "slow_timeout": "1e300m" })).is_err());
        assert!(resolve_one(json!({ "postgres": "15.4" }))
            .unwrap_err()
            .to_string()
            .contains("major"));
        assert!(resolve_one(json!({ "postgres": true })).is_err());
    }

    #[test]
    fn a_setting_error_points_at_the_settings_table_line() {
        let text = "[package.metadata.pgtest.settings]\ncheckpoint_segments = 32\n";
        let workspace = package(text, json!({ "settings": { "checkpoint_segments": 32 } }));
        let config = resolve(&workspace, &Overrides::default(), 1).unwrap();
        let origin = &config.settings[0].origin;
        assert_eq!(origin.table, "[package.metadata.pgtest.settings]");
        assert_eq!(origin.line, Some(2));
    }

    #[test]
    fn a_postgres_path_is_a_bin_directory() {
        let config = resolve_one(json!({ "postgres": "/opt/pg/bin" })).unwrap();
        assert_eq!(
            config.postgres,
            PostgresChoice::BinDir(PathBuf::from("/opt/pg/bin"))
        );
        let config = resolve_one(json!({ "postgres": 16 })).unwrap();
        assert_eq!(config.postgres, PostgresChoice::Major(16));
    }

    #[test]
    fn flags_override_keys() {
        let overrides = Overrides {
            no_tmpfs: true,
            jobs: Some(7),
            isolation: Some(Isolation::Test),
            timeout: Some(Duration::from_secs(3)),
            test_threads: Some(2),
        };
        let workspace = package(
            "",
            json!({ "tmpfs": true, "isolation": "shared", "timeout": 60 }),
        );
        let config = resolve(&workspace, &overrides, 1).unwrap();
        assert!(!config.tmpfs);
        assert_eq!(config.jobs, 7);
        assert_eq!(config.isolation, Isolation::Test);
        assert_eq!(config.timeout, Some(Duration::from_secs(3)));
        let threads_only = Overrides {
            test_threads: Some(2),
            ..Overrides::default()
        };
        assert_eq!(
            resolve(&package("", Value::Null), &threads_only, 8)
                .unwrap()
                .jobs,
            2
        );
    }

    fn workspace_of_two(a: Value, b: Value) -> Workspace {
        let member = |name: &str, pgtest: Value| Member {
            name: name.into(),
            manifest_path: PathBuf::from(format!("/w/{name}/Cargo.toml")),
            metadata: json!({ "pgtest": pgtest }),
            manifest_text: String::new(),
        };
        Workspace {
            root: PathBuf::from("/w"),
            metadata: json!({ "pgtest": { "migrations": "db", "work": null } }),
            root_manifest_text: String::new(),
            members: vec![member("a", a), member("b", b)],
            selected: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn workspace_keys_are_checked_too() {
        let error = resolve(
            &workspace_of_two(Value::Null, Value::Null),
            &Overrides::default(),
            1,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("[workspace.metadata.pgtest]"),
            "{error}"
        );
    }

    #[test]
    fn package_keys_override_workspace_keys_and_share_templates_when_equal() {
        let mut workspace = workspace_of_two(json!({ "fixtures": ["seed.sql"] }), Value::Null);
        workspace.metadata = json!({ "pgtest": { "migrations": "db", "postgres": "15" } });
        let config = resolve(&workspace, &Overrides::default(), 1).unwrap();
        assert_eq!(config.postgres, PostgresChoice::Major(15));
        assert_eq!(config.databases.len(), 2);
        assert_eq!(
            config.databases[0].migrations.as_deref(),
            Some(Path::new("/w/db"))
        );
        assert_eq!(
            config.databases[0].fixtures,
            [PathBuf::from("/w/a/seed.sql")]
        );
        assert!(config.databases[1].fixtures.is_empty());

        let same = workspace_of_two(Value::Null, Value::Null);
        let mut same = same;
        same.metadata = json!({ "pgtest": { "migrations": "db" } });
        let config = resolve(&same, &Overrides::default(), 1).unwrap();
        assert_eq!(config.databases.len(), 1);
        assert_eq!(config.package_database["a"], config.package_database["b"]);
    }

    #[test]
    fn packages_that_disagree_on_the_cluster_are_refused() {
        let mut workspace = workspace_of_two(json!({ "tmpfs": true }), json!({ "tmpfs": false }));
        workspace.metadata = Value::Null;
        let message = resolve(&workspace, &Overrides::default(), 1)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("`a` and `b` set `tmpfs` differently"),
            "{message}"
        );
        workspace.selected = vec!["a".into()];
        assert!(resolve(&workspace, &Overrides::default(), 1).unwrap().tmpfs);
    }

    #[test]
    fn lines_are_found_under_headers_and_in_dotted_form() {
        let text = "[package]\nname='x'\n[package.metadata]\npgtest.tmpfs = false\n[ package.metadata.pgtest ]\n\"postgres\" = \"15\"\n";
        assert_eq!(
            find_key_line(text, "package.metadata.pgtest.tmpfs"),
            Some(4)
        );
        assert_eq!(
            find_key_line(text, "package.metadata.pgtest.postgres"),
            Some(6)
        );
        assert_eq!(
            find_key_line(text, "package.metadata.pgtest.fixtures"),
            None
        );
    }

    #[test]
    fn close_typos_are_matched() {
        assert_eq!(closest_key("fixture"), Some("fixtures"));
        assert_eq!(closest_key("extentions"), Some("extensions"));
        assert_eq!(closest_key("database-env"), Some("database_env"));
        assert_eq!(closest_key("isolaton"), Some("isolation"));
        assert_eq!(closest_key("zzz"), None);
    }

    #[test]
    fn check_paths_names_the_key_and_the_missing_path() {
        let text = "[package.metadata.pgtest]\nfixtures = [\"seed/nope.sql\"]\n";
        let workspace = package(text, json!({ "fixtures": ["seed/nope.sql"] }));
        let config = resolve(&workspace, &Overrides::default(), 1).unwrap();
        let message = config.check_paths(&workspace).unwrap_err().to_string();
        assert!(message.contains("`fixtures`"), "{message}");
        assert!(message.contains("/p/seed/nope.sql"), "{message}");
        assert!(message.contains("Cargo.toml:2"), "{message}");
    }
}
