//! How a run shares its job slots, end to end on `fixtures/schedule-probe`: a binary whose one
//! `#[sqlx::test]` runs as a batch holds one job slot, and tests alone run on the other beside it (its test
//! passes only if one does, within a minute); once the history knows the tests' times, the longest test
//! alone starts first although libtest lists it last, and `list` shows that order. The run also says what
//! CPU cargo-pgtest itself used, by thread, and what the test processes and the server used.

use serde_json::Value;

use crate::support::{self, Project, Run};

crate::tests! {
    a_one_test_batch_holds_one_slot_and_the_longest_known_test_starts_first,
}

/// The names of the tests of `binary` in the order they started.
fn started(run: &Run, binary: &str) -> Vec<String> {
    run.events()
        .iter()
        .filter(|event| event["type"] == "test_started" && event["test"]["binary"] == binary)
        .filter_map(|event| event["test"]["name"].as_str().map(str::to_owned))
        .collect()
}

fn the_batch(run: &Run) -> Value {
    let events = run.events();
    let batches: Vec<&Value> = events
        .iter()
        .filter(|event| event["type"] == "batch_started" && event["kind"] != "doc")
        .collect();
    assert_eq!(batches.len(), 1, "one batch: {batches:?}\n{}", run.stdout);
    batches[0].clone()
}

/// The run says what CPU cargo-pgtest used in the tests phase: in all, on its main thread (part of it), and
/// on the `#[sqlx::test]` gateway's thread.
fn own_cpu_is_reported(run: &Run) {
    let events = run.events();
    let own = events
        .iter()
        .find(|event| event["type"] == "own_cpu")
        .unwrap_or_else(|| panic!("no own_cpu event in\n{}", run.stdout));
    let (all, main) = (
        own["process_seconds"].as_f64().unwrap(),
        own["main_thread_seconds"].as_f64().unwrap(),
    );
    assert!(main > 0.0 && all >= main, "{own}");
    // Each thread's figure is read from /proc in clock ticks (10 ms), the rest from the process's own
    // clocks: a tick's leeway.
    let threads = own["threads"].as_array().expect("a list of threads");
    let used: Vec<f64> = threads
        .iter()
        .map(|t| t["seconds"].as_f64().unwrap())
        .collect();
    assert!(used.iter().all(|&s| s > 0.0 && s <= all + 0.011), "{own}");
    assert!(
        used.windows(2).all(|w| w[0] >= w[1]),
        "busiest first: {own}"
    );
    assert!(
        threads
            .iter()
            .all(|t| t["name"].as_str().is_some_and(|n| !n.is_empty())),
        "{own}"
    );
    let gateway = events
        .iter()
        .find(|event| event["type"] == "thread_cpu" && event["thread"] == "sqlx-gateway")
        .unwrap_or_else(|| panic!("no thread_cpu event for the gateway in\n{}", run.stdout));
    let gateway = gateway["seconds"].as_f64().unwrap();
    assert!(gateway > 0.0 && gateway <= all, "{gateway} of {all}");
    // The rest of the run's CPU: the test processes hold `c_quick`'s 0.3 s of spinning; the server made,
    // checked and dropped the tests' databases.
    let rest = events
        .iter()
        .find(|event| event["type"] == "tests_cpu")
        .unwrap_or_else(|| panic!("no tests_cpu event in\n{}", run.stdout));
    let test_processes = rest["test_processes_seconds"].as_f64().unwrap();
    assert!(test_processes >= 0.3, "{rest}");
    assert!(rest["server_seconds"].as_f64().unwrap() > 0.0, "{rest}");
}

fn a_one_test_batch_holds_one_slot_and_the_longest_known_test_starts_first() {
    if !support::postgres_available() {
        return;
    }
    // A history of its own (the shared target directory's is not read), builds shared.
    let project = Project::with_state_apart("schedule-probe");
    let args = ["--json", "-", "--jobs", "2"];
    let first = project.run(&args);
    first.expect(0, &["5 passed"]);
    let leak_check = first.events().into_iter().find_map(|event| {
        let message = event["message"].as_str()?;
        message
            .strip_prefix("cluster databases before the tests: ")
            .map(str::to_owned)
    });
    let leak_check = leak_check.expect("a leak check");
    let (before, after) = leak_check.split_once(", after: ").unwrap();
    assert_eq!(before, after, "every test's database is gone again");
    own_cpu_is_reported(&first);
    let batch = the_batch(&first);
    assert_eq!(batch["kind"], "sqlx", "{batch}");
    assert_eq!(
        batch["slots"], 1,
        "a batch of one test holds one slot: {batch}"
    );
    let plain = "schedule-probe::plain";
    assert_eq!(
        started(&first, plain),
        ["a_quick", "b_quick", "c_quick", "z_long"],
        "without history, libtest's order"
    );

    let second = project.run(&args);
    second.expect(0, &["5 passed"]);
    assert_eq!(the_batch(&second)["slots"], 1);
    // Started among the first two (it was the last of four), whichever clone happened to be ready first.
    let order = started(&second, plain);
    assert!(order[..2].contains(&"z_long".to_owned()), "{order:?}");

    let list = project.run(&["list", "--jobs", "2"]);
    list.expect(0, &[]);
    let own: Vec<&str> = list
        .stdout
        .lines()
        .filter(|line| line.contains(plain))
        .collect();
    assert!(
        own.first().is_some_and(|line| line.contains("z_long")),
        "list shows the run's order:\n{}",
        list.stdout
    );
}
