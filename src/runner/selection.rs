//! Which tests a run runs: the user's libtest arguments, each binary's `--list` output, and libtest's
//! filter rules applied to them. Pure parsing, no processes.

use std::sync::Arc;

use crate::cargo::TestBinary;

/// The arguments after `--`, as libtest understands them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TestArgs {
    pub(crate) filters: Vec<String>,
    pub(crate) exact: bool,
    pub(crate) skip: Vec<String>,
    pub(crate) ignored: IgnoredMode,
    /// `--nocapture` / `--no-capture`: every test's output as it comes (the report shows it with the test).
    pub(crate) nocapture: bool,
    /// `--show-output`: the captured output of passing tests too, after them.
    pub(crate) show_output: bool,
    pub(crate) test_threads: Option<usize>,
    /// Anything else, passed to the test binaries as given.
    pub(crate) other: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum IgnoredMode {
    /// Ignored tests are reported as IGNORED and not run.
    #[default]
    Skip,
    /// `--ignored`: only ignored tests run.
    Only,
    /// `--include-ignored`: all tests run.
    Include,
}

impl TestArgs {
    /// Whether passing tests' output is asked for (`--nocapture` or `--show-output`).
    pub(crate) fn shows_passing_output(&self) -> bool {
        self.nocapture || self.show_output
    }

    /// Reads the TESTNAME filter and the arguments after `--`.
    pub(crate) fn parse(filter: Option<&str>, args: &[String]) -> Result<TestArgs, String> {
        let mut parsed = TestArgs {
            filters: filter.into_iter().map(str::to_owned).collect(),
            ..TestArgs::default()
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--exact" => parsed.exact = true,
                "--ignored" => parsed.ignored = IgnoredMode::Only,
                "--include-ignored" => parsed.ignored = IgnoredMode::Include,
                "--nocapture" | "--no-capture" => parsed.nocapture = true,
                "--show-output" => parsed.show_output = true,
                "--skip" => parsed
                    .skip
                    .push(args.next().ok_or("`--skip` needs a value")?.clone()),
                "--test-threads" => {
                    let value = args.next().ok_or("`--test-threads` needs a value")?;
                    parsed.test_threads = Some(parse_threads(value)?);
                }
                other => {
                    if let Some(value) = other.strip_prefix("--test-threads=") {
                        parsed.test_threads = Some(parse_threads(value)?);
                    } else if let Some(value) = other.strip_prefix("--skip=") {
                        parsed.skip.push(value.to_owned());
                    } else if takes_a_value(other) {
                        // The value belongs to the flag (`--color never`): it is not a test name.
                        let value = args
                            .next()
                            .ok_or_else(|| format!("`{other}` needs a value"))?;
                        parsed.other.extend([other.to_owned(), value.clone()]);
                    } else if other.starts_with('-') {
                        parsed.other.push(other.to_owned());
                    } else {
                        parsed.filters.push(other.to_owned());
                    }
                }
            }
        }
        Ok(parsed)
    }

    /// libtest's rule: a test runs when it matches a filter (or there is none) and no skip pattern.
    pub(crate) fn selects(&self, name: &str) -> bool {
        let matches = |pattern: &String| {
            if self.exact {
                name == pattern
            } else {
                name.contains(pattern.as_str())
            }
        };
        (self.filters.is_empty() || self.filters.iter().any(matches))
            && !self.skip.iter().any(matches)
    }

    /// The same selection as libtest arguments, for running a whole binary (shared mode, doc tests).
    pub(crate) fn to_libtest_args(&self) -> Vec<String> {
        let mut args = self.filters.clone();
        if self.exact {
            args.push("--exact".to_owned());
        }
        for skip in &self.skip {
            args.extend(["--skip".to_owned(), skip.clone()]);
        }
        match self.ignored {
            IgnoredMode::Skip => {}
            IgnoredMode::Only => args.push("--ignored".to_owned()),
            IgnoredMode::Include => args.push("--include-ignored".to_owned()),
        }
        if self.nocapture {
            args.push("--nocapture".to_owned());
        }
        if self.show_output {
            args.push("--show-output".to_owned());
        }
        args.extend(self.other.iter().cloned());
        args
    }
}

