//! Every exit code cargo-pgtest returns, named and documented in one place (README's table mirrors it).

/// Every test that ran passed (tests that were ignored or filtered out do not count as failures).
pub(crate) const SUCCESS: u8 = 0;
/// cargo-pgtest itself failed in a way that is a bug (a panic): please report it.
pub(crate) const INTERNAL_ERROR: u8 = 1;
/// Setup failed before or around the tests: bad configuration or flags, no PostgreSQL binaries, the cluster
/// did not start, a migration or fixture failed.
pub(crate) const SETUP_FAILED: u8 = 2;
/// No test ran, and `--no-tests fail` (the default) makes that a failure; cargo-nextest's `NO_TESTS_RUN`.
pub(crate) const NO_TESTS_RUN: u8 = 4;
/// At least one test failed, crashed, timed out or could not run.
pub(crate) const TEST_FAILED: u8 = 100;
/// `cargo test --no-run` failed: the project does not build.
pub(crate) const BUILD_FAILED: u8 = 101;
/// Interrupted by Ctrl-C (SIGINT); the results so far were printed.
pub(crate) const INTERRUPTED: u8 = 130;
/// Terminated by SIGTERM; the results so far were printed.
pub(crate) const TERMINATED: u8 = 143;

/// The exit code of a run stopped by `signal` ("SIGINT" or "SIGTERM").
pub(crate) fn for_signal(signal: &str) -> u8 {
    if signal == "SIGTERM" {
        TERMINATED
    } else {
        INTERRUPTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_signal_has_its_shell_exit_code() {
        assert_eq!(for_signal("SIGTERM"), 143);
        assert_eq!(for_signal("SIGINT"), 130);
    }
}
