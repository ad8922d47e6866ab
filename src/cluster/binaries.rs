//! Finding the machine's PostgreSQL server binaries (`initdb`, `postgres`) and their version.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::PostgresChoice;

/// The oldest major version cargo-pgtest supports (`DROP DATABASE … WITH (FORCE)` arrived in 13).
pub(crate) const OLDEST_SUPPORTED_MAJOR: u32 = 13;

/// A usable PostgreSQL installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    pub(crate) bin_dir: PathBuf,
    pub(crate) version: Version,
}

impl Binaries {
    pub(crate) fn initdb(&self) -> PathBuf {
        self.bin_dir.join("initdb")
    }

    pub(crate) fn postgres(&self) -> PathBuf {
        self.bin_dir.join("postgres")
    }
}

/// A PostgreSQL version as `postgres --version` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub(crate) major: u32,
    /// For example "15.18".
    pub(crate) full: String,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgreSQL {}", self.full)
    }
}

/// Where to look, so tests can point discovery at a made-up file system.
#[derive(Debug, Clone)]
pub struct SearchPlaces {
    /// `PGTEST_PG_BIN`.
    pub(crate) env_bin_dir: Option<PathBuf>,
    /// `PATH`.
    pub(crate) path: Option<OsString>,
    /// Prefix put before every packager location ("/" on a real machine).
    pub(crate) root: PathBuf,
}

impl SearchPlaces {
    pub fn from_env() -> Self {
        SearchPlaces {
            env_bin_dir: std::env::var_os("PGTEST_PG_BIN")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            path: std::env::var_os("PATH"),
            root: PathBuf::from("/"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    #[error(
        "no PostgreSQL server binaries found (looked at PGTEST_PG_BIN, `pg_config --bindir`, initdb on PATH, \
         and {places}); install them: `sudo apt-get install postgresql` (Debian/Ubuntu), \
         `sudo dnf install postgresql-server` (Fedora/RHEL), `brew install postgresql@17` (macOS), \
         or set PGTEST_PG_BIN to the directory holding initdb and postgres"
    )]
    NotFound { places: String },
    #[error(
        "PostgreSQL {major} was asked for by the `postgres` key, but only {found} is installed; \
         install PostgreSQL {major} or change the key"
    )]
    MajorNotFound { major: u32, found: String },
    #[error("{dir} (from {source_name}) has no `{program}` program; point it at the bin directory of a PostgreSQL server installation")]
    NotABinDir {
        dir: PathBuf,
        source_name: &'static str,
        program: &'static str,
    },
    #[error("could not read the version of {program}: {detail}")]
    VersionUnreadable { program: PathBuf, detail: String },
    #[error(
        "{version} at {dir} is too old: cargo-pgtest needs PostgreSQL {OLDEST_SUPPORTED_MAJOR} or newer; \
         install a newer one or point the `postgres` key or PGTEST_PG_BIN at it"
    )]
    Unsupported { version: Version, dir: PathBuf },
}

