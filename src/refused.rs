//! The `cargo test` flags cargo-pgtest refuses, each with the reason, so that a script written for
//! `cargo test` learns why instead of reading clap's "unexpected argument".

use std::ffi::OsString;

/// cargo test's flags that cannot work here, and why.
const REFUSED: [(&str, &str); 4] = [
    (
        "--message-format",
        "cargo-pgtest reads cargo's messages itself and prints its own report; use `--json PATH` for \
         machine-readable results",
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

/// The error message for the first refused flag in `args` (before any `--`), if there is one.
pub(crate) fn refusal(args: &[OsString]) -> Option<String> {
    args.iter()
        .skip(1)
        .take_while(|arg| *arg != "--")
        .filter_map(|arg| arg.to_str())
        .find_map(|arg| {
            let flag = arg.split_once('=').map_or(arg, |(flag, _)| flag);
            REFUSED
                .iter()
                .find(|(refused, _)| *refused == flag)
                .map(|(refused, why)| {
                    format!("cargo pgtest does not accept `cargo test`'s `{refused}`: {why}")
                })
        })
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
    fn test_arguments_after_the_double_dash_are_not_cargo_flags() {
        assert_eq!(refusal(&argv(&["--", "--message-format"])), None);
        assert_eq!(refusal(&argv(&["--release", "users_"])), None);
    }
}
