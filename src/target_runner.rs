//! `cargo-pgtest runner BINARY [ARGS…]`: cargo-pgtest as cargo's target runner, so that plain `cargo test`,
//! an editor's ▶ Run Test and the tools that wrap `cargo test` (coverage, snapshots) get a database per test.
//! Set once, in `.cargo/config.toml` (`[target.'cfg(all())'] runner = "cargo-pgtest runner"`) or as
//! `CARGO_TARGET_<TRIPLE>_RUNNER`, cargo then starts every executable it runs through it.
//!
//! A test binary (one cargo built under `deps/`, not asked to benchmark) runs the way `cargo pgtest` runs
//! it: its own process and fresh database per test, from the package's `[package.metadata.pgtest]` (the
//! package is cargo's `CARGO_MANIFEST_DIR`), with reuse, groups, timeouts and kept databases. From the
//! outside it behaves like the binary itself: the same libtest arguments, libtest's output on stdout in
//! the format asked for (`--format pretty|terse|json`, `-q`), and libtest's exit code, 101, when a test
//! fails. Anything else — `cargo run`'s binaries, benchmarks, a test binary asked only to `--list` or for
//! `--help` — is executed unchanged. Doc tests are run by rustdoc, not through cargo's runner.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cargo::TestBinary;
use crate::cli::Cli;
use crate::exit_code;
use crate::report::libtest::Format;

/// The word after the program's name that makes it cargo's target runner.
const WORD: &str = "runner";
/// libtest's exit code for a failed test, which cargo and the tools around it expect.
const LIBTEST_FAILED: u8 = 101;

/// What an invocation as cargo's target runner comes to.
pub(crate) enum Invocation {
    /// A test binary: run its tests with this command line, as `cargo pgtest` would.
    Tests(Box<Cli>),
    /// Not ours to change: executed as it is.
    Unchanged {
        program: OsString,
        args: Vec<OsString>,
    },
    /// `cargo-pgtest runner` without a program.
    Usage,
}

/// The invocation, if `args` (the whole argv) make cargo-pgtest the target runner.
pub(crate) fn invocation(args: &[OsString]) -> Option<Invocation> {
    if args.get(1).is_none_or(|word| word != WORD) {
        return None;
    }
    let Some(program) = args.get(2).cloned() else {
        return Some(Invocation::Usage);
    };
    let rest: Vec<OsString> = args.iter().skip(3).cloned().collect();
    let unchanged = || Invocation::Unchanged {
        program: program.clone(),
        args: rest.clone(),
    };
    // Arguments that are not text are not libtest's: the program gets them as they are.
    let Some(text) = rest
        .iter()
        .map(|arg| arg.to_str())
        .collect::<Option<Vec<&str>>>()
    else {
        return Some(unchanged());
    };
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let package = std::env::var("CARGO_PKG_NAME").ok();
    let (Some(manifest_dir), Some(package)) = (manifest_dir, package) else {
        // Not started by cargo: there is no package to read the configuration of.
        return Some(unchanged());
    };
    if !runs_tests(Path::new(&program), &text) {
        return Some(unchanged());
    }
    match command_line(&program, &manifest_dir, &package, &text) {
        Some(cli) => Some(Invocation::Tests(Box::new(cli))),
        None => Some(unchanged()),
    }
}

/// Whether `program` run with `args` runs tests: a test binary cargo built (under `deps/`), not asked to
/// benchmark (`cargo bench` passes `--bench`), to list its tests or for its help.
fn runs_tests(program: &Path, args: &[&str]) -> bool {
    let in_deps = program
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|dir| dir == "deps");
    let asks_other = |arg: &&str| matches!(*arg, "--bench" | "--list" | "--help" | "-h");
    in_deps && !args.iter().any(asks_other)
}

/// The `cargo pgtest` command line that runs `program`'s tests with libtest's `args`; None when the
/// arguments are not libtest's (then the program gets them unchanged and says so itself).
fn command_line(
    program: &OsString,
    manifest_dir: &Path,
    package: &str,
    args: &[&str],
) -> Option<Cli> {
    let manifest = manifest_dir.join("Cargo.toml");
    let mut argv: Vec<OsString> = ["cargo-pgtest", "pgtest", "--manifest-path"]
        .into_iter()
        .map(OsString::from)
        .collect();
    argv.extend([
        manifest.into_os_string(),
        "-p".into(),
        package.into(),
        "--".into(),
    ]);
    argv.extend(args.iter().map(OsString::from));
    let mut cli = crate::cli::parse_from(argv).ok()?;
    cli.libtest_output = Some(format_of(args)?);
    cli.given_binary = Some(test_binary(Path::new(program), manifest_dir, package));
    Some(cli)
}