/// Finds the binaries to use: an explicit directory (the `postgres` key, then `PGTEST_PG_BIN`) wins;
/// otherwise every candidate (pg_config, PATH, the places packagers use) is considered and the newest
/// major version, or the pinned one, is chosen. Blocking (it runs `pg_config` and `postgres --version`, and
/// waits out a binary still being written): the run calls it on a blocking thread.
pub fn discover(choice: &PostgresChoice, places: &SearchPlaces) -> Result<Binaries, BinariesError> {
    if let PostgresChoice::BinDir(dir) = choice {
        return check_bin_dir(dir, "the `postgres` key");
    }
    // The key comes first: with a major version asked for, PGTEST_PG_BIN is only the first place looked in.
    let mut candidates = Vec::new();
    match (&places.env_bin_dir, choice) {
        (Some(dir), PostgresChoice::Major(_)) => {
            check_bin_dir(dir, "PGTEST_PG_BIN")?;
            candidates.push(dir.clone());
        }
        (Some(dir), _) => return check_bin_dir(dir, "PGTEST_PG_BIN"),
        (None, _) => {}
    }
    candidates.extend(candidate_dirs(places));
    let mut found: Vec<Binaries> = Vec::new();
    for dir in candidates {
        if !is_server_bin_dir(&dir) {
            continue;
        }
        // The same installation is often reachable twice (PATH symlinks to a packager's directory): ask it
        // for its version once.
        let server = dir.join("postgres");
        let canonical = server.canonicalize().unwrap_or(server);
        if found.iter().any(|known| {
            let known_server = known.bin_dir.join("postgres");
            known_server.canonicalize().unwrap_or(known_server) == canonical
        }) {
            continue;
        }
        if let Ok(version) = read_version(&dir.join("postgres")) {
            found.push(Binaries {
                bin_dir: dir,
                version,
            });
        }
    }
    let chosen = match choice {
        PostgresChoice::Major(major) | PostgresChoice::Fetch(major) => found
            .iter()
            .find(|b| b.version.major == *major)
            .cloned()
            .ok_or_else(|| BinariesError::MajorNotFound {
                major: *major,
                found: if found.is_empty() {
                    "no version".to_owned()
                } else {
                    found
                        .iter()
                        .map(|b| format!("{} ({})", b.version, b.bin_dir.display()))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })?,
        _ => {
            // Newest major first; among equals, the earlier place in the search order.
            let newest = found.iter().map(|b| b.version.major).max();
            let Some(newest) = newest else {
                return Err(BinariesError::NotFound {
                    places: packager_places_text(),
                });
            };
            found
                .into_iter()
                .find(|b| b.version.major == newest)
                .expect("the newest major was found")
        }
    };
    ensure_supported(chosen)
}

/// The binaries in `dir`, checked (both programs there, a supported version); `source_name` says who
/// named the directory.
pub(crate) fn check_bin_dir(
    dir: &Path,
    source_name: &'static str,
) -> Result<Binaries, BinariesError> {
    for program in ["initdb", "postgres"] {
        if !dir.join(program).is_file() {
            return Err(BinariesError::NotABinDir {
                dir: dir.to_owned(),
                source_name,
                program,
            });
        }
    }
    let version = read_version(&dir.join("postgres"))?;
    ensure_supported(Binaries {
        bin_dir: dir.to_owned(),
        version,
    })
}

fn ensure_supported(binaries: Binaries) -> Result<Binaries, BinariesError> {
    if binaries.version.major < OLDEST_SUPPORTED_MAJOR {
        return Err(BinariesError::Unsupported {
            version: binaries.version,
            dir: binaries.bin_dir,
        });
    }
    Ok(binaries)
}

fn is_server_bin_dir(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// Candidate directories in search order: pg_config, PATH, then packagers' places (newest first within each).
fn candidate_dirs(places: &SearchPlaces) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let path_dirs: Vec<PathBuf> = places
        .path
        .as_ref()
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    if let Some(pg_config) = path_dirs
        .iter()
        .map(|d| d.join("pg_config"))
        .find(|p| p.is_file())
    {
        if let Ok(output) = Command::new(&pg_config).arg("--bindir").output() {
            if output.status.success() {
                dirs.push(PathBuf::from(
                    String::from_utf8_lossy(&output.stdout).trim(),
                ));
            }
        }
    }
    dirs.extend(
        path_dirs
            .iter()
            .filter(|d| d.join("initdb").is_file())
            .cloned(),
    );
    dirs.extend(packager_dirs(&places.root));
    dirs
}

/// `<root>/usr/lib/postgresql/<major>/bin`, `<root>/usr/pgsql-<major>/bin`, Homebrew's `opt/postgresql@<major>`,
/// Postgres.app's versions and the source install default `/usr/local/pgsql/bin`.
fn packager_dirs(root: &Path) -> Vec<PathBuf> {
    let under = |path: &str| root.join(path.trim_start_matches('/'));
    let mut dirs = Vec::new();
    let mut versioned = |parent: PathBuf, prefix: &str, suffix: &str| {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            return;
        };
        let mut found: Vec<(u32, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let rest = name.strip_prefix(prefix)?;
                let major = rest.split('.').next()?.parse::<u32>().unwrap_or(0);
                Some((major, parent.join(&name).join(suffix)))
            })
            .collect();
        found.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
        dirs.extend(found.into_iter().map(|(_, dir)| dir));
    };
    versioned(under("/usr/lib/postgresql"), "", "bin");
    versioned(under("/usr"), "pgsql-", "bin");
    for brew in [
        "/opt/homebrew/opt",
        "/usr/local/opt",
        "/home/linuxbrew/.linuxbrew/opt",
    ] {
        versioned(under(brew), "postgresql@", "bin");
    }
    versioned(
        under("/Applications/Postgres.app/Contents/Versions"),
        "",
        "bin",
    );
    for fixed in [
        "/opt/homebrew/opt/postgresql/bin",
        "/usr/local/opt/postgresql/bin",
        "/usr/local/pgsql/bin",
    ] {
        dirs.push(under(fixed));
    }
    dirs
}

fn packager_places_text() -> String {
    "/usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, Homebrew's opt/postgresql@*/bin, Postgres.app, /usr/local/pgsql/bin"
        .to_owned()
}

