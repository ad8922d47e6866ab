//! `--retries`: running a failed test again. The dispatcher decides whether a test gets another attempt
//! ([`super::dispatch::Dispatcher::attempt_finished`]); this module runs that attempt — always the one test
//! alone (`NAME --exact`), even when its first attempt ran in a process with others, each time in a fresh
//! database — and writes the result of a test that never passed, with every attempt's output.

use std::time::{Duration, Instant};

use super::dispatch::{Dispatcher, Next, TestResult};
use super::exec::{self, Limits};
use super::selection::TestCase;
use crate::cancel::Cancel;
use crate::events::{DatabaseKind, Outcome, Start};
use crate::template::{self, Obtain, Return, TestDatabases};

/// Where each attempt of a retried test gets its fresh database.
pub(crate) enum AttemptDatabase<'a> {
    /// A new copy of `template` (with the extra databases' copies) per attempt, dropped after it; named
    /// after `base` (`<base>_retry2`…).
    Clone {
        databases: &'a TestDatabases,
        template: String,
        base: &'a str,
    },
    /// The test makes its own database from this environment (`#[sqlx::test]`s make one per run).
    Given(&'a [(String, String)]),
}

/// Runs `case` again, alone, in job slot `slot`, until the dispatcher has its result: it passes, or its
/// retries are spent.
pub(crate) async fn run_again(
    case: &TestCase,
    fresh: &AttemptDatabase<'_>,
    slot: usize,
    limits: Limits,
    cancel: &Cancel,
    dispatch: &Dispatcher,
) {
    for attempt in 2.. {
        let waiting = Instant::now();
        let result = match database_for(fresh, attempt).await {
            Ok((env, made)) => {
                let kind = match fresh {
                    AttemptDatabase::Clone { .. } => DatabaseKind::Fresh,
                    AttemptDatabase::Given(_) => DatabaseKind::Sqlx,
                };
                dispatch.started(case.id(), Start::alone(slot, kind, Some(waiting.elapsed())));
                let result = exec::run_alone(case, &env, limits, cancel.clone(), dispatch).await;
                if let (Some(name), AttemptDatabase::Clone { databases, .. }) = (made, fresh) {
                    databases.give_back(&name, Return::Drop).await;
                }
                result
            }
            Err(message) => TestResult {
                outcome: Outcome::NotRun {
                    reason: format!(
                        "its database for attempt {attempt} could not be created: {message}"
                    ),
                },
                duration: Some(Duration::ZERO),
                output: String::new(),
            },
        };
        let may_retry = cancel.signal().is_none();
        if dispatch.attempt_finished(case.id(), result, may_retry) == Next::Done {
            return;
        }
    }
}

/// The environment of one attempt, and the database made for it (to drop afterwards), if one was.
async fn database_for(
    fresh: &AttemptDatabase<'_>,
    attempt: usize,
) -> Result<(Vec<(String, String)>, Option<String>), String> {
    match fresh {
        AttemptDatabase::Given(env) => Ok((env.to_vec(), None)),
        AttemptDatabase::Clone {
            databases,
            template,
            base,
        } => {
            let name = format!("{base}_retry{attempt}");
            let lease = databases
                .lease(template, &name, Obtain::Fresh)
                .await
                .map_err(|error| template::server_message(&error))?;
            Ok((lease.env, Some(name)))
        }
    }
}

/// A test's result once its attempts are over: the last attempt's, and when it never passed, with every
/// attempt's output under a heading that says which attempt it was.
pub(crate) fn last_attempt(earlier: Vec<TestResult>, last: TestResult) -> TestResult {
    if earlier.is_empty() || last.outcome.is_success() {
        return last;
    }
    let total = earlier.len() + 1;
    let mut output = String::new();
    for (index, attempt) in earlier.iter().chain([&last]).enumerate() {
        let heading = format!(
            "--- attempt {} of {total}: {} ---",
            index + 1,
            attempt.outcome.label()
        );
        output.push_str(&heading);
        output.push('\n');
        if !attempt.output.is_empty() {
            output.push_str(attempt.output.trim_end());
            output.push('\n');
        }
    }
    TestResult {
        output: output.trim_end().to_owned(),
        ..last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{self, Event, TestId};

    fn failed(output: &str) -> TestResult {
        TestResult {
            outcome: Outcome::Failed {
                exit_code: Some(101),
            },
            duration: Some(Duration::from_millis(3)),
            output: output.into(),
        }
    }

    fn passed() -> TestResult {
        TestResult {
            outcome: Outcome::Passed,
            duration: Some(Duration::from_millis(2)),
            output: String::new(),
        }
    }

    fn id(name: &str) -> TestId {
        TestId {
            binary: "app".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_test_that_never_passes_keeps_every_attempts_output() {
        let result = last_attempt(vec![failed("first boom"), failed("")], failed("third boom"));
        assert_eq!(
            result.output,
            "--- attempt 1 of 3: FAIL ---\nfirst boom\n--- attempt 2 of 3: FAIL ---\n--- attempt 3 of 3: FAIL ---\nthird boom"
        );
        assert_eq!(last_attempt(vec![failed("x")], passed()), passed());
        assert_eq!(last_attempt(Vec::new(), failed("once")), failed("once"));
    }

    #[test]
    fn the_dispatcher_asks_for_retries_until_they_are_spent() {
        let (sender, mut receiver) = events::channel();
        let dispatch = Dispatcher::new(sender).retrying(2);
        dispatch.run_started(
            [id("flaky"), id("broken"), id("stopped"), id("ok")],
            0,
            1,
            false,
        );
        assert_eq!(
            dispatch.attempt_finished(id("flaky"), failed("f1"), true),
            Next::Retry
        );
        assert_eq!(
            dispatch.attempt_finished(id("flaky"), passed(), true),
            Next::Done
        );
        for attempt in 1..=2 {
            let output = format!("b{attempt}");
            let next = dispatch.attempt_finished(id("broken"), failed(&output), true);
            assert_eq!(next, Next::Retry);
        }
        assert_eq!(
            dispatch.attempt_finished(id("broken"), failed("b3"), true),
            Next::Done
        );
        // A stopped run does not start attempts: the failure stands.
        assert_eq!(
            dispatch.attempt_finished(id("stopped"), failed("s"), false),
            Next::Done
        );
        assert_eq!(
            dispatch.attempt_finished(id("ok"), passed(), true),
            Next::Done
        );
        let mut seen = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            match event {
                Event::TestRetry { test, attempt, .. } => {
                    seen.push(format!("retry {} {attempt}", test.name))
                }
                Event::TestFinished {
                    test,
                    outcome,
                    output,
                    ..
                } => seen.push(format!(
                    "{} {} {}",
                    outcome.label(),
                    test.name,
                    output.lines().count()
                )),
                _ => {}
            }
        }
        assert_eq!(
            seen,
            [
                "retry flaky 1",
                "PASS flaky 0",
                "retry broken 1",
                "retry broken 2",
                "FAIL broken 6",
                "FAIL stopped 1",
                "PASS ok 0",
            ]
        );
    }
}
