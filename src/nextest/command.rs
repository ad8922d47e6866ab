//! The `cargo nextest run` command: whether cargo-nextest is installed, the arguments (cargo-pgtest's
//! cargo options in nextest's spelling, then the user's), and the target runner that routes every test
//! process through cargo-pgtest.

use std::ffi::OsString;
use std::path::Path;

use super::NextestError;
use crate::cli::CargoArgs;

/// What installs cargo-nextest, as the error says it.
pub(crate) const INSTALL: &str = "cargo install cargo-nextest --locked";

/// The cargo that started cargo-pgtest, or the one on PATH.
pub(crate) fn cargo() -> OsString {
    std::env::var_os("CARGO")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "cargo".into())
}

/// `cargo nextest --version`'s first line, or why cargo-nextest cannot be used.
pub(crate) async fn version() -> Result<String, NextestError> {
    let output = tokio::process::Command::new(cargo())
        .args(["nextest", "--version"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| NextestError::Cargo { source })?;
    if !output.status.success() {
        return Err(NextestError::NotInstalled);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .next()
        .unwrap_or("cargo-nextest")
        .trim()
        .to_owned())
}

/// The target triple the tests are built for: `--target` among nextest's arguments, else the host's.
pub(crate) async fn target_triple(args: &[OsString]) -> Result<String, NextestError> {
    if let Some(target) = target_argument(args) {
        return Ok(target);
    }
    let rustc = std::env::var_os("RUSTC")
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "rustc".into());
    let output = tokio::process::Command::new(&rustc)
        .arg("-vV")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| NextestError::Rustc {
            rustc: Path::new(&rustc).display().to_string(),
            source,
        })?;
    host_triple(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| NextestError::NoHost {
        rustc: Path::new(&rustc).display().to_string(),
    })
}

/// `host: <triple>` in `rustc -vV`'s output.
pub(crate) fn host_triple(rustc_vv: &str) -> Option<String> {
    rustc_vv
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
}

/// `--target X` or `--target=X` before a `--`.
fn target_argument(args: &[OsString]) -> Option<String> {
    let args: Vec<&str> = args
        .iter()
        .map(|a| a.to_str().unwrap_or(""))
        .take_while(|a| *a != "--")
        .collect();
    args.iter().enumerate().find_map(|(i, arg)| {
        if *arg == "--target" {
            args.get(i + 1).map(|t| (*t).to_owned())
        } else {
            arg.strip_prefix("--target=").map(str::to_owned)
        }
    })
}

/// The variable through which cargo (and nextest) take a target's runner: `CARGO_TARGET_<TRIPLE>_RUNNER`.
pub(crate) fn runner_variable(triple: &str) -> String {
    let triple: String = triple
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    format!("CARGO_TARGET_{triple}_RUNNER")
}

/// The runner's value: this executable in its runner mode. Cargo splits the value on spaces, so a path
/// with one cannot be used.
pub(crate) fn runner_value(exe: &Path) -> Result<String, NextestError> {
    let text = exe.to_str().filter(|t| !t.contains(char::is_whitespace));
    match text {
        Some(text) => Ok(format!("{text} {}", super::WRAPPER_MODE)),
        None => Err(NextestError::ExePath {
            path: exe.display().to_string(),
        }),
    }
}