fn read_version(postgres: &Path) -> Result<Version, BinariesError> {
    let unreadable = |detail: String| BinariesError::VersionUnreadable {
        program: postgres.to_owned(),
        detail,
    };
    // ETXTBSY: the file was just written (an upgrade, a copied install) and a process forked meanwhile still
    // holds it open for writing until it execs; that passes within moments.
    let mut attempts = 0;
    let output = loop {
        match Command::new(postgres).arg("--version").output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            result => break result.map_err(|e| unreadable(e.to_string()))?,
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version(&text).ok_or_else(|| unreadable(format!("unexpected output {:?}", text.trim())))
}

/// Parses `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` or `postgres (PostgreSQL) 17beta1`.
pub(crate) fn parse_version(text: &str) -> Option<Version> {
    let after = text
        .split("(PostgreSQL)")
        .nth(1)?
        .split_whitespace()
        .next()?;
    let major: String = after.chars().take_while(char::is_ascii_digit).collect();
    Some(Version {
        major: major.parse().ok()?,
        full: after.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Makes a fake bin directory whose `postgres --version` prints the given version.
    fn fake_install(dir: &Path, version: &str) {
        std::fs::create_dir_all(dir).unwrap();
        let script = format!("#!/bin/sh\necho 'postgres (PostgreSQL) {version}'\n");
        for program in ["postgres", "initdb"] {
            let path = dir.join(program);
            std::fs::write(&path, &script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            // Another test thread forking at the moment the script was open for writing holds it open
            // until its child execs: running the script fails with ETXTBSY until then.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while Command::new(&path)
                .output()
                .is_err_and(|e| e.raw_os_error() == Some(libc::ETXTBSY))
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }

    fn places(root: &Path) -> SearchPlaces {
        SearchPlaces {
            env_bin_dir: None,
            path: Some(OsString::new()),
            root: root.to_owned(),
        }
    }

    #[test]
    fn versions_are_parsed() {
        let v = parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n").unwrap();
        assert_eq!((v.major, v.full.as_str()), (15, "15.18"));
        assert_eq!(
            parse_version("postgres (PostgreSQL) 17beta1")
                .unwrap()
                .major,
            17
        );
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn the_newest_packaged_major_wins() {
        let root = tempfile::tempdir().unwrap();
        fake_install(&root.path().join("usr/lib/postgresql/14/bin"), "14.9");
        fake_install(&root.path().join("usr/lib/postgresql/16/bin"), "16.2");
        fake_install(&root.path().join("usr/pgsql-15/bin"), "15.1");
        let found = discover(&PostgresChoice::Newest, &places(root.path())).unwrap();
        assert_eq!(found.version.major, 16);
        assert!(found.bin_dir.ends_with("usr/lib/postgresql/16/bin"));
    }

    #[test]
    fn a_pinned_major_is_found_anywhere_and_a_missing_one_lists_what_exists() {
        let root = tempfile::tempdir().unwrap();
        fake_install(&root.path().join("usr/lib/postgresql/16/bin"), "16.2");
        fake_install(
            &root.path().join("opt/homebrew/opt/postgresql@14/bin"),
            "14.9",
        );
        let found = discover(&PostgresChoice::Major(14), &places(root.path())).unwrap();
        assert!(found.bin_dir.ends_with("postgresql@14/bin"));
        let message = discover(&PostgresChoice::Major(99), &places(root.path()))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("PostgreSQL 99") && message.contains("16.2"),
            "{message}"
        );
    }

    #[test]
    fn initdb_on_path_is_found() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("custom/bin");
        fake_install(&bin, "17.0");
        let mut search = places(root.path());
        search.path = Some(bin.clone().into_os_string());
        assert_eq!(
            discover(&PostgresChoice::Newest, &search).unwrap().bin_dir,
            bin
        );
    }

    #[test]
    fn an_explicit_directory_wins_and_is_checked() {
        let root = tempfile::tempdir().unwrap();
        fake_install(&root.path().join("usr/lib/postgresql/16/bin"), "16.2");
        let own = root.path().join("own");
        fake_install(&own, "15.3");
        let mut search = places(root.path());
        search.env_bin_dir = Some(own.clone());
        assert_eq!(
            discover(&PostgresChoice::Newest, &search)
                .unwrap()
                .version
                .major,
            15
        );
        search.env_bin_dir = Some(root.path().join("nowhere"));
        let message = discover(&PostgresChoice::Newest, &search)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("PGTEST_PG_BIN") && message.contains("initdb"),
            "{message}"
        );
    }

    #[test]
    fn nothing_found_says_how_to_install() {
        let root = tempfile::tempdir().unwrap();
        let message = discover(&PostgresChoice::Newest, &places(root.path()))
            .unwrap_err()
            .to_string();
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains("brew install"), "{message}");
    }

    #[test]
    fn too_old_a_version_is_refused() {
        let root = tempfile::tempdir().unwrap();
        fake_install(&root.path().join("usr/lib/postgresql/11/bin"), "11.20");
        let message = discover(&PostgresChoice::Newest, &places(root.path()))
            .unwrap_err()
            .to_string();
        assert!(message.contains("too old"), "{message}");
    }
}
