//! [`resolve`] and [`Config::check_paths`] fed Cargo.toml texts, as a user would write them.

use std::collections::hash_map::DefaultHasher;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const PACKAGE: &str = "[package]\nname = \"app\"\nversion = \"0.1.0\"\n\n";

/// A one-package workspace at /p whose Cargo.toml is `PACKAGE` followed by `pgtest`.
pub(super) fn package(pgtest: &str) -> Workspace {
    let text = format!("{PACKAGE}{pgtest}");
    Workspace {
        root: PathBuf::from("/p"),
        root_manifest_text: text.clone(),
        members: vec![Member {
            name: "app".into(),
            manifest_path: PathBuf::from("/p/Cargo.toml"),
            manifest_text: text,
        }],
        selected: vec!["app".into()],
    }
}

pub(super) fn resolve_one(pgtest: &str) -> Result<Config, ConfigError> {
    resolve(&package(pgtest), &Overrides::default(), 4)
}

pub(super) fn error_of(pgtest: &str) -> String {
    resolve_one(pgtest).unwrap_err().to_string()
}

/// A virtual workspace at `root` with `[workspace.metadata.pgtest]` `shared` and members `a` and `b`.
fn workspace_of_two(root: &Path, shared: &str, a: &str, b: &str) -> Workspace {
    let member = |name: &str, pgtest: &str| Member {
        name: name.into(),
        manifest_path: root.join(name).join("Cargo.toml"),
        manifest_text: format!("[package]\nname = \"{name}\"\n{pgtest}"),
    };
    Workspace {
        root: root.to_owned(),
        root_manifest_text: format!("[workspace]\nmembers = [\"a\", \"b\"]\n{shared}"),
        members: vec![member("a", a), member("b", b)],
        selected: vec!["a".into(), "b".into()],
    }
}

#[test]
fn a_project_without_a_table_gets_the_defaults() {
    let config = resolve_one("").unwrap();
    assert_eq!(config.postgres, PostgresChoice::Newest);
    assert!(config.tmpfs);
    assert_eq!(config.isolation, Isolation::Test);
    assert_eq!(config.database_env, "DATABASE_URL");
    assert_eq!(config.timeout, None);
    assert_eq!(config.slow_timeout, Duration::from_secs(60));
    assert_eq!(config.jobs, 4);
    assert_eq!(config.databases.len(), 1);
    assert_eq!(config.package_database["app"], 0);
}

#[test]
fn every_documented_key_is_read() {
    let config = resolve_one(
        r#"[package.metadata.pgtest]
migrations = "db/migrations"
fixtures = ["seed/base.sql", "seed/more.sql"]
postgres = "15"
tmpfs = false
isolation = "shared"
database_env = "PG_URL"
extensions = ["pgcrypto"]
timeout = "2m"
slow_timeout = 5

[package.metadata.pgtest.settings]
work_mem = "8MB"
max_connections = 50
autovacuum = false
"#,
    )
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
        .map(|s| (s.name.as_str(), s.value.as_str(), s.origin.line))
        .collect();
    assert_eq!(
        settings,
        [
            ("autovacuum", "off", Some(19)),
            ("max_connections", "50", Some(18)),
            ("work_mem", "8MB", Some(17)),
        ]
    );
    assert_eq!(
        config.settings[0].origin.table,
        "[package.metadata.pgtest.settings]"
    );
}

#[test]
fn a_typo_names_the_key_its_line_and_the_closest_valid_key() {
    let message = error_of("[package.metadata.pgtest]\nmigraitons = \"migrations\"\n");
    assert_eq!(
        message,
        "unknown key `migraitons` in [package.metadata.pgtest] in /p/Cargo.toml:6; \
         did you mean `migrations`?"
    );
}

#[test]
fn a_key_far_from_every_valid_one_lists_them_all() {
    let message = error_of("[package.metadata.pgtest]\ncolour = true\n");
    assert!(
        message.contains("valid keys are database_env, databases, extensions"),
        "{message}"
    );
}

#[test]
fn a_wrong_type_says_what_was_expected_found_and_where() {
    assert_eq!(
        error_of("[package.metadata.pgtest]\ntmpfs = \"yes\"\n"),
        "`tmpfs` in [package.metadata.pgtest] in /p/Cargo.toml:6 must be true or false, \
         but it is string \"yes\""
    );
    // In a list written over several lines, the line is the bad item's.
    let message = error_of("[package.metadata.pgtest]\nfixtures = [\n  \"a.sql\",\n  2,\n]\n");
    assert!(message.starts_with("`fixtures` in "), "{message}");
    assert!(
        message.contains("/p/Cargo.toml:8 must be a string"),
        "{message}"
    );
    let message = error_of("[package.metadata.pgtest]\nfixtures = \"seed.sql\"\n");
    assert!(message.contains("must be a sequence"), "{message}");
}

