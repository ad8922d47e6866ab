//! Whether this is a CI run, read once the same way by every test, unit and end to end: there a test that
//! cannot run on this machine (no PostgreSQL, no registry, not root) is a failure, not a skip, so that CI
//! cannot pass by running nothing. Public for the end-to-end tests only.
#![doc(hidden)]

/// `CI` is `true` or `1`, `true` in any case (`True`, `TRUE`).
#[doc(hidden)]
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| means_ci(&value))
}

/// `CI`'s values that mean CI; empty, `false`, `0` and anything else do not.
fn means_ci(value: &str) -> bool {
    value == "1" || value.eq_ignore_ascii_case("true")
}

#[cfg(test)]
mod tests {
    use super::means_ci;

    #[test]
    fn ci_is_true_or_1_in_any_case() {
        for value in ["true", "TRUE", "True", "tRuE", "1"] {
            assert!(means_ci(value), "{value:?} means CI");
        }
        for value in ["", "false", "0", "no", "yes", " true", "true ", "01"] {
            assert!(!means_ci(value), "{value:?} does not mean CI");
        }
    }
}
