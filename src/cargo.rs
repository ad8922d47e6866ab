//! Talking to cargo: which cargo to run (`$CARGO`), `cargo metadata` for the workspace and its pgtest tables,
//! and `cargo test --no-run` to build the test binaries, read from cargo's JSON messages.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use cargo_metadata::{Message, Metadata, TargetKind};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::cli::CargoArgs;
use crate::config::{Member, Workspace};

#[derive(Debug, thiserror::Error)]
pub(crate) enum CargoError {
    #[error("could not run cargo ({}): {source}; install Rust, or set $CARGO to the cargo binary", program.to_string_lossy())]
    Spawn {
        program: OsString,
        source: std::io::Error,
    },
    #[error("`cargo metadata` failed, so the project's Cargo.toml could not be read:\n{stderr}")]
    Metadata { stderr: String },
    #[error("could not understand the output of `cargo metadata`: {0}")]
    ParseMetadata(#[source] cargo_metadata::Error),
    #[error("no package matches `{spec}` (given with -p/--package); the workspace has {members}")]
    UnknownPackage { spec: String, members: String },
    #[error("the build failed (`cargo test --no-run` {status}); see cargo's messages above")]
    BuildFailed { status: String },
    #[error("could not read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The cargo binary: `$CARGO` (set by cargo for its subcommands), else `cargo` on PATH.
pub(crate) fn cargo_program() -> OsString {
    std::env::var_os("CARGO")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| OsString::from("cargo"))
}

/// The project as cargo sees it.
#[derive(Debug, Clone)]
pub(crate) struct Project {
    pub(crate) workspace: Workspace,
    pub(crate) target_dir: PathBuf,
    /// Selected packages whose library has doc tests on (only those run `cargo test --doc`).
    pub(crate) packages_with_lib: Vec<String>,
    pub(crate) package_versions: BTreeMap<String, String>,
    /// How long `cargo metadata` took: the build phase counts it (it is cargo's work on the project).
    pub(crate) loaded_in: std::time::Duration,
}

/// Runs `cargo metadata` and reads the workspace, its members' manifests and the selected packages.
pub(crate) async fn project(args: &CargoArgs) -> Result<Project, CargoError> {
    let started = std::time::Instant::now();
    let mut command = Command::new(cargo_program());
    command.args(["metadata", "--format-version", "1", "--no-deps"]);
    if let Some(path) = &args.manifest_path {
        command.arg("--manifest-path").arg(path);
    }
    for (flag, on) in [
        ("--locked", args.locked),
        ("--offline", args.offline),
        ("--frozen", args.frozen),
    ] {
        if on {
            command.arg(flag);
        }
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| CargoError::Spawn {
            program: cargo_program(),
            source,
        })?;
    if !output.status.success() {
        return Err(CargoError::Metadata {
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let metadata = cargo_metadata::MetadataCommand::parse(String::from_utf8_lossy(&output.stdout))
        .map_err(CargoError::ParseMetadata)?;
    let mut project = project_from_metadata(&metadata, args)?;
    project.loaded_in = started.elapsed();
    Ok(project)
}

fn project_from_metadata(metadata: &Metadata, args: &CargoArgs) -> Result<Project, CargoError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| CargoError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let root = metadata.workspace_root.clone().into_std_path_buf();
    let members: Vec<&cargo_metadata::Package> = metadata.workspace_packages();
    let member_names: Vec<String> = members.iter().map(|p| p.name.to_string()).collect();
    let default_members: Vec<String> = if metadata.workspace_default_members.is_available() {
        metadata
            .workspace_default_members
            .iter()
            .filter_map(|id| {
                members
                    .iter()
                    .find(|p| &p.id == id)
                    .map(|p| p.name.to_string())
            })
            .collect()
    } else {
        member_names.clone()
    };
    let root_package = metadata.root_package().map(|p| p.name.to_string());
    let selected = select_packages(
        args,
        &member_names,
        root_package.as_deref(),
        &default_members,
    )?;

    let root_manifest = root.join("Cargo.toml");
    let workspace = Workspace {
        root_manifest_text: read(&root_manifest)?,
        root,
        members: members
            .iter()
            .map(|package| {
                let manifest_path = package.manifest_path.clone().into_std_path_buf();
                Ok(Member {
                    name: package.name.to_string(),
                    manifest_text: read(&manifest_path)?,
                    manifest_path,
                })
            })
            .collect::<Result<_, CargoError>>()?,
        selected: selected.clone(),
    };
    let packages_with_lib = packages_with_doc_tests(&members, &selected);
    Ok(Project {
        workspace,
        target_dir: args
            .target_dir
            .clone()
            .unwrap_or_else(|| metadata.target_directory.clone().into_std_path_buf()),
        packages_with_lib,
        package_versions: members
            .iter()
            .map(|p| (p.name.to_string(), p.version.to_string()))
            .collect(),
        loaded_in: std::time::Duration::ZERO,
    })
}

/// The selected packages whose library has doc tests: `doctest = false` in `[lib]` turns them off, as for
/// cargo test.
fn packages_with_doc_tests(
    members: &[&cargo_metadata::Package],
    selected: &[String],
) -> Vec<String> {
    members
        .iter()
        .filter(|p| selected.contains(&p.name.to_string()))
        .filter(|p| {
            p.targets.iter().any(|t| {
                t.doctest
                    && t.kind.iter().any(|k| {
                        matches!(
                            k,
                            TargetKind::Lib | TargetKind::RLib | TargetKind::ProcMacro
                        )
                    })
            })
        })
        .map(|p| p.name.to_string())
        .collect()
}

/// The packages `cargo test` tests with these flags: `-p` specs, else `--workspace` minus `--exclude`, else
/// the package in the current directory, else the workspace's default members.
pub(crate) fn select_packages(
    args: &CargoArgs,
    members: &[String],
    root_package: Option<&str>,
    default_members: &[String],
) -> Result<Vec<String>, CargoError> {
    if !args.package.is_empty() {
        let mut selected = Vec::new();
        for spec in &args.package {
            let name = spec.split(['@', ':']).next().unwrap_or(spec);
            let matching: Vec<&String> = members.iter().filter(|m| glob_match(name, m)).collect();
            if matching.is_empty() {
                return Err(CargoError::UnknownPackage {
                    spec: spec.clone(),
                    members: members.join(", "),
                });
            }
            // Each package once, where it was first named (`-p a -p b -p a`, or two globs that overlap).
            for name in matching {
                if !selected.contains(name) {
                    selected.push(name.clone());
                }
            }
        }
        return Ok(selected);
    }
    if args.workspace {
        return Ok(members
            .iter()
            .filter(|m| !args.exclude.iter().any(|e| glob_match(e, m)))
            .cloned()
            .collect());
    }
    Ok(match root_package {
        Some(root) => vec![root.to_owned()],
        None => default_members.to_vec(),
    })
}

/// Cargo's package specs may use `*` and `?` globs.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn matches(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&p[1..], n) || (!n.is_empty() && matches(p, &n[1..])),
            (Some(b'?'), Some(_)) => matches(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => matches(&p[1..], &n[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), name.as_bytes())
}

/// A built test executable and how to run it the way `cargo test` would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TestBinary {
    /// nextest-style name: `pkg` (library), `pkg::name` (integration test), `pkg::bin/name`, `pkg::example/name`.
    pub(crate) id: String,
    pub(crate) package: String,
    pub(crate) path: PathBuf,
    /// The package directory; cargo runs tests there.
    pub(crate) cwd: PathBuf,
    /// Variables cargo sets for a test process.
    pub(crate) env: Vec<(String, String)>,
}

/// Builds the test binaries with `cargo test --no-run`, passing `env` to cargo (the build-time database),
/// and returns them. Cargo's compiler messages still go to the terminal.
pub(crate) async fn build_tests(
    args: &[String],
    env: &[(String, String)],
    project: &Project,
) -> Result<Vec<TestBinary>, CargoError> {
    let mut command = Command::new(cargo_program());
    command
        .args([
            "test",
            "--no-run",
            "--message-format",
            "json-render-diagnostics",
        ])
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| CargoError::Spawn {
        program: cargo_program(),
        source,
    })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut messages = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<Message>(&line) {
            Ok(message) => messages.push(message),
            // Build scripts and proc macros may print plain text to stdout; pass it on.
            Err(_) => eprintln!("{line}"),
        }
    }
    let status = child.wait().await.map_err(|source| CargoError::Spawn {
        program: cargo_program(),
        source,
    })?;
    if !status.success() {
        return Err(CargoError::BuildFailed {
            status: status.to_string(),
        });
    }
    Ok(test_binaries(&messages, project))
}