/// `nextest run`, cargo-pgtest's own cargo options in nextest's spelling, then the user's arguments (a
/// leading `run` among them dropped). `--doc` is refused: nextest does not run doc tests.
pub(crate) fn arguments(
    cargo: &CargoArgs,
    user: &[OsString],
) -> Result<Vec<OsString>, NextestError> {
    if cargo.doc {
        return Err(NextestError::DocTests);
    }
    let mut args: Vec<OsString> = vec!["nextest".into(), "run".into()];
    let mut ours = cargo.package_args();
    // nextest's `--profile` is its own profile and `-j` its test threads: cargo's are spelled otherwise.
    if cargo.release {
        ours.push("--release".into());
    }
    if let Some(profile) = &cargo.profile {
        ours.extend(["--cargo-profile".into(), profile.clone()]);
    }
    if let Some(dir) = &cargo.target_dir {
        ours.extend(["--target-dir".into(), dir.display().to_string()]);
    }
    if let Some(jobs) = &cargo.build_jobs {
        ours.extend(["--build-jobs".into(), jobs.clone()]);
    }
    for (flag, on) in [
        ("--locked", cargo.locked),
        ("--offline", cargo.offline),
        ("--frozen", cargo.frozen),
    ] {
        if on {
            ours.push(flag.into());
        }
    }
    ours.extend(cargo.target_args());
    args.extend(ours.into_iter().map(OsString::from));
    let user = match user.first() {
        Some(first) if first == "run" || first == "r" => &user[1..],
        _ => user,
    };
    args.extend(user.iter().cloned());
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn cargo_args(argv: &[&str]) -> CargoArgs {
        let cli = crate::cli::parse_from(["cargo", "pgtest"].iter().chain(argv).copied()).unwrap();
        cli.cargo
    }

    #[test]
    fn cargo_options_come_in_nextest_spelling_before_the_users_arguments() {
        let cargo = cargo_args(&[
            "-p",
            "app",
            "--profile",
            "ci",
            "-j",
            "3",
            "--locked",
            "--test",
            "it",
            "--release",
        ]);
        let args = arguments(&cargo, &os(&["run", "-E", "test(x)", "--profile", "ci"])).unwrap();
        assert_eq!(
            args,
            os(&[
                "nextest",
                "run",
                "--package",
                "app",
                "--release",
                "--cargo-profile",
                "ci",
                "--build-jobs",
                "3",
                "--locked",
                "--test",
                "it",
                "-E",
                "test(x)",
                "--profile",
                "ci"
            ])
        );
    }

    #[test]
    fn a_leading_run_is_optional_but_a_later_one_is_kept() {
        let cargo = CargoArgs::default();
        assert_eq!(
            arguments(&cargo, &os(&["--no-fail-fast", "run"])).unwrap(),
            os(&["nextest", "run", "--no-fail-fast", "run"])
        );
        assert_eq!(
            arguments(&cargo, &os(&["run"])).unwrap(),
            os(&["nextest", "run"])
        );
    }

    #[test]
    fn doc_tests_are_refused_with_a_reason() {
        let error = arguments(&cargo_args(&["--doc"]), &[]).unwrap_err();
        assert!(error.to_string().contains("doc tests"), "{error}");
    }

    #[test]
    fn the_runner_variable_follows_cargos_spelling() {
        assert_eq!(
            runner_variable("x86_64-unknown-linux-gnu"),
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER"
        );
        assert_eq!(
            runner_variable("thumbv7em-none-eabihf"),
            "CARGO_TARGET_THUMBV7EM_NONE_EABIHF_RUNNER"
        );
    }

    #[test]
    fn the_target_comes_from_the_arguments_or_rustc() {
        assert_eq!(
            target_argument(&os(&["--target", "aarch64-apple-darwin"])).as_deref(),
            Some("aarch64-apple-darwin")
        );
        assert_eq!(
            target_argument(&os(&["--target=i686-unknown-linux-gnu"])).as_deref(),
            Some("i686-unknown-linux-gnu")
        );
        assert_eq!(target_argument(&os(&["--", "--target", "x"])), None);
        let rustc =
            "rustc 1.90.0\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.90.0\n";
        assert_eq!(
            host_triple(rustc).as_deref(),
            Some("x86_64-unknown-linux-gnu")
        );
        assert_eq!(host_triple("nothing"), None);
    }

    #[test]
    fn an_executable_path_with_a_space_is_refused_with_its_path() {
        assert_eq!(
            runner_value(Path::new("/usr/bin/cargo-pgtest")).unwrap(),
            format!("/usr/bin/cargo-pgtest {}", crate::nextest::WRAPPER_MODE)
        );
        let error = runner_value(Path::new("/home/a b/cargo-pgtest")).unwrap_err();
        assert!(
            error.to_string().contains("/home/a b/cargo-pgtest"),
            "{error}"
        );
    }
}
