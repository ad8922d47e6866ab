//! Where the migrated-cluster cache is decided, from start to end of a run:
//! 1. [`Cache::look_up`]: off (`--no-cache`, or a key that cannot be computed), a miss, or a hit that reads
//!    back whole with a manifest this build understands.
//! 2. [`boot`]: a hit boots from the cached cluster; if that fails (a damaged or unusable entry), a fresh
//!    cluster is booted and the hit forgotten, so the fresh result is stored over the entry.
//! 3. [`Cache::templates`]: a hit's templates come from its manifest; otherwise they are prepared.
//! 4. [`store`]: prepared templates are stored under the key, from the running cluster or, when a template
//!    holds unlogged tables, from the stopped one.

use std::fmt::Display;
use std::future::Future;
use std::path::Path;

use super::capture::{self, CacheError, Capture};
use super::key;
use super::manifest::Manifest;
use super::pack::Pack;
use super::store::Store;
use crate::cluster::binaries::Binaries;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::template::Template;

/// The cache for this run: where, under which key, and what it already holds.
#[derive(Debug)]
pub(crate) struct Cache {
    store: Store,
    key: String,
    /// The cached data directory on a hit, until the cluster boots from it.
    pack: Option<Pack>,
    /// The cached templates on a hit (and after a successful boot from it).
    cached: Option<Manifest>,
}

/// Where the templates come from.
#[derive(Debug)]
pub(crate) enum Templates {
    /// From the cached cluster the run booted: nothing to prepare.
    Cached(Vec<Template>),
    /// To be prepared; then stored under the plan, when there is one.
    Prepare(Option<Cache>),
}

impl Cache {
    /// Looks the run's migrated cluster up in the store under `target_dir`. `None` when the cache is off,
    /// or when the key cannot be computed (an unreadable migration or fixture, which preparing the template
    /// reports properly).
    pub(crate) fn look_up(
        enabled: bool,
        target_dir: &Path,
        binaries: &Binaries,
        config: &Config,
        sqlx_test: Option<usize>,
    ) -> Option<Cache> {
        if !enabled {
            return None;
        }
        let key = key::run_key(binaries, config, sqlx_test).ok()?;
        Some(Cache::in_store(Store::in_target_dir(target_dir), key))
    }

    /// The plan for `key` in `store`: a hit when the entry reads back whole and its manifest is readable.
    fn in_store(store: Store, key: String) -> Cache {
        let (pack, cached) = store
            .get(&key)
            .and_then(|entry| Some((entry.pack, Manifest::from_json(&entry.manifest)?)))
            .unzip();
        Cache {
            store,
            key,
            pack,
            cached,
        }
    }

    /// A line for the report: where the cache is and which key this run has.
    pub(crate) fn describe(&self) -> String {
        format!(
            "cluster cache {}: key {}",
            self.store.root().display(),
            self.key
        )
    }

    /// Where the templates come from, once the cluster is booted.
    pub(crate) fn templates(plan: Option<Cache>) -> Templates {
        match plan {
            Some(Cache {
                cached: Some(manifest),
                ..
            }) => Templates::Cached(manifest.templates),
            plan => Templates::Prepare(plan),
        }
    }
}

/// Boots the cluster: from the cached one on a hit, else fresh. A hit that does not boot (unless the run
/// was stopped meanwhile, `is_interruption`) falls back to a fresh boot and is forgotten, so that the
/// templates are prepared and stored over the bad entry; the warning to show is returned with the cluster.
pub async fn boot<T, E: Display, F, Fut>(
    plan: &mut Option<Cache>,
    mut boot: F,
    is_interruption: impl Fn(&E) -> bool,
) -> Result<(T, Option<String>), E>
where
    F: FnMut(Option<Pack>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    // Taken out: the plan no longer needs tens of megabytes once the cluster is unpacked.
    let pack = plan.as_mut().and_then(|plan| plan.pack.take());
    let from_cache = pack.is_some();
    match boot(pack).await {
        Err(error) if from_cache && !is_interruption(&error) => {
            let warning =
                format!("the cached cluster could not be used ({error}); building it afresh");
            if let Some(plan) = plan.as_mut() {
                plan.cached = None;
            }
            Ok((boot(None).await?, Some(warning)))
        }
        booted => Ok((booted?, None)),
    }
}

/// How prepared `templates` are snapshotted: recovery would empty unlogged tables, so a cluster with any
/// is read stopped.
fn snapshot_of(templates: &[Template]) -> Capture {
    if templates.iter().any(|t| t.unlogged_tables) {
        Capture::StoppedCluster
    } else {
        Capture::RunningCluster
    }
}