/// Reads the test executables out of cargo's messages, with the environment cargo would give each.
pub(crate) fn test_binaries(messages: &[Message], project: &Project) -> Vec<TestBinary> {
    let built = Built::read(messages, project);
    let all_library_paths: Vec<PathBuf> = built.library_paths.values().flatten().cloned().collect();
    built
        .tests
        .iter()
        .map(|test| {
            let cwd = test.manifest.parent().unwrap_or(Path::new(".")).to_owned();
            let env = test_env(test, &cwd, project, &built, &all_library_paths);
            TestBinary {
                id: test.id.clone(),
                package: test.package.clone(),
                path: test.path.clone(),
                cwd,
                env,
            }
        })
        .collect()
}

/// One test executable cargo built.
struct BuiltTest {
    id: String,
    package: String,
    kind: TargetKind,
    /// The target's name, as the crate name cargo gives it.
    target: String,
    path: PathBuf,
    manifest: PathBuf,
}

/// What cargo's messages say was built.
#[derive(Default)]
struct Built {
    tests: Vec<BuiltTest>,
    /// Build scripts' native library paths, by package id.
    library_paths: BTreeMap<String, Vec<PathBuf>>,
    /// Each package's binaries (not their tests), for `CARGO_BIN_EXE_<name>`.
    bin_exes: BTreeMap<String, Vec<(String, PathBuf)>>,
}