/// The output format libtest's `args` ask for: `--format NAME` (`=NAME`), `-q`/`--quiet` for terse,
/// pretty otherwise; None for a format libtest does not have.
fn format_of(args: &[&str]) -> Option<Format> {
    let mut format = Format::Pretty;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "-q" | "--quiet" => format = Format::Terse,
            "--format" => format = Format::parse(args.next()?)?,
            _ => {
                if let Some(name) = arg.strip_prefix("--format=") {
                    format = Format::parse(name)?;
                }
            }
        }
    }
    Some(format)
}

/// The binary as a run knows it: named like `cargo pgtest` names its binaries (`pkg` for the library's
/// tests, `pkg::target` for the others), run in the package's directory with the environment cargo gave us.
fn test_binary(program: &Path, manifest_dir: &Path, package: &str) -> TestBinary {
    // cargo names a test binary `<target>-<hash>`.
    let stem = program
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(package);
    let target = stem.rsplit_once('-').map_or(stem, |(target, _)| target);
    let id = match target == package.replace('-', "_") {
        true => package.to_owned(),
        false => format!("{package}::{target}"),
    };
    TestBinary {
        id,
        package: package.to_owned(),
        path: program.to_owned(),
        cwd: manifest_dir.to_owned(),
        env: Vec::new(),
    }
}

impl Invocation {
    /// Runs what is not ours: replaces this process with the program (its exit code and signals are the
    /// program's own); returns only if it could not be started.
    pub(crate) fn exec_unchanged(program: &OsString, args: &[OsString]) -> ExitCode {
        let error = std::process::Command::new(program).args(args).exec();
        eprintln!(
            "error: cargo-pgtest runner could not start {}: {error}",
            Path::new(program).display()
        );
        ExitCode::from(exit_code::SETUP_FAILED)
    }

    pub(crate) fn usage() -> ExitCode {
        eprintln!(
            "error: `cargo-pgtest runner` runs the program cargo gives it: set it as cargo's target runner \
             (`[target.'cfg(all())'] runner = \"cargo-pgtest runner\"` in .cargo/config.toml) and run \
             `cargo test`"
        );
        ExitCode::from(exit_code::SETUP_FAILED)
    }
}

/// The exit code a run as target runner ends with: libtest's 101 for failed tests, as cargo expects; the
/// others (interrupted, setup failed) as `cargo pgtest`'s.
pub(crate) fn exit_code(code: u8) -> u8 {
    match code {
        exit_code::TEST_FAILED => LIBTEST_FAILED,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_test_binaries_cargo_built_run_tests() {
        let test = Path::new("/p/target/debug/deps/it-0123456789abcdef");
        assert!(runs_tests(test, &["users", "--exact"]));
        assert!(!runs_tests(test, &["--bench"]), "cargo bench");
        assert!(
            !runs_tests(test, &["--list", "--format", "terse"]),
            "listing"
        );
        assert!(
            !runs_tests(Path::new("/p/target/debug/app"), &[]),
            "cargo run"
        );
        assert!(!runs_tests(Path::new("/p/target/debug/examples/demo"), &[]));
    }

    #[test]
    fn the_format_is_libtest_s() {
        assert_eq!(format_of(&["x", "--exact"]), Some(Format::Pretty));
        assert_eq!(format_of(&["-q"]), Some(Format::Terse));
        assert_eq!(
            format_of(&["-Z", "unstable-options", "--format", "json"]),
            Some(Format::Json)
        );
        assert_eq!(format_of(&["--format=terse"]), Some(Format::Terse));
        assert_eq!(
            format_of(&["--format", "junit"]),
            None,
            "not ours: unchanged"
        );
    }

    #[test]
    fn a_binary_is_named_as_cargo_pgtest_names_it() {
        let dir = Path::new("/p");
        let lib = test_binary(Path::new("/t/debug/deps/my_app-0a1b"), dir, "my-app");
        assert_eq!(lib.id, "my-app");
        let it = test_binary(Path::new("/t/debug/deps/users-0a1b"), dir, "my-app");
        assert_eq!((it.id.as_str(), it.cwd.as_path()), ("my-app::users", dir));
    }

    #[test]
    fn only_the_runner_word_makes_an_invocation() {
        let argv = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(invocation(&argv(&["cargo-pgtest", "pgtest"])).is_none());
        assert!(matches!(
            invocation(&argv(&["cargo-pgtest", "runner"])),
            Some(Invocation::Usage)
        ));
    }
}
