//! `[package.metadata.pgtest.snapshots.NAME]`: named database states built once on top of a template, that
//! the tests whose full name contains one of `tests` start from. As written ([`SnapshotText`]), checked
//! (keys, exactly one of `fixtures` and `from_test`, at least one pattern), and resolved into
//! [`SnapshotSpec`]s with the template they are built on and the line they were declared on.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Origin};

/// Every key of a snapshot table, sorted.
pub(crate) const SNAPSHOT_KEYS: &[&str] = &["fixtures", "from_test", "tests"];

/// One snapshot table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotText {
    pub(crate) fixtures: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) tests: Vec<String>,
    pub(crate) from_test: Option<String>,
}

/// The `snapshots` key as written: name → table, the name's span giving the table's line.
pub(crate) type SnapshotsText = BTreeMap<Spanned<String>, SnapshotText>;

/// How a snapshot's state is made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SnapshotSource {
    /// SQL files applied, in order, to a copy of the template.
    Fixtures(Vec<PathBuf>),
    /// This test (a name, or a part of its full name that only it has) run once against a copy of the
    /// template; what it leaves is the snapshot.
    FromTest(String),
}

/// One snapshot of one manifest's table, paths anchored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) name: String,
    pub(crate) source: SnapshotSource,
    pub(crate) tests: Vec<String>,
    pub(crate) origin: Origin,
}

/// A snapshot of the run: what it is built from, on which template, and for which tests.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SnapshotSpec {
    pub(crate) name: String,
    /// Index into [`super::Config::databases`]: the template the snapshot is a copy of.
    pub(crate) base: usize,
    pub(crate) source: SnapshotSource,
    /// A test whose full name (`binary name`, as `cargo pgtest list` prints it) contains one of these
    /// starts from the snapshot.
    pub(crate) tests: Vec<String>,
    /// Where the snapshot's table was written.
    pub(crate) origin: Origin,
}

/// The table header of snapshot `name` in `section` (`package` or `workspace`).
pub(crate) fn header(section: &str, name: &str) -> String {
    format!("[{section}.metadata.pgtest.snapshots.{name}]")
}

/// Checks one written snapshot and anchors its fixture paths at `base_dir`; `origin` is its table's.
pub(crate) fn anchor(
    name: String,
    text: SnapshotText,
    origin: Origin,
    base_dir: &std::path::Path,
) -> Result<Snapshot, ConfigError> {
    let bad = |reason: &str| ConfigError::BadValue {
        key: format!("snapshots.{name}"),
        origin: Box::new(origin.clone()),
        reason: reason.to_owned(),
    };
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(bad(
            "a snapshot's name is letters, digits, `_` and `-` only; rename the table",
        ));
    }
    let source = match (text.fixtures, text.from_test) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "it has both `fixtures` and `from_test`; keep one (a snapshot is built either from SQL \
                 files or by one test)",
            ))
        }
        (None, None) => {
            return Err(bad(
                "it needs `fixtures = [\"file.sql\"]` or `from_test = \"path::to::test\"` to say how \
                 it is built",
            ))
        }
        (Some(files), None) if files.is_empty() => {
            return Err(bad("`fixtures` is empty; name at least one SQL file"))
        }
        (Some(files), None) => {
            SnapshotSource::Fixtures(files.iter().map(|f| base_dir.join(f)).collect())
        }
        (None, Some(test)) if test.trim().is_empty() => {
            return Err(bad("`from_test` is empty; name the test that builds the state"))
        }
        (None, Some(test)) => SnapshotSource::FromTest(test),
    };
    if text.tests.is_empty() || text.tests.iter().any(|t| t.is_empty()) {
        return Err(bad(
            "`tests` must list at least one non-empty part of a test's name, such as \"catalog::\"",
        ));
    }
    Ok(Snapshot {
        name,
        source,
        tests: text.tests,
        origin,
    })
}