/// Stores the cluster with its freshly prepared `templates` under the plan's key. `false` when the cluster
/// changed while it was read (not stored this time).
pub(crate) async fn store(
    plan: &Cache,
    cluster: &mut Cluster,
    templates: &[Template],
) -> Result<bool, CacheError> {
    let manifest = Manifest {
        templates: templates.to_vec(),
    };
    let of = snapshot_of(templates);
    capture::take(cluster, &plan.store, &plan.key, &manifest, of).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::pack::tests::sample_cluster;

    fn template(unlogged_tables: bool) -> Template {
        Template {
            name: "pgtest_template".into(),
            migrations: 1,
            fixtures: 0,
            unlogged_tables,
        }
    }

    /// A store under `dir` holding one entry under "k" with one template.
    fn store_with_entry(dir: &Path) -> Store {
        let store = Store::in_target_dir(dir);
        let pack = Pack::read(&sample_cluster(dir), &|_| true).unwrap();
        let manifest = Manifest {
            templates: vec![template(false)],
        };
        store.put("k", &manifest.to_json(), &pack).unwrap();
        store
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    type Booted = Result<(u8, Option<String>), &'static str>;

    /// Boots with `outcomes` in turn (`Err("stopped")` stands for an interruption); returns the result and
    /// which boots were from the cache.
    fn boot_with(
        plan: &mut Option<Cache>,
        outcomes: &[Result<u8, &'static str>],
    ) -> (Booted, Vec<bool>) {
        let mut calls = Vec::new();
        let mut outcomes = outcomes.iter().copied();
        let result = block_on(boot(
            plan,
            |pack: Option<Pack>| {
                calls.push(pack.is_some());
                std::future::ready(outcomes.next().unwrap())
            },
            |error: &&str| *error == "stopped",
        ));
        (result, calls)
    }

    #[test]
    fn a_miss_boots_fresh_then_prepares_and_stores() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = Some(Cache::in_store(
            Store::in_target_dir(dir.path()),
            "k".into(),
        ));
        let (result, calls) = boot_with(&mut plan, &[Ok(1)]);
        assert_eq!((result, calls), (Ok((1, None)), vec![false]));
        assert!(matches!(
            Cache::templates(plan),
            Templates::Prepare(Some(_))
        ));
    }

    #[test]
    fn a_hit_boots_from_the_cache_and_uses_its_templates() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = Some(Cache::in_store(store_with_entry(dir.path()), "k".into()));
        let (result, calls) = boot_with(&mut plan, &[Ok(1)]);
        assert_eq!((result, calls), (Ok((1, None)), vec![true]));
        match Cache::templates(plan) {
            Templates::Cached(templates) => assert_eq!(templates, [template(false)]),
            other => panic!("expected the cached templates, got {other:?}"),
        }
    }

    #[test]
    fn a_hit_that_does_not_boot_falls_back_and_is_stored_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = Some(Cache::in_store(store_with_entry(dir.path()), "k".into()));
        let (result, calls) = boot_with(&mut plan, &[Err("damaged"), Ok(2)]);
        assert_eq!(calls, [true, false], "from the cache, then fresh");
        let (cluster, warning) = result.unwrap();
        assert_eq!(cluster, 2);
        let warning = warning.expect("a warning");
        assert!(warning.contains("could not be used (damaged)"), "{warning}");
        match Cache::templates(plan) {
            Templates::Prepare(Some(plan)) => assert_eq!(plan.key, "k", "stored over the entry"),
            other => panic!("expected to prepare and store, got {other:?}"),
        }
    }

    #[test]
    fn a_stopped_run_does_not_fall_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = Some(Cache::in_store(store_with_entry(dir.path()), "k".into()));
        let (result, calls) = boot_with(&mut plan, &[Err("stopped"), Ok(2)]);
        assert_eq!((result, calls), (Err("stopped"), vec![true]));
    }

    #[test]
    fn without_a_plan_the_cluster_boots_fresh_and_nothing_is_stored() {
        let mut plan = None;
        let (result, calls) = boot_with(&mut plan, &[Ok(1)]);
        assert_eq!((result, calls), (Ok((1, None)), vec![false]));
        assert!(matches!(Cache::templates(plan), Templates::Prepare(None)));
    }

    #[test]
    fn an_entry_with_an_unreadable_manifest_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_target_dir(dir.path());
        let pack = Pack::read(&sample_cluster(dir.path()), &|_| true).unwrap();
        store
            .put("k", "{\"from\":\"another version\"}", &pack)
            .unwrap();
        let plan = Cache::in_store(store, "k".into());
        assert!(plan.pack.is_none() && plan.cached.is_none());
    }

    #[test]
    fn unlogged_tables_are_snapshotted_from_the_stopped_cluster() {
        assert_eq!(snapshot_of(&[template(false)]), Capture::RunningCluster);
        assert_eq!(
            snapshot_of(&[template(false), template(true)]),
            Capture::StoppedCluster
        );
    }
}
