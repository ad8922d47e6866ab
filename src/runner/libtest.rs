//! Reading libtest's plain output line by line, as `cargo test` prints it: for tests run together in one
//! process and for doc tests. The plain format is read, not `--format json`, because JSON needs
//! `-Z unstable-options`, which a stable toolchain allows only with `RUSTC_BOOTSTRAP` set in the test's
//! own environment, where a test that runs cargo or rustc itself would see it. Pure parsing, no processes.

/// What one line of libtest's output is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// `running 3 tests`: the tests start now.
    Running(usize),
    /// `test NAME ... ok`: a test ended.
    Result { name: &'a str, verdict: Verdict },
    /// `test NAME ... ` followed by something else: with one thread libtest names a test as it starts, and
    /// output the test did not let libtest capture can land after the name.
    Begun(&'a str),
    /// A verdict alone on its line: the end of a [`Line::Begun`] test.
    Verdict(Verdict),
    /// `---- NAME stdout ----`: the captured output of a failed test follows.
    OutputOf(&'a str),
    /// `failures:` or `successes:`: the summary at the end begins (or its list of names).
    Summary,
    /// `test result: ...`: the tests of this harness are over.
    Done { filtered_out: usize },
    /// libtest's own notice that a test is taking long: framing, not a test's output.
    Notice,
    /// Anything else: a test's own output, blank lines.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ok,
    Failed,
    Ignored,
}

fn verdict(text: &str) -> Option<Verdict> {
    match text.trim_end() {
        "ok" => Some(Verdict::Ok),
        "FAILED" => Some(Verdict::Failed),
        // `ignored, <reason>` when the attribute gives one.
        v if v == "ignored" || v.starts_with("ignored, ") => Some(Verdict::Ignored),
        _ => None,
    }
}

/// Classifies one line (without its line end).
pub(crate) fn classify(line: &str) -> Line<'_> {
    if let Some(count) = line
        .strip_prefix("running ")
        .and_then(|rest| rest.strip_suffix(" tests").or(rest.strip_suffix(" test")))
        .and_then(|count| count.parse().ok())
    {
        return Line::Running(count);
    }
    if let Some(rest) = line.strip_prefix("test result: ") {
        let filtered_out = rest
            .split("; ")
            .find_map(|part| part.strip_suffix(" filtered out"))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0);
        return Line::Done { filtered_out };
    }
    if let Some(rest) = line.strip_prefix("test ") {
        if let Some((name, after)) = rest.rsplit_once(" ... ") {
            return match verdict(after) {
                Some(verdict) => Line::Result { name, verdict },
                None => Line::Begun(name),
            };
        }
        if let Some(name) = rest.strip_suffix(" ...") {
            return Line::Begun(name);
        }
        if rest.contains(" has been running for over ") {
            return Line::Notice;
        }
    }
    if let Some(name) = line
        .strip_prefix("---- ")
        .and_then(|rest| rest.strip_suffix(" stdout ----"))
    {
        return Line::OutputOf(name);
    }
    if line == "failures:" || line == "successes:" {
        return Line::Summary;
    }
    match verdict(line) {
        Some(verdict) => Line::Verdict(verdict),
        None => Line::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_output_lines_are_told_apart() {
        assert_eq!(classify("running 3 tests"), Line::Running(3));
        assert_eq!(classify("running 1 test"), Line::Running(1));
        assert_eq!(
            classify("test db::a ... ok"),
            Line::Result {
                name: "db::a",
                verdict: Verdict::Ok
            }
        );
        assert_eq!(
            classify("test src/lib.rs - add (line 3) ... FAILED"),
            Line::Result {
                name: "src/lib.rs - add (line 3)",
                verdict: Verdict::Failed
            }
        );
        assert_eq!(
            classify("test slow ... ignored, takes an hour"),
            Line::Result {
                name: "slow",
                verdict: Verdict::Ignored
            }
        );
        assert_eq!(
            classify("test db::b ... psql says hi"),
            Line::Begun("db::b")
        );
        assert_eq!(classify("test db::b ..."), Line::Begun("db::b"));
        assert_eq!(classify("ok"), Line::Verdict(Verdict::Ok));
        assert_eq!(classify("---- db::a stdout ----"), Line::OutputOf("db::a"));
        assert_eq!(classify("failures:"), Line::Summary);
        assert_eq!(
            classify("test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 2 filtered out; finished in 0.20s"),
            Line::Done { filtered_out: 2 }
        );
        assert_eq!(
            classify("test db::c has been running for over 60 seconds"),
            Line::Notice
        );
        assert_eq!(
            classify("thread 'db::a' panicked at x.rs:1:1:"),
            Line::Other
        );
        assert_eq!(classify(""), Line::Other);
    }
}