/// The run's snapshots: the workspace's (on the only template: with several, a package must declare
/// them) and each selected package's (on its own template). A name declared twice is refused.
pub(crate) fn resolve(
    workspace: &[Snapshot],
    packages: &[(Vec<Snapshot>, usize)],
    templates: usize,
) -> Result<Vec<SnapshotSpec>, ConfigError> {
    let mut specs: Vec<SnapshotSpec> = Vec::new();
    let declared = workspace.iter().map(|snapshot| (snapshot, None)).chain(
        packages
            .iter()
            .flat_map(|(list, base)| list.iter().map(move |s| (s, Some(*base)))),
    );
    for (snapshot, base) in declared {
        let base = match base {
            Some(base) => base,
            None if templates <= 1 => 0,
            None => {
                return Err(ConfigError::BadValue {
                    key: format!("snapshots.{}", snapshot.name),
                    origin: Box::new(snapshot.origin.clone()),
                    reason: "the packages tested have different templates, so a workspace snapshot \
                             has no single template to start from; declare it in the package's table"
                        .to_owned(),
                })
            }
        };
        if let Some(first) = specs.iter().find(|s| s.name == snapshot.name) {
            // The workspace's table is read once per run; a package's may be reached twice only if listed
            // twice, which cargo does not do: a second declaration is a real clash.
            return Err(ConfigError::BadValue {
                key: format!("snapshots.{}", snapshot.name),
                origin: Box::new(snapshot.origin.clone()),
                reason: format!(
                    "a snapshot of this name is already declared at {}; give one of them another name",
                    first.origin.location()
                ),
            });
        }
        specs.push(SnapshotSpec {
            name: snapshot.name.clone(),
            base,
            source: snapshot.source.clone(),
            tests: snapshot.tests.clone(),
            origin: snapshot.origin.clone(),
        });
    }
    Ok(specs)
}

/// The valid snapshot key closest to a misspelt one.
pub(crate) fn closest_snapshot_key(unknown: &str) -> Option<&'static str> {
    super::error::closest_among(unknown, SNAPSHOT_KEYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(line: usize) -> Origin {
        Origin {
            table: header("package", "s"),
            manifest: PathBuf::from("/p/Cargo.toml"),
            line: Some(line),
        }
    }

    fn text(toml: &str) -> SnapshotText {
        toml::from_str(toml).unwrap()
    }

    fn anchored(toml: &str) -> Result<Snapshot, String> {
        anchor(
            "s".into(),
            text(toml),
            origin(3),
            std::path::Path::new("/p"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_snapshot_is_built_from_fixtures_or_from_a_test_not_both_nor_neither() {
        let fixtures = anchored("fixtures = [\"seed/a.sql\"]\ntests = [\"a::\"]").unwrap();
        assert_eq!(
            fixtures.source,
            SnapshotSource::Fixtures(vec![PathBuf::from("/p/seed/a.sql")])
        );
        let from_test = anchored("from_test = \"setup::build\"\ntests = [\"a::\"]").unwrap();
        assert_eq!(
            from_test.source,
            SnapshotSource::FromTest("setup::build".into())
        );
        let both = anchored("fixtures = [\"a.sql\"]\nfrom_test = \"x\"\ntests = [\"a\"]");
        assert!(both
            .unwrap_err()
            .contains("both `fixtures` and `from_test`"));
        let neither = anchored("tests = [\"a\"]").unwrap_err();
        assert!(neither.contains("/p/Cargo.toml:3"), "{neither}");
        assert!(neither.contains("needs `fixtures"), "{neither}");
        assert!(anchored("fixtures = []\ntests = [\"a\"]").is_err());
        assert!(anchored("from_test = \" \"\ntests = [\"a\"]").is_err());
        assert!(anchored("fixtures = [\"a.sql\"]")
            .unwrap_err()
            .contains("`tests`"));
        assert!(anchored("fixtures = [\"a.sql\"]\ntests = [\"\"]").is_err());
    }

    #[test]
    fn unknown_snapshot_keys_are_close_to_a_valid_one_or_not() {
        assert_eq!(closest_snapshot_key("fixture"), Some("fixtures"));
        assert_eq!(closest_snapshot_key("from-test"), Some("from_test"));
        assert_eq!(closest_snapshot_key("test"), Some("tests"));
        assert_eq!(closest_snapshot_key("zzz"), None);
    }

    #[test]
    fn a_workspace_snapshot_needs_one_template_and_names_are_unique() {
        let snapshot = |name: &str, line| Snapshot {
            name: name.into(),
            source: SnapshotSource::FromTest("t".into()),
            tests: vec!["a".into()],
            origin: origin(line),
        };
        let specs = resolve(&[snapshot("w", 1)], &[(vec![snapshot("p", 2)], 0)], 1).unwrap();
        assert_eq!(
            specs.iter().map(|s| (&*s.name, s.base)).collect::<Vec<_>>(),
            [("w", 0), ("p", 0)]
        );
        let several = resolve(&[snapshot("w", 1)], &[], 2)
            .unwrap_err()
            .to_string();
        assert!(several.contains("declare it in the package"), "{several}");
        let twice = resolve(&[snapshot("x", 1)], &[(vec![snapshot("x", 7)], 0)], 1)
            .unwrap_err()
            .to_string();
        assert!(
            twice.contains(":7") && twice.contains("/p/Cargo.toml:1"),
            "{twice}"
        );
    }
}
