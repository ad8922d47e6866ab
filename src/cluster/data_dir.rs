//! A cluster's data directory before its server starts: made by `initdb`, or unpacked from a cached
//! cluster; either way locked down to the invoking user (access rules, a private socket directory).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::privileges::{self, ServerUser};
use super::server::{
    die_with_parent, last_lines, server_command, ServerError, ServerSpec, DATA_DIR, SOCKET_DIR,
    SUPERUSER,
};

/// The socket directory, and the run directory handed to the server account.
fn prepare_run_dir(spec: &ServerSpec<'_>) -> Result<(), ServerError> {
    let socket_dir = spec.run_dir.join(SOCKET_DIR);
    // Private to the run, like the run directory around it: only the server account and root get in.
    std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
        .create(&socket_dir)
        .map_err(|source| ServerError::Write {
            path: socket_dir.clone(),
            source,
        })?;
    for dir in [spec.run_dir, &socket_dir] {
        privileges::give_to(dir, spec.server_user)?;
    }
    Ok(())
}

/// Makes the cluster's files those of a cached, stopped cluster (see [`crate::cache`]), in place of `init`.
pub(crate) fn adopt(spec: &ServerSpec<'_>, cached: &crate::cache::Pack) -> Result<(), ServerError> {
    prepare_run_dir(spec)?;
    let data_dir = spec.run_dir.join(DATA_DIR);
    cached
        .write(&data_dir, Some(spec.server_user))
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::ENOSPC) {
                ServerError::NoSpace {
                    dir: spec.run_dir.to_owned(),
                    detail: source.to_string(),
                }
            } else {
                ServerError::Write {
                    path: data_dir.clone(),
                    source,
                }
            }
        })?;
    // The cache may have been made by another login: the access rules are always this run's own.
    write_access_rules(&data_dir, spec.server_user)
}

/// Creates the cluster's files with `initdb` and locks them down.
pub(crate) async fn init(spec: &ServerSpec<'_>) -> Result<(), ServerError> {
    prepare_run_dir(spec)?;
    let data_dir = spec.run_dir.join(DATA_DIR);
    let initdb = spec.binaries.initdb();
    let mut command = server_command(&initdb, spec);
    command
        .arg("--pgdata")
        .arg(&data_dir)
        .args([
            "--username",
            SUPERUSER,
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
            // 1 MB WAL segments instead of 16: a smaller cluster to copy into and out of the cache.
            "--wal-segsize",
            "1",
            "--auth",
            "trust",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure only makes async-signal-safe system calls.
    unsafe { command.pre_exec(die_with_parent(libc::SIGKILL)) };
    let segments_before = dsm_segments(spec.server_user);
    let output = command
        .output()
        .await
        .map_err(|source| ServerError::Spawn {
            program: initdb.clone(),
            source,
        })?;
    if !output.status.success() {
        remove_new_dsm_segments(&segments_before, spec.server_user);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if text.contains("No space left on device") {
            return Err(ServerError::NoSpace {
                dir: spec.run_dir.to_owned(),
                detail: last_lines(&text, 1),
            });
        }
        return Err(ServerError::Initdb {
            status: output.status.to_string(),
            output: last_lines(&text, 20),
        });
    }
    write_access_rules(&data_dir, spec.server_user)
}

/// initdb's own server processes keep shared memory in /dev/shm (`PostgreSQL.<n>`), which one that dies
/// abruptly (a PANIC when the disk is full) leaves there; these are the server account's segments now.
fn dsm_segments(server_user: &ServerUser) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("PostgreSQL.")
        })
        .filter(|entry| entry.metadata().is_ok_and(|m| m.uid() == server_user.uid))
        .map(|entry| entry.path())
        .collect()
}

/// After a failed initdb: removes the server account's segments that appeared while it ran. (The running
/// cluster itself keeps its segments in its data directory: `dynamic_shared_memory_type = mmap`.)
fn remove_new_dsm_segments(before: &[PathBuf], server_user: &ServerUser) {
    for segment in dsm_segments(server_user) {
        if !before.contains(&segment) {
            let _ = fs::remove_file(segment);
        }
    }
}

/// Replaces initdb's access rules: only the invoking OS user may connect (peer authentication over the
/// private socket, mapped to the superuser); no TCP listener exists at all.
fn write_access_rules(data_dir: &Path, server_user: &ServerUser) -> Result<(), ServerError> {
    let (hba, ident) = match privileges::invoking_user_name() {
        Some(name) => (
            "# Written by cargo-pgtest: only the user who ran it connects, over the run's private socket.\n\
             local all all peer map=pgtest\n"
                .to_owned(),
            format!("pgtest {name} {SUPERUSER}\n"),
        ),
        // No login name to map (an anonymous container uid): the 0700 socket directory keeps others out.
        None => ("local all all trust\n".to_owned(), String::new()),
    };
    for (file, text) in [("pg_hba.conf", hba), ("pg_ident.conf", ident)] {
        let path = data_dir.join(file);
        fs::write(&path, text).map_err(|source| ServerError::Write {
            path: path.clone(),
            source,
        })?;
        privileges::give_to(&path, server_user)?;
    }
    Ok(())
}
