//! The parsers that read what users write, fed arbitrary input: they may refuse it, never panic.
//! `[package.metadata.pgtest]` is read from the manifest's own TOML text; migration file names are strings.

use std::path::PathBuf;

use cargo_pgtest::config::{self, Member, Overrides, Workspace};
use cargo_pgtest::template::parse_migration_name;
use proptest::prelude::*;
use toml::Value;

/// Any TOML value, nested a few levels deep, with keys close to the real ones as often as not.
fn toml_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("15"),
            Just("99"),
            Just("5s"),
            Just("-1m"),
            Just("test"),
            Just("shared"),
            Just("1e400ms"),
            Just("1h 30m"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let key = prop_oneof![
            "[a-z_]{1,14}",
            Just("migrations".to_owned()),
            Just("fixtures".to_owned()),
            Just("settings".to_owned()),
            Just("postgres".to_owned()),
            Just("timeout".to_owned()),
            Just("extensions".to_owned()),
            Just("isolation".to_owned()),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..5)
                .prop_map(|map| Value::Table(map.into_iter().collect())),
        ]
    })
}

/// `{ <section> = { metadata = { pgtest = <pgtest> } } }` as the text of a Cargo.toml.
fn manifest(section: &str, pgtest: Value) -> String {
    let mut metadata = toml::Table::new();
    metadata.insert("pgtest".into(), pgtest);
    let mut body = toml::Table::new();
    body.insert("metadata".into(), Value::Table(metadata));
    let mut document = toml::Table::new();
    document.insert(section.into(), Value::Table(body));
    toml::to_string(&document).unwrap_or_default()
}

fn workspace(package_text: String, root_text: String) -> Workspace {
    Workspace {
        root: PathBuf::from("/w"),
        root_manifest_text: root_text,
        members: vec![Member {
            name: "app".into(),
            manifest_path: PathBuf::from("/w/app/Cargo.toml"),
            manifest_text: package_text,
        }],
        selected: vec!["app".into()],
    }
}

fn refuses_in_words(workspace: &Workspace, jobs: Option<usize>) -> Result<(), TestCaseError> {
    let overrides = Overrides {
        jobs,
        ..Overrides::default()
    };
    if let Err(error) = config::resolve(workspace, &overrides, 2) {
        // Every refusal is a sentence for a person.
        prop_assert!(!error.to_string().is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    fn config_never_panics(package in toml_value(), shared in toml_value(), jobs in proptest::option::of(0usize..9)) {
        let workspace = workspace(manifest("package", package), manifest("workspace", shared));
        refuses_in_words(&workspace, jobs)?;
    }

    fn config_never_panics_on_any_text(table in "\\PC{0,80}", text in "\\PC{0,80}") {
        let package = format!("[package]\nname = \"app\"\n[package.metadata.pgtest]\n{table}");
        refuses_in_words(&workspace(package, text), None)?;
    }

    fn migration_names_never_panic(name in "\\PC{0,40}") {
        let _ = parse_migration_name(&name);
    }

    fn well_formed_migration_names_are_read_back(version in 1i64..99_999_999_999_999, words in "[a-z][a-z0-9_]{0,20}", kind in 0usize..3) {
        let suffix = ["sql", "up.sql", "down.sql"][kind];
        let name = format!("{version}_{words}.{suffix}");
        let parsed = parse_migration_name(&name).unwrap().expect("a .sql file is a migration");
        prop_assert_eq!(parsed.version, version);
        prop_assert_eq!(parsed.is_down, kind == 2);
    }

    fn sql_files_of_another_shape_are_refused(name in "[^0-9_.][^.]{0,20}\\.sql") {
        prop_assert!(parse_migration_name(&name).is_err(), "{} was accepted", name);
    }
}

crate::tests! {
    config_never_panics,
    config_never_panics_on_any_text,
    migration_names_never_panic,
    well_formed_migration_names_are_read_back,
    sql_files_of_another_shape_are_refused,
}
