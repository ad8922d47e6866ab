//! Taking a snapshot of the migrated cluster: its data directory read into a [`Pack`] while the cluster
//! is idle (or stopped), then stored on a blocking thread off the critical path.

use std::path::Path;

use sqlx::Connection;

use super::manifest::Manifest;
use super::pack::Pack;
use super::store::Store;
use crate::cluster::{Cluster, ClusterError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    #[error("could not take a snapshot of the migrated cluster for the cache: {0}")]
    Sql(#[source] sqlx::Error),
    #[error("could not read the cluster's data directory {} for the cache: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// How a snapshot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capture {
    /// The running cluster, after a checkpoint: a later start recovers from it.
    RunningCluster,
    /// The cluster stopped cleanly, then started again: needed when templates hold unlogged tables, which
    /// any recovery empties.
    StoppedCluster,
}

/// Reads the cluster's data directory into memory and stores what it read in `store` under `key`, on a
/// blocking thread that `Cluster::shutdown` waits for. Returns whether a snapshot was taken.
///
/// Of the running cluster ([`Capture::RunningCluster`]): it is idle meanwhile (no session but ours,
/// no autovacuum, no timed checkpoint), so after `CHECKPOINT` its files hold everything and nothing
/// changes them; the copy is what a file-system snapshot would be, and a run that starts from it
/// recovers from that checkpoint with nothing to redo. That costs this run less than a clean stop and a
/// restart. Should the WAL have moved during the read (a user's `autovacuum = on` woke up, say), the copy
/// is not stored. Recovery empties unlogged tables, so templates that hold some are read from the stopped
/// cluster instead, which then starts again.
pub(crate) async fn take(
    cluster: &mut Cluster,
    store: &Store,
    key: &str,
    manifest: &Manifest,
    of: Capture,
) -> Result<bool, CacheError> {
    let mut connection =
        sqlx::PgConnection::connect_with(&cluster.endpoint().connect_options("postgres"))
            .await
            .map_err(CacheError::Sql)?;
    let templates: Vec<String> = sqlx::query_scalar(
        "SELECT 'base/' || oid FROM pg_database WHERE datistemplate AND datname <> 'template0'",
    )
    .fetch_all(&mut connection)
    .await
    .map_err(CacheError::Sql)?;
    let read = |data_dir: &Path| {
        Pack::read(data_dir, &|path| belongs_in_cache(path, &templates)).map_err(|source| {
            CacheError::Read {
                path: data_dir.to_owned(),
                source,
            }
        })
    };
    let pack = match of {
        Capture::RunningCluster => {
            let wal_position = "SELECT pg_current_wal_insert_lsn()::text";
            sqlx::raw_sql("CHECKPOINT")
                .execute(&mut connection)
                .await
                .map_err(CacheError::Sql)?;
            let before: String = sqlx::query_scalar(wal_position)
                .fetch_one(&mut connection)
                .await
                .map_err(CacheError::Sql)?;
            let pack = read(cluster.data_dir())?;
            let after: String = sqlx::query_scalar(wal_position)
                .fetch_one(&mut connection)
                .await
                .map_err(CacheError::Sql)?;
            let _ = connection.close().await;
            if before != after {
                return Ok(false);
            }
            pack
        }
        Capture::StoppedCluster => {
            let _ = connection.close().await;
            cluster.while_stopped(read).await??
        }
    };

    let (store, key, manifest) = (store.clone(), key.to_owned(), manifest.to_json());
    cluster.finish_before_removal(tokio::task::spawn_blocking(move || {
        store.put(&key, &manifest, &pack).map_err(|error| {
            format!(
                "could not store the migrated cluster in {}: {error}; the next run builds it again",
                store.root().display()
            )
        })
    }));
    Ok(true)
}

/// What of a running cluster's data directory goes into a snapshot (`path` relative to it). Not the files of
/// the running server (`postmaster.pid` would stop a later start that finds its process id in use); not the
/// relation-cache init files, which every start removes; and not the free-space and visibility maps
/// (`<relfilenode>_fsm`, `_vm`) of the databases test databases are copied from (`templates`, as
/// `base/<oid>`): about a quarter of their files and a seventh of their bytes, which every copy and every
/// drop of a test database would otherwise write and delete. Both maps are hints PostgreSQL rebuilds as it
/// needs them; a missing one reads as empty (no free space known, no page known all-visible), which is also
/// what a freshly migrated table has.
pub(crate) fn belongs_in_cache(path: &Path, templates: &[String]) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if matches!(
        name.as_ref(),
        "postmaster.pid" | "postmaster.opts" | "pg_internal.init"
    ) {
        return false;
    }
    let in_template = path
        .parent()
        .is_some_and(|dir| templates.iter().any(|t| dir == Path::new(t)));
    !(in_template && (name.ends_with("_fsm") || name.ends_with("_vm")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_leaves_out_the_running_server_and_the_templates_maps() {
        let templates = ["base/1".to_owned(), "base/16384".to_owned()];
        let kept = |path: &str| belongs_in_cache(Path::new(path), &templates);
        assert!(!kept("postmaster.pid"));
        assert!(!kept("postmaster.opts"));
        assert!(!kept("global/pg_internal.init"));
        assert!(!kept("base/16384/pg_internal.init"));
        assert!(!kept("base/1/1259_fsm"));
        assert!(!kept("base/16384/2608_vm"));
        assert!(kept("base/16384/2608"), "the relation itself");
        assert!(kept("base/5/1259_fsm"), "`postgres` is no template");
        assert!(kept("global/pg_control"));
        assert!(kept("base/1"));
    }
}