#[test]
fn a_bad_value_says_why_and_where() {
    let message = error_of("[package.metadata.pgtest]\n\n\nisolation = \"none\"\n");
    assert_eq!(
        message,
        "`isolation` in [package.metadata.pgtest] in /p/Cargo.toml:8 is invalid: \
         `none` is neither \"test\" nor \"shared\""
    );
    let message = error_of("[package.metadata.pgtest]\npostgres = \"15.4\"\n");
    assert!(
        message.contains("Cargo.toml:6 is invalid: `15.4` is not a major version"),
        "{message}"
    );
}

#[test]
fn a_bad_duration_says_how_to_write_one() {
    let message = error_of("[package.metadata.pgtest]\ntimeout = \"soon\"\n");
    assert!(
        message.starts_with("`timeout` in [package.metadata.pgtest] in /p/Cargo.toml:6 is invalid: `soon` is not a duration"),
        "{message}"
    );
    assert!(message.contains("\"90s\", \"2m\""), "{message}");
    let message = error_of("[package.metadata.pgtest]\nslow_timeout = 0\n");
    assert!(
        message.contains("`slow_timeout`") && message.contains("not a positive duration"),
        "{message}"
    );
}

#[test]
fn dotted_and_inline_forms_are_read_with_their_lines() {
    let config = resolve_one(
        "[package.metadata]\npgtest.tmpfs = false\npgtest.settings.work_mem = \"8MB\"\n",
    )
    .unwrap();
    assert!(!config.tmpfs);
    assert_eq!(config.settings[0].origin.line, Some(7));
    let message = error_of("[package.metadata]\npgtest = { isolation = \"shared\", tmpfs = 1 }\n");
    assert!(
        message.contains(
            "`tmpfs` in [package.metadata.pgtest] in /p/Cargo.toml:6 must be true or false"
        ),
        "{message}"
    );
    let message = error_of("[package.metadata]\npgtest = \"on\"\n");
    assert!(
        message
            .contains("`pgtest` in [package.metadata.pgtest] in /p/Cargo.toml:6 must be a table"),
        "{message}"
    );
}

#[test]
fn a_setting_error_names_the_setting_and_its_line() {
    let text =
        "[package.metadata.pgtest.settings]\nwork_mem = \"8MB\"\nshared_buffers = [\"1GB\"]\n";
    let message = error_of(text);
    assert!(
        message.starts_with("`shared_buffers` in [package.metadata.pgtest.settings] in /p/Cargo.toml:7 must be a string, number or boolean"),
        "{message}"
    );
    let message = error_of("[package.metadata.pgtest.settings]\n\"work mem\" = \"8MB\"\n");
    assert!(message.contains("`work mem` in [package.metadata.pgtest.settings] in /p/Cargo.toml:6 is invalid: not a PostgreSQL setting name"), "{message}");
    assert!(
        error_of("[package.metadata.pgtest]\nsettings = \"work_mem=8MB\"\n").contains("`settings`")
    );
    let message =
        error_of("[package.metadata.pgtest]\nsettings = { work_mem = \"8MB\", fsync = [] }\n");
    assert!(
        message.starts_with(
            "`fsync` in [package.metadata.pgtest.settings] in /p/Cargo.toml:6 must be"
        ),
        "{message}"
    );
}

#[test]
fn flags_override_keys() {
    let overrides = Overrides {
        no_tmpfs: true,
        jobs: Some(7),
        isolation: Some(Isolation::Test),
        timeout: Some(Duration::from_secs(3)),
        test_threads: Some(2),
        retries: Some(4),
    };
    let workspace = package(
        "[package.metadata.pgtest]\ntmpfs = true\nisolation = \"shared\"\ntimeout = 60\nretries = 1\n",
    );
    let config = resolve(&workspace, &overrides, 1).unwrap();
    assert!(!config.tmpfs);
    assert_eq!(config.jobs, 7);
    assert_eq!(config.isolation, Isolation::Test);
    assert_eq!(config.timeout, Some(Duration::from_secs(3)));
    assert_eq!(config.retries, 4);
    let threads_only = Overrides {
        test_threads: Some(2),
        ..Overrides::default()
    };
    assert_eq!(resolve(&package(""), &threads_only, 8).unwrap().jobs, 2);
}

