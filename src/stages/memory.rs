//! The memory watch over the stages that need a running cluster (template, build, tests): started once the
//! cluster is up, told where each phase ends, and reported as one `ClusterMemory` event at the end (see
//! [`crate::cluster::memory::watch`]).

use super::context::Run;
use crate::cluster::memory::watch::{Watch, Watched};
use crate::cluster::storage::StorageKind;
use crate::cluster::Cluster;
use crate::events::Event;

/// Starts sampling `cluster`.
pub(crate) fn watch(run: &Run<'_>, cluster: &Cluster) -> Watch {
    Watch::start(Watched {
        postmaster: cluster.server_pid(),
        data_dir: cluster.data_dir().to_owned(),
        tmpfs: cluster.info.storage == StorageKind::Tmpfs,
        events: run.events.clone(),
    })
}

/// Stops sampling and reports the peaks, if anything was sampled.
pub(crate) fn report(run: &Run<'_>, watch: Watch) {
    // An existing server's processes and files are not ours to measure: nothing was sampled.
    if let Some(seen) = watch.stop().filter(|seen| seen.ram.ram_peak_bytes > 0) {
        run.send(Event::ClusterMemory {
            peak_bytes: seen.processes_peak,
            ram: seen.ram,
            phases: seen.phases,
        });
    }
}