impl Built {
    fn read(messages: &[Message], project: &Project) -> Built {
        let mut built = Built::default();
        for message in messages {
            match message {
                Message::BuildScriptExecuted(script) => {
                    let paths = script.linked_paths.iter().map(|p| {
                        let text = p.as_str();
                        // `native=/path`, `dependency=/path`, …: only the path matters for the loader.
                        PathBuf::from(text.split_once('=').map_or(text, |(_, path)| path))
                    });
                    built
                        .library_paths
                        .entry(script.package_id.repr.clone())
                        .or_default()
                        .extend(paths);
                }
                Message::CompilerArtifact(artifact) => built.artifact(artifact, project),
                _ => {}
            }
        }
        built
    }

    fn artifact(&mut self, artifact: &cargo_metadata::Artifact, project: &Project) {
        let manifest = artifact.manifest_path.clone().into_std_path_buf();
        let package = project
            .workspace
            .members
            .iter()
            .find(|m| m.manifest_path == manifest)
            .map(|m| m.name.clone());
        let (Some(package), Some(executable)) = (package, &artifact.executable) else {
            return;
        };
        let path = executable.clone().into_std_path_buf();
        let kind = artifact
            .target
            .kind
            .first()
            .cloned()
            .unwrap_or(TargetKind::Lib);
        let name = artifact.target.name.clone();
        if !artifact.profile.test {
            if kind == TargetKind::Bin {
                self.bin_exes.entry(package).or_default().push((name, path));
            }
            return;
        }
        let id = match kind {
            TargetKind::Test => format!("{package}::{name}"),
            TargetKind::Bin => format!("{package}::bin/{name}"),
            TargetKind::Example => format!("{package}::example/{name}"),
            TargetKind::Bench => format!("{package}::bench/{name}"),
            _ => package.clone(),
        };
        self.tests.push(BuiltTest {
            id,
            package,
            kind,
            target: name,
            path,
            manifest,
        });
    }
}

