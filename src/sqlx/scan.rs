//! Reading a package's sources for `#[sqlx::test]`, once, for everything cargo-pgtest needs to know of it:
//! which tests isolate themselves (functions under a `#[sqlx::test]` attribute, minus any name that also
//! stands under another test attribute, since two tests of the same name in different modules could
//! otherwise be mistaken for each other), and whether any of them picks its own migrations
//! (`#[sqlx::test(migrations = …)]`, `migrator = …`), which rules out migrating `template1` for them.
//!
//! `#[sqlx::test]` creates, migrates and drops a database of its own for every test, so such tests need no
//! clone from cargo-pgtest and no process each: they run together, one process per test binary as
//! `cargo test` runs them. A text scan, not a Rust parser: the attribute's spelling is all it needs, and a
//! miss only costs speed (the test then gets a clone of its own like any other).

use std::collections::BTreeSet;
use std::path::Path;

/// What a package's sources say about `#[sqlx::test]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SqlxSources {
    /// Names of the functions that are `#[sqlx::test]`s and nothing else.
    pub(crate) tests: BTreeSet<String>,
    /// Whether a `#[sqlx::test(...)]` names its own migrations or migrator.
    pub(crate) picks_own_migrations: bool,
}

/// Reads every `.rs` file under the package's `src`, `tests`, `benches` and `examples` once.
pub(crate) fn scan(package_dir: &Path) -> SqlxSources {
    let mut sqlx = BTreeSet::new();
    let mut other = BTreeSet::new();
    let mut picks_own_migrations = false;
    for dir in ["src", "tests", "benches", "examples"] {
        visit_sources(&package_dir.join(dir), &mut |source| {
            collect_test_functions(source, &mut sqlx, &mut other);
            picks_own_migrations |= names_migrations(source);
        });
    }
    sqlx.retain(|name| !other.contains(name));
    SqlxSources {
        tests: sqlx,
        picks_own_migrations,
    }
}

/// Whether `source` has a `#[sqlx::test(...)]` that names its migrations or migrator.
fn names_migrations(source: &str) -> bool {
    source.match_indices("sqlx::test").any(|(at, found)| {
        let rest = source[at + found.len()..].trim_start();
        let Some(arguments) = rest.strip_prefix('(') else {
            return false;
        };
        let arguments = &arguments[..arguments.find(")]").unwrap_or(arguments.len())];
        arguments.contains("migrations") || arguments.contains("migrator")
    })
}

fn visit_sources(dir: &Path, visit: &mut dyn FnMut(&str)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
        if path.is_dir() {
            visit_sources(&path, visit);
        } else if path.extension().is_some_and(|e| e == "rs") {
            if let Ok(source) = std::fs::read_to_string(&path) {
                visit(&source);
            }
        }
    }
}

/// Sorts the functions of `source` that carry a test attribute into `#[sqlx::test]` ones and the rest.
fn collect_test_functions(source: &str, sqlx: &mut BTreeSet<String>, other: &mut BTreeSet<String>) {
    let mut pending: Option<bool> = None;
    for line in source.lines().map(str::trim) {
        if line.starts_with("//") {
            continue;
        }
        if let Some(attribute) = line.strip_prefix("#[") {
            let path = attribute
                .split(['(', ']'])
                .next()
                .unwrap_or_default()
                .trim();
            if path == "sqlx::test" {
                pending = Some(pending.unwrap_or(true));
            } else if path == "test" || path.ends_with("::test") {
                pending = Some(false);
            }
            continue;
        }
        let Some(is_sqlx) = pending else { continue };
        if let Some(name) = function_name(line) {
            if is_sqlx {
                sqlx.insert(name.to_owned());
            } else {
                other.insert(name.to_owned());
            }
            pending = None;
        }
    }
}

/// The name in `[pub] [async] fn name(...`, if `line` declares a function.
fn function_name(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    loop {
        match words.next()? {
            "pub" | "pub(crate)" | "async" | "unsafe" => continue,
            "fn" => break,
            _ => return None,
        }
    }
    let rest = words.next()?;
    let name = &rest[..rest.find(['(', '<']).unwrap_or(rest.len())];
    (!name.is_empty()).then_some(name)
}

/// Whether the test called `test_name` (libtest's `module::function` path) is one of `functions`.
pub(crate) fn is_self_isolating(test_name: &str, functions: &BTreeSet<String>) -> bool {
    let function = test_name.rsplit("::").next().unwrap_or(test_name);
    functions.contains(function)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(source: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let (mut sqlx, mut other) = (BTreeSet::new(), BTreeSet::new());
        collect_test_functions(source, &mut sqlx, &mut other);
        (sqlx, other)
    }

    #[test]
    fn sqlx_tests_are_told_from_other_tests() {
        let source = r#"
            #[sqlx::test]
            async fn creates_a_user(pool: PgPool) {}

            #[sqlx::test(fixtures("users"))]
            #[ignore]
            pub(crate) async fn with_fixtures(pool: PgPool) -> sqlx::Result<()> { Ok(()) }

            #[tokio::test]
            async fn plain_async() {}

            #[test]
            fn plain() {}

            // #[sqlx::test]
            fn helper() {}
        "#;
        let (sqlx, other) = split(source);
        assert_eq!(
            sqlx.into_iter().collect::<Vec<_>>(),
            ["creates_a_user", "with_fixtures"]
        );
        assert_eq!(
            other.into_iter().collect::<Vec<_>>(),
            ["plain", "plain_async"]
        );
    }

    #[test]
    fn a_name_used_by_another_kind_of_test_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tests")).unwrap();
        std::fs::write(
            dir.path().join("tests/a.rs"),
            "#[sqlx::test]\nasync fn same(pool: PgPool) {}\n#[sqlx::test]\nasync fn only_sqlx(pool: PgPool) {}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("tests/b.rs"),
            "mod m {\n    #[test]\n    fn same() {}\n}\n",
        )
        .unwrap();
        let functions = scan(dir.path()).tests;
        assert_eq!(functions.iter().collect::<Vec<_>>(), ["only_sqlx"]);
        assert!(is_self_isolating("only_sqlx", &functions));
        assert!(is_self_isolating("accounts::only_sqlx", &functions));
        assert!(!is_self_isolating("m::same", &functions));
    }

    #[test]
    fn sqlx_test_attributes_that_pick_their_migrations_are_noticed() {
        assert!(!names_migrations(
            "#[sqlx::test]\nasync fn a(pool: PgPool) {}"
        ));
        assert!(!names_migrations(
            "#[sqlx::test(fixtures(\"users\"))]\nasync fn a() {}"
        ));
        assert!(names_migrations(
            "#[sqlx::test(migrations = false)]\nasync fn a() {}"
        ));
        assert!(names_migrations("#[sqlx::test(migrations = \"other\")]"));
        assert!(names_migrations(
            "#[sqlx::test(migrator = \"crate::MIGRATOR\")]"
        ));
        assert!(!names_migrations("fn f() { sqlx::test }"));
    }
}
