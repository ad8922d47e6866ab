//! The `cargo test` flags cargo-pgtest refuses, each with the reason, so that a script written for
//! `cargo test` learns why instead of reading clap's "unexpected argument".

use std::ffi::OsString;

/// cargo test's flags that cannot work here, and why.
const REFUSED: [(&str, &str); 4] = [
    (
        "--message-format",
        "cargo-pgtest reads cargo's messages itself and prints its own report; use `--json PATH` for \
         machine-readable results, or `--message-format libtest-json` for libtest's JSON on stdout",
    ),
    (
        "--unit-graph",
        "it prints cargo's unit graph instead of building, so there would be no tests to run; run \
         `cargo test --unit-graph` directly",
    ),
    (
        "--build-plan",
        "it prints cargo's build plan instead of building, so there would be no tests to run; run \
         `cargo test --build-plan` directly",
    ),
    (
        "--future-incompat-report",
        "it reports on a finished build without running tests; run `cargo report future-incompatibilities` \
         after a run",
    ),
];

/// The `--message-format` values that are cargo-pgtest's own (its report, or libtest's JSON), not cargo's.
const OWN_MESSAGE_FORMATS: [&str; 2] = ["human", "libtest-json"];

/// The error message for the first refused flag in `args` (before any `--`), if there is one.
pub(crate) fn refusal(args: &[OsString]) -> Option<String> {
    let args: Vec<&str> = args
        .iter()
        .skip(1)
        .take_while(|arg| *arg != "--")
        .filter_map(|arg| arg.to_str())
        .collect();
    args.iter()
        .enumerate()
        .filter(|(at, arg)| !is_own_message_format(arg, args.get(at + 1)))
        .find_map(|(_, arg)| {
            let flag = arg.split_once('=').map_or(*arg, |(flag, _)| flag);
            REFUSED
                .iter()
                .find(|(refused, _)| *refused == flag)
                .map(|(refused, why)| {
                    format!("cargo pgtest does not accept `cargo test`'s `{refused}`: {why}")
                })
        })
}

/// Whether `arg` is `--message-format` with one of cargo-pgtest's own values (given with `=` or as
/// `next`).
fn is_own_message_format(arg: &str, next: Option<&&str>) -> bool {
    let value = match arg.split_once('=') {
        Some(("--message-format", value)) => Some(value),
        None if arg == "--message-format" => next.copied(),
        _ => None,
    };
    value.is_some_and(|value| OWN_MESSAGE_FORMATS.contains(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("cargo-pgtest")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn a_refused_flag_says_why_in_either_spelling() {
        for args in [
            &["--message-format", "json"][..],
            &["-p", "app", "--message-format=json"],
        ] {
            let message = refusal(&argv(args)).expect("refused");
            assert!(message.contains("`--message-format`"), "{message}");
            assert!(message.contains("--json PATH"), "{message}");
        }
    }

    #[test]
    fn cargo_pgtest_s_own_message_formats_are_not_refused() {
        assert_eq!(refusal(&argv(&["--message-format", "libtest-json"])), None);
        assert_eq!(
            refusal(&argv(&["--message-format=human", "-p", "app"])),
            None
        );
        assert!(refusal(&argv(&["--message-format", "short"])).is_some());
    }

    #[test]
    fn test_arguments_after_the_double_dash_are_not_cargo_flags() {
        assert_eq!(refusal(&argv(&["--", "--message-format"])), None);
        assert_eq!(refusal(&argv(&["--release", "users_"])), None);
    }
}