#[test]
fn workspace_keys_are_checked_too() {
    let workspace = workspace_of_two(
        Path::new("/w"),
        "[workspace.metadata.pgtest]\nmigrations = \"db\"\nwork = 1\n",
        "",
        "",
    );
    let message = resolve(&workspace, &Overrides::default(), 1)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("unknown key `work` in [workspace.metadata.pgtest] in /w/Cargo.toml:5"),
        "{message}"
    );
}

#[test]
fn a_package_not_selected_is_still_checked() {
    let mut workspace = workspace_of_two(
        Path::new("/w"),
        "",
        "",
        "[package.metadata.pgtest]\ntmpfs = 3\n",
    );
    workspace.selected = vec!["a".into()];
    let message = resolve(&workspace, &Overrides::default(), 1)
        .unwrap_err()
        .to_string();
    assert!(message.contains("/w/b/Cargo.toml:4"), "{message}");
}

#[test]
fn package_keys_override_workspace_keys_and_share_templates_when_equal() {
    let shared = "[workspace.metadata.pgtest]\nmigrations = \"db\"\npostgres = \"15\"\n";
    let a = "[package.metadata.pgtest]\nfixtures = [\"seed.sql\"]\npostgres = 16\n";
    let workspace = workspace_of_two(Path::new("/w"), shared, a, "");
    let config = resolve(&workspace, &Overrides::default(), 1).unwrap();
    assert_eq!(config.postgres, PostgresChoice::Major(16));
    assert_eq!(config.databases.len(), 2);
    assert_eq!(
        config.databases[0].migrations.as_deref(),
        Some(Path::new("/w/db"))
    );
    assert_eq!(
        config.databases[0].fixtures,
        [PathBuf::from("/w/a/seed.sql")]
    );
    assert_eq!(
        config.databases[1].migrations.as_deref(),
        Some(Path::new("/w/db"))
    );
    assert!(config.databases[1].fixtures.is_empty());

    let workspace = workspace_of_two(Path::new("/w"), shared, "", "");
    let config = resolve(&workspace, &Overrides::default(), 1).unwrap();
    assert_eq!(config.postgres, PostgresChoice::Major(15));
    assert_eq!(config.databases.len(), 1);
    assert_eq!(config.package_database["a"], config.package_database["b"]);
}

#[test]
fn packages_that_disagree_on_the_cluster_are_refused_naming_both_lines() {
    let a = "[package.metadata.pgtest]\ntmpfs = true\n";
    let b = "\n[package.metadata.pgtest]\ntmpfs = false\n";
    let mut workspace = workspace_of_two(Path::new("/w"), "", a, b);
    let message = resolve(&workspace, &Overrides::default(), 1)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(
            "packages `a` (/w/a/Cargo.toml:4) and `b` (/w/b/Cargo.toml:5) set `tmpfs` differently"
        ),
        "{message}"
    );
    workspace.selected = vec!["a".into()];
    assert!(resolve(&workspace, &Overrides::default(), 1).unwrap().tmpfs);
}

#[test]
fn settings_conflict_only_when_the_same_setting_differs() {
    // `a` sets one setting and `b` overrides the workspace's value of another: nothing disagrees.
    let shared = "[workspace.metadata.pgtest.settings]\nwork_mem = \"8MB\"\n";
    let a = "[package.metadata.pgtest.settings]\nautovacuum = false\n";
    let b = "[package.metadata.pgtest.settings]\nwork_mem = \"16MB\"\n";
    let config = resolve(
        &workspace_of_two(Path::new("/w"), shared, a, b),
        &Overrides::default(),
        1,
    )
    .unwrap();
    let settings: Vec<_> = config
        .settings
        .iter()
        .map(|s| (s.name.as_str(), s.value.as_str()))
        .collect();
    assert_eq!(settings, [("autovacuum", "off"), ("work_mem", "16MB")]);
    assert_eq!(
        config.settings[1].origin.manifest,
        Path::new("/w/b/Cargo.toml")
    );

    let same = resolve(
        &workspace_of_two(Path::new("/w"), "", b, b),
        &Overrides::default(),
        1,
    );
    assert_eq!(same.unwrap().settings.len(), 1);
    let a = "[package.metadata.pgtest.settings]\nwork_mem = \"4MB\"\n";
    let message = resolve(
        &workspace_of_two(Path::new("/w"), "", a, b),
        &Overrides::default(),
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("set `settings.work_mem` differently"),
        "{message}"
    );
}

