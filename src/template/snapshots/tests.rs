//! Which test starts from which snapshot, and which test builds one, from plain names.

use std::path::PathBuf;

use super::*;

fn origin(line: usize) -> Origin {
    Origin {
        table: "[package.metadata.pgtest.snapshots.x]".into(),
        manifest: PathBuf::from("/p/Cargo.toml"),
        line: Some(line),
    }
}

fn snapshot(name: &str, tests: &[&str], from_test: Option<&str>, line: usize) -> NamedSnapshot {
    NamedSnapshot {
        name: name.into(),
        database: format!("pgtest_snapshot_{name}"),
        base: "pgtest_template".into(),
        tests: tests.iter().map(|t| t.to_string()).collect(),
        from_test: from_test.map(str::to_owned),
        fixtures: Vec::new(),
        origin: origin(line),
    }
}

fn test(binary: &str, name: &str) -> TestId {
    TestId {
        binary: binary.into(),
        name: name.into(),
    }
}

#[test]
fn tests_start_from_the_snapshot_whose_pattern_their_full_name_contains() {
    let plan = NamedSnapshots {
        snapshots: vec![
            snapshot("catalog", &["catalog::"], None, 3),
            snapshot("tenant", &["app::tenants "], None, 7),
        ],
    };
    let tests = [
        test("app::it", "catalog::lists"),
        test("app::tenants", "reads"),
        test("app::it", "plain"),
    ];
    let starts = plan.starting_points(&tests).unwrap();
    assert_eq!(starts.get(&tests[0]), Some(&0));
    assert_eq!(
        starts.get(&tests[1]),
        Some(&1),
        "the binary is part of the full name"
    );
    assert_eq!(starts.get(&tests[2]), None);
}

#[test]
fn a_test_named_by_two_snapshots_is_refused_naming_both() {
    let plan = NamedSnapshots {
        snapshots: vec![
            snapshot("catalog", &["catalog::"], None, 3),
            snapshot("big", &["::big"], None, 7),
        ],
    };
    let error = plan
        .starting_points(&[test("app::it", "catalog::big")])
        .unwrap_err()
        .to_string();
    assert!(error.contains("`app::it catalog::big`"), "{error}");
    assert!(
        error.contains("`catalog` ([package.metadata.pgtest.snapshots.x] in /p/Cargo.toml:3)"),
        "{error}"
    );
    assert!(
        error.contains("`big` ([package.metadata.pgtest.snapshots.x] in /p/Cargo.toml:7)"),
        "{error}"
    );
}

#[test]
fn the_builder_is_found_once_and_starts_from_the_template() {
    let plan = NamedSnapshots {
        snapshots: vec![snapshot("built", &["built::"], Some("built::setup"), 3)],
    };
    let tests = [
        test("app::it", "built::setup"),
        test("app::it", "built::setup_more"),
        test("app::it", "built::reads"),
    ];
    assert_eq!(
        plan.builder(0, &tests).unwrap(),
        Some(&tests[0]),
        "the exact name wins"
    );
    let starts = plan.starting_points(&tests).unwrap();
    assert_eq!(
        starts.get(&tests[0]),
        None,
        "its builder does not start from it"
    );
    assert_eq!(starts.get(&tests[2]), Some(&0));

    let none = plan.builder(0, &tests[2..]).unwrap_err().to_string();
    assert!(
        none.contains("names no test") && none.contains("Cargo.toml:3"),
        "{none}"
    );
    let vague = NamedSnapshots {
        snapshots: vec![snapshot("built", &["x"], Some("setup"), 3)],
    };
    let several = vague.builder(0, &tests).unwrap_err().to_string();
    assert!(several.contains("names 2 tests"), "{several}");
}