/// The variables cargo sets for a test process.
fn test_env(
    test: &BuiltTest,
    cwd: &Path,
    project: &Project,
    built: &Built,
    library_paths: &[PathBuf],
) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "CARGO".to_owned(),
            cargo_program().to_string_lossy().into_owned(),
        ),
        ("CARGO_MANIFEST_DIR".to_owned(), cwd.display().to_string()),
        (
            "CARGO_MANIFEST_PATH".to_owned(),
            test.manifest.display().to_string(),
        ),
        ("CARGO_PKG_NAME".to_owned(), test.package.clone()),
        ("CARGO_CRATE_NAME".to_owned(), test.target.replace('-', "_")),
    ];
    if let Some(version) = project.package_versions.get(&test.package) {
        env.push(("CARGO_PKG_VERSION".to_owned(), version.clone()));
    }
    if test.kind == TargetKind::Test || test.kind == TargetKind::Bench {
        env.push((
            "CARGO_TARGET_TMPDIR".to_owned(),
            project.target_dir.join("tmp").display().to_string(),
        ));
    }
    for (bin, exe) in built.bin_exes.get(&test.package).into_iter().flatten() {
        env.push((format!("CARGO_BIN_EXE_{bin}"), exe.display().to_string()));
    }
    // Like cargo: the deps directory and build scripts' native paths come first for the loader.
    let mut loader_paths: Vec<PathBuf> =
        test.path.parent().into_iter().map(Path::to_owned).collect();
    loader_paths.extend(library_paths.iter().cloned());
    loader_paths.extend(
        std::env::var_os(loader_variable())
            .map(|v| std::env::split_paths(&v).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    if let Ok(joined) = std::env::join_paths(&loader_paths) {
        env.push((
            loader_variable().to_owned(),
            joined.to_string_lossy().into_owned(),
        ));
    }
    env
}

fn loader_variable() -> &'static str {
    if cfg!(target_os = "macos") {
        "DYLD_FALLBACK_LIBRARY_PATH"
    } else {
        "LD_LIBRARY_PATH"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn package_selection_follows_cargo() {
        let members = names(&["api", "db", "db-macros"]);
        let none = CargoArgs::default();
        assert_eq!(
            select_packages(&none, &members, Some("api"), &members).unwrap(),
            ["api"]
        );
        assert_eq!(
            select_packages(&none, &members, None, &names(&["db"])).unwrap(),
            ["db"]
        );
        let some = CargoArgs {
            package: names(&["db*"]),
            ..CargoArgs::default()
        };
        assert_eq!(
            select_packages(&some, &members, Some("api"), &members).unwrap(),
            ["db", "db-macros"]
        );
        let all = CargoArgs {
            workspace: true,
            exclude: names(&["api"]),
            ..CargoArgs::default()
        };
        assert_eq!(
            select_packages(&all, &members, Some("api"), &members).unwrap(),
            ["db", "db-macros"]
        );
        let unknown = CargoArgs {
            package: names(&["nope"]),
            ..CargoArgs::default()
        };
        assert!(select_packages(&unknown, &members, None, &members)
            .unwrap_err()
            .to_string()
            .contains("nope"));
    }

    #[test]
    fn a_package_named_twice_is_selected_once_where_first_named() {
        let members = names(&["a", "b", "c"]);
        let twice = CargoArgs {
            package: names(&["a", "b", "a", "c", "b*"]),
            ..CargoArgs::default()
        };
        assert_eq!(
            select_packages(&twice, &members, None, &members).unwrap(),
            ["a", "b", "c"]
        );
        let overlapping = CargoArgs {
            package: names(&["c", "*"]),
            ..CargoArgs::default()
        };
        assert_eq!(
            select_packages(&overlapping, &members, None, &members).unwrap(),
            ["c", "a", "b"]
        );
    }

    #[test]
    fn test_executables_are_named_like_nextest() {
        let member = Member {
            name: "app".into(),
            manifest_path: PathBuf::from("/p/Cargo.toml"),
            ..Member::default()
        };
        let project = Project {
            workspace: Workspace {
                members: vec![member],
                ..Workspace::default()
            },
            target_dir: PathBuf::from("/p/target"),
            packages_with_lib: vec![],
            package_versions: BTreeMap::from([("app".to_owned(), "0.1.0".to_owned())]),
            loaded_in: std::time::Duration::ZERO,
        };
        let artifact = |kind: &str, name: &str, test: bool, exe: &str| {
            format!(
                r#"{{"reason":"compiler-artifact","package_id":"path+file:///p#app@0.1.0","manifest_path":"/p/Cargo.toml","target":{{"kind":["{kind}"],"crate_types":["{kind}"],"name":"{name}","src_path":"/p/src/x.rs","edition":"2021","doc":true,"doctest":false,"test":true}},"profile":{{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":{test}}},"features":[],"filenames":["{exe}"],"executable":"{exe}","fresh":false}}"#
            )
        };
        let lines = [
            artifact("lib", "app", true, "/p/target/debug/deps/app-1"),
            artifact(
                "test",
                "isolation",
                true,
                "/p/target/debug/deps/isolation-2",
            ),
            artifact("bin", "server", true, "/p/target/debug/deps/server-3"),
            artifact("bin", "server", false, "/p/target/debug/server"),
            r#"{"reason":"build-finished","success":true}"#.to_owned(),
        ];
        let messages: Vec<Message> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let binaries = test_binaries(&messages, &project);
        let ids: Vec<&str> = binaries.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["app", "app::isolation", "app::bin/server"]);
        let env = &binaries[1].env;
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("CARGO_MANIFEST_DIR"), Some("/p"));
        assert_eq!(get("CARGO_PKG_VERSION"), Some("0.1.0"));
        assert_eq!(get("CARGO_BIN_EXE_server"), Some("/p/target/debug/server"));
        assert_eq!(get("CARGO_TARGET_TMPDIR"), Some("/p/target/tmp"));
        assert!(get("LD_LIBRARY_PATH")
            .unwrap()
            .starts_with("/p/target/debug/deps"));
        assert_eq!(binaries[1].cwd, PathBuf::from("/p"));
    }
}