#[test]
fn a_template_is_the_same_whoever_wrote_its_keys() {
    let a = "[package.metadata.pgtest]\nmigrations = \"/w/db\"\n";
    let b = "\n\n[package.metadata.pgtest]\nmigrations = \"/w/db\"\n";
    let config = resolve(
        &workspace_of_two(Path::new("/w"), "", a, b),
        &Overrides::default(),
        1,
    )
    .unwrap();
    assert_eq!(config.databases.len(), 1, "{:?}", config.databases);
    let mut other = config.databases[0].clone();
    other.origins.migrations = None;
    assert_eq!(other, config.databases[0]);
    let hash = |spec: &DatabaseSpec| {
        let mut hasher = DefaultHasher::new();
        spec.hash(&mut hasher);
        hasher.finish()
    };
    assert_eq!(hash(&other), hash(&config.databases[0]));
}

#[test]
fn a_missing_fixture_blames_the_package_that_named_it() {
    // `a`'s fixture exists and `b`'s does not: the error is about `b`, though `a` also sets `fixtures`.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("a/seed")).unwrap();
    std::fs::write(root.path().join("a/seed/ok.sql"), "").unwrap();
    let a = "[package.metadata.pgtest]\nfixtures = [\"seed/ok.sql\"]\n";
    let b = "\n\n[package.metadata.pgtest]\nfixtures = [\"seed/nope.sql\"]\n";
    let workspace = workspace_of_two(root.path(), "", a, b);
    let config = resolve(&workspace, &Overrides::default(), 1).unwrap();
    let message = config.check_paths(&workspace).unwrap_err().to_string();
    let b_manifest = root.path().join("b/Cargo.toml");
    assert_eq!(
        message,
        format!(
            "`fixtures` in [package.metadata.pgtest] in {}:6 names {}, which does not exist; \
             fix the path or remove the key",
            b_manifest.display(),
            root.path().join("b/seed/nope.sql").display()
        )
    );
}

#[test]
fn a_missing_workspace_directory_blames_the_workspace() {
    // `a` has migrations of its own; `b` uses the workspace's, which do not exist.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("a/own")).unwrap();
    let shared = "[workspace.metadata.pgtest]\nmigrations = \"db/migrations\"\n";
    let a = "[package.metadata.pgtest]\nmigrations = \"own\"\n";
    let workspace = workspace_of_two(root.path(), shared, a, "");
    let config = resolve(&workspace, &Overrides::default(), 1).unwrap();
    let message = config.check_paths(&workspace).unwrap_err().to_string();
    let expected = format!(
        "`migrations` in [workspace.metadata.pgtest] in {}:4 names",
        root.path().join("Cargo.toml").display()
    );
    assert!(message.starts_with(&expected), "{message}");
}

#[test]
fn a_missing_bin_directory_names_the_postgres_key() {
    let workspace = package("[package.metadata.pgtest]\npostgres = \"pg/bin\"\n");
    let config = resolve(&workspace, &Overrides::default(), 1).unwrap();
    assert_eq!(
        config.postgres,
        PostgresChoice::BinDir(PathBuf::from("/p/pg/bin"))
    );
    let message = config.check_paths(&workspace).unwrap_err().to_string();
    assert!(
        message.starts_with(
            "`postgres` in [package.metadata.pgtest] in /p/Cargo.toml:6 names /p/pg/bin"
        ),
        "{message}"
    );
}

#[test]
fn a_manifest_that_is_not_toml_is_named_with_its_line() {
    let message = error_of("[package.metadata.pgtest]\ntmpfs = \n");
    assert!(
        message.starts_with("/p/Cargo.toml:6 is not valid TOML: "),
        "{message}"
    );
}

#[test]
fn retries_come_from_the_key_and_default_to_none() {
    let none = resolve(&package(""), &Overrides::default(), 1).unwrap();
    assert_eq!(none.retries, 0);
    let two = package("[package.metadata.pgtest]\nretries = 2\n");
    assert_eq!(resolve(&two, &Overrides::default(), 1).unwrap().retries, 2);
    let message = error_of("[package.metadata.pgtest]\nretries = -1\n");
    assert!(message.contains("`retries`"), "{message}");
}

#[test]
fn snapshots_are_read_with_their_table_line_and_template() {
    let config = resolve_one(
        "[package.metadata.pgtest.snapshots.catalog]\nfixtures = [\"seed/catalog.sql\"]\n\
         tests = [\"catalog::\"]\n\n[package.metadata.pgtest.snapshots.built]\n\
         from_test = \"setup::build\"\ntests = [\"built::\", \"other\"]\n",
    )
    .unwrap();
    let names: Vec<(&str, usize, Option<usize>)> = config
        .snapshots
        .iter()
        .map(|s| (s.name.as_str(), s.base, s.origin.line))
        .collect();
    assert_eq!(names, [("built", 0, Some(9)), ("catalog", 0, Some(5))]);
    assert_eq!(
        config.snapshots[1].source,
        SnapshotSource::Fixtures(vec![PathBuf::from("/p/seed/catalog.sql")])
    );
    assert_eq!(config.snapshots[0].tests, ["built::", "other"]);
}