/// libtest's options that take a value as the next argument (`--color never`); `--color=never` and
/// `-Zunstable-options` carry theirs inside.
fn takes_a_value(arg: &str) -> bool {
    matches!(
        arg,
        "--color" | "--format" | "--logfile" | "--shuffle-seed" | "-Z"
    )
}

impl TestArgs {
    /// [`TestArgs::to_libtest_args`] without the options that change how libtest prints (`--format`,
    /// `--quiet`, `--color`): the runner reads libtest's plain output.
    pub(crate) fn to_plain_libtest_args(&self) -> Vec<String> {
        let mut plain = Vec::new();
        let mut args = self.to_libtest_args().into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--format" | "--color" => {
                    args.next();
                }
                "-q" | "--quiet" => {}
                _ if arg.starts_with("--format=") || arg.starts_with("--color=") => {}
                _ => plain.push(arg),
            }
        }
        plain
    }
}

fn parse_threads(value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`--test-threads {value}` is not a whole number of at least 1"))
}

/// Parses `--list --format terse` output (`name: test` lines) into test names. Benchmarks are left out.
pub(crate) fn parse_terse_list(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

/// A test to run in a process of its own.
#[derive(Debug, Clone)]
pub(crate) struct TestCase {
    pub(crate) binary: Arc<TestBinary>,
    pub(crate) name: String,
    pub(crate) ignored: bool,
}

impl TestCase {
    pub(crate) fn id(&self) -> crate::events::TestId {
        crate::events::TestId {
            binary: self.binary.id.clone(),
            name: self.name.clone(),
        }
    }
}

/// What one binary contributes to the run.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    pub(crate) run: Vec<TestCase>,
    /// Ignored tests not asked for: reported as IGNORED.
    pub(crate) ignored: Vec<TestCase>,
    pub(crate) filtered_out: usize,
    /// Every test of the binary, chosen or not: where a snapshot's `from_test` is looked for.
    pub(crate) listed: Vec<TestCase>,
}

/// Applies the arguments to one binary's full list and its list of ignored tests.
pub(crate) fn select(
    binary: &Arc<TestBinary>,
    all: &[String],
    ignored: &[String],
    args: &TestArgs,
) -> Selection {
    let mut selection = Selection::default();
    for name in all {
        let case = TestCase {
            binary: Arc::clone(binary),
            name: name.clone(),
            ignored: ignored.contains(name),
        };
        selection.listed.push(case.clone());
        if !args.selects(name) {
            selection.filtered_out += 1;
            continue;
        }
        match (args.ignored, case.ignored) {
            (IgnoredMode::Skip, true) => selection.ignored.push(case),
            (IgnoredMode::Only, false) => selection.filtered_out += 1,
            _ => selection.run.push(case),
        }
    }
    selection
}

/// One binary's tests as its `--list` gives them: all of them, and the ignored ones.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub(crate) binary: Arc<TestBinary>,
    pub(crate) all: Vec<String>,
    pub(crate) ignored: Vec<String>,
}

/// Applies the arguments and the partition to every binary's listing, binaries in order: what the run
/// chooses.
pub(crate) fn choose(
    listings: &[Listing],
    args: &TestArgs,
    partition: Option<super::partition::Partition>,
) -> Selection {
    let mut chosen = Selection::default();
    for listing in listings {
        let mut selection = select(&listing.binary, &listing.all, &listing.ignored, args);
        if let Some(partition) = partition {
            selection = partition.apply(selection);
        }
        chosen.run.extend(selection.run);
        chosen.ignored.extend(selection.ignored);
        chosen.filtered_out += selection.filtered_out;
        chosen.listed.extend(selection.listed);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn binary() -> Arc<TestBinary> {
        Arc::new(TestBinary {
            id: "app::it".into(),
            package: "app".into(),
            path: PathBuf::from("/bin/true"),
            cwd: PathBuf::from("/"),
            env: vec![],
        })
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn terse_lists_are_parsed() {
        let output = "users::create: test\nusers::delete: test\nbench_x: benchmark\n\n3 tests, 1 benchmarks\n";
        assert_eq!(parse_terse_list(output), ["users::create", "users::delete"]);
    }

    #[test]
    fn libtest_arguments_are_understood() {
        let args = TestArgs::parse(
            Some("users"),
            &strings(&[
                "--exact",
                "--skip",
                "slow",
                "--include-ignored",
                "--test-threads=3",
                "--nocapture",
                "--color",
                "never",
                "more",
            ]),
        )
        .unwrap();
        assert_eq!(args.filters, ["users", "more"]);
        assert!(args.exact && args.nocapture && !args.show_output);
        assert!(args.shows_passing_output());
        let show = TestArgs::parse(None, &strings(&["--show-output"])).unwrap();
        assert!(show.show_output && !show.nocapture);
        assert_eq!(
            show.to_libtest_args(),
            ["--show-output"],
            "passed on as given, not as --nocapture"
        );
        assert_eq!(args.skip, ["slow"]);
        assert_eq!(args.ignored, IgnoredMode::Include);
        assert_eq!(args.test_threads, Some(3));
        assert_eq!(args.other, ["--color", "never"]);
        assert!(TestArgs::parse(None, &strings(&["--test-threads", "0"])).is_err());
        assert!(TestArgs::parse(None, &strings(&["--skip"])).is_err());
        assert!(TestArgs::parse(None, &strings(&["--color"])).is_err());
    }

    #[test]
    fn values_of_libtest_options_are_not_test_names() {
        let args = TestArgs::parse(
            None,
            &strings(&[
                "--format",
                "pretty",
                "--logfile",
                "out.txt",
                "-Z",
                "unstable-options",
                "--shuffle-seed",
                "7",
                "--color=always",
                "db",
            ]),
        )
        .unwrap();
        assert_eq!(args.filters, ["db"]);
        assert!(args.selects("db::a") && !args.selects("pretty"));
        assert_eq!(
            args.other,
            [
                "--format",
                "pretty",
                "--logfile",
                "out.txt",
                "-Z",
                "unstable-options",
                "--shuffle-seed",
                "7",
                "--color=always"
            ]
        );
    }

    #[test]
    fn filters_and_skips_follow_libtest() {
        let args = TestArgs::parse(Some("user"), &strings(&["--skip", "delete"])).unwrap();
        assert!(args.selects("users::create"));
        assert!(!args.selects("users::delete"));
        assert!(!args.selects("posts::create"));
        let exact = TestArgs::parse(Some("users::create"), &strings(&["--exact"])).unwrap();
        assert!(exact.selects("users::create"));
        assert!(!exact.selects("users::create_many"));
    }

    #[test]
    fn ignored_tests_are_reported_run_or_left_out_as_asked() {
        let all = strings(&["a", "b_ignored", "c"]);
        let ignored = strings(&["b_ignored"]);
        let names = |cases: &[TestCase]| cases.iter().map(|c| c.name.clone()).collect::<Vec<_>>();

        let default = select(&binary(), &all, &ignored, &TestArgs::default());
        assert_eq!(names(&default.run), ["a", "c"]);
        assert_eq!(names(&default.ignored), ["b_ignored"]);

        let only = TestArgs {
            ignored: IgnoredMode::Only,
            ..TestArgs::default()
        };
        let selection = select(&binary(), &all, &ignored, &only);
        assert_eq!(names(&selection.run), ["b_ignored"]);
        assert!(selection.run[0].ignored);
        assert_eq!(selection.filtered_out, 2);

        let include = TestArgs {
            ignored: IgnoredMode::Include,
            filters: strings(&["a", "b"]),
            ..TestArgs::default()
        };
        let selection = select(&binary(), &all, &ignored, &include);
        assert_eq!(names(&selection.run), ["a", "b_ignored"]);
        assert_eq!(selection.filtered_out, 1);
    }

    #[test]
    fn output_options_are_left_out_where_the_output_is_read() {
        let args = TestArgs::parse(
            Some("db"),
            &strings(&[
                "--color",
                "always",
                "-q",
                "--format=terse",
                "--skip",
                "x",
                "--ensure-time",
            ]),
        )
        .unwrap();
        assert_eq!(
            args.to_plain_libtest_args(),
            ["db", "--skip", "x", "--ensure-time"]
        );
    }

    #[test]
    fn the_selection_round_trips_to_libtest_arguments() {
        let args = TestArgs::parse(
            Some("x"),
            &strings(&["--exact", "--skip", "y", "--ignored"]),
        )
        .unwrap();
        assert_eq!(
            args.to_libtest_args(),
            ["x", "--exact", "--skip", "y", "--ignored"]
        );
    }
}