#[test]
fn snapshot_mistakes_name_the_snapshot_table_and_line() {
    let unknown = error_of(
        "[package.metadata.pgtest.snapshots.catalog]\nfixture = [\"a.sql\"]\ntests = [\"a\"]\n",
    );
    assert_eq!(
        unknown,
        "unknown key `fixture` in [package.metadata.pgtest.snapshots.catalog] in /p/Cargo.toml:6; \
         did you mean `fixtures`?"
    );
    let wrong = error_of(
        "[package.metadata.pgtest.snapshots.catalog]\nfixtures = [\"a.sql\"]\ntests = \"a\"\n",
    );
    assert!(
        wrong.starts_with(
            "`tests` in [package.metadata.pgtest.snapshots.catalog] in /p/Cargo.toml:7 must be"
        ),
        "{wrong}"
    );
    let both = error_of(
        "[package.metadata.pgtest.snapshots.c]\nfixtures = [\"a.sql\"]\nfrom_test = \"t\"\ntests = [\"a\"]\n",
    );
    assert!(
        both.contains("/p/Cargo.toml:5") && both.contains("both"),
        "{both}"
    );
}

#[test]
fn a_missing_snapshot_fixture_is_named_before_anything_starts() {
    let root = tempfile::tempdir().unwrap();
    let mut workspace = package(
        "[package.metadata.pgtest.snapshots.catalog]\nfixtures = [\"seed/none.sql\"]\ntests = [\"a\"]\n",
    );
    workspace.members[0].manifest_path = root.path().join("Cargo.toml");
    let config = resolve(&workspace, &Overrides::default(), 1).unwrap();
    let message = config.check_paths(&workspace).unwrap_err().to_string();
    assert!(
        message.starts_with(
            "`snapshots.catalog.fixtures` in [package.metadata.pgtest.snapshots.catalog] in "
        ),
        "{message}"
    );
    assert!(
        message.contains("Cargo.toml:5 names") && message.contains("none.sql"),
        "{message}"
    );
}

#[test]
fn read_only_groups_are_on_unless_the_key_turns_them_off() {
    let on = resolve(&package(""), &Overrides::default(), 1).unwrap();
    assert!(on.group_read_only);
    let off = package("[package.metadata.pgtest]\ngroup_read_only = false\n");
    assert!(
        !resolve(&off, &Overrides::default(), 1)
            .unwrap()
            .group_read_only
    );
    let message = error_of("[package.metadata.pgtest]\ngroup_read_only = 1\n");
    assert!(
        message.contains("`group_read_only` in [package.metadata.pgtest]"),
        "{message}"
    );
}

#[test]
fn reuse_is_on_unless_the_key_turns_it_off() {
    assert!(
        resolve(&package(""), &Overrides::default(), 1)
            .unwrap()
            .reuse
    );
    let off = package("[package.metadata.pgtest]\nreuse = false\n");
    assert!(!resolve(&off, &Overrides::default(), 1).unwrap().reuse);
    let message = error_of("[package.metadata.pgtest]\nreuse = \"no\"\n");
    assert!(
        message.contains("`reuse` in [package.metadata.pgtest]")
            && message.contains("true or false"),
        "{message}"
    );
}

#[test]
fn html_names_a_file_beside_the_manifest_and_a_typo_is_caught() {
    assert_eq!(resolve_one("").unwrap().html, None);
    let config = resolve_one("[package.metadata.pgtest]\nhtml = \"target/pgtest/report.html\"\n");
    assert_eq!(
        config.unwrap().html,
        Some(PathBuf::from("/p/target/pgtest/report.html"))
    );
    let message = error_of("[package.metadata.pgtest]\nhtml = true\n");
    assert!(
        message.contains("`html` in [package.metadata.pgtest]"),
        "{message}"
    );
    let message = error_of("[package.metadata.pgtest]\nhmtl = \"report.html\"\n");
    assert!(message.contains("did you mean `html`?"), "{message}");
}

#[test]
fn two_packages_writing_their_html_report_to_different_files_are_refused() {
    let root = Path::new("/w");
    let a = "[package.metadata.pgtest]\nhtml = \"report.html\"\n";
    let ws = workspace_of_two(root, "", a, a);
    let message = resolve(&ws, &Overrides::default(), 1)
        .unwrap_err()
        .to_string();
    assert!(message.contains("html"), "{message}");
}
