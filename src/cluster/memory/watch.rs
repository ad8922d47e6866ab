//! Samples the cluster's memory while it runs: its processes' PSS and its data directory's bytes, every
//! [`EVERY`], keeping the peak of the whole run and of each phase; and on tmpfs, warns once when the data
//! directory's file system is close to full, before PostgreSQL fails on a confusing "No space left on
//! device".
//!
//! A sample costs the PSS read (3–4 ms of CPU with two tests in flight, see [`super::pss`]) plus at most
//! [`ENTRIES_PER_SAMPLE`] data-directory entries (about 1.5 µs each on tmpfs, well under 1 ms in all) and
//! one statvfs. It runs on a thread of its own, `pgtest-memory`, so the runner never waits for it and its
//! CPU time (a cost per second of the run, not per test) is told apart from the per-test work's.
//!
//! About once every [`SAMPLE_EVENT_EVERY`], and at each phase's end, the largest figures sampled since the
//! last one go out as a `MemorySample` event: the HTML report's memory chart, at a tenth of the samples
//! (an hour's run is some 3,600 lines of `--json`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::data_dir::{walk_all, DirSize};
use super::pss::cluster_pss;
use crate::events::{Event, EventSender, MemoryPeak, Phase, PhaseMemory};

/// How often the cluster is sampled.
pub(crate) const EVERY: Duration = Duration::from_millis(100);
/// How many data-directory entries one sample looks at (see [`DirSize`]).
pub(crate) const ENTRIES_PER_SAMPLE: usize = 256;
/// How often the figures sampled go out as an event.
pub(crate) const SAMPLE_EVENT_EVERY: Duration = Duration::from_secs(1);

/// What is watched.
pub(crate) struct Watched {
    /// The postmaster, when known.
    pub(crate) postmaster: Option<u32>,
    pub(crate) data_dir: PathBuf,
    /// Whether the data directory is on tmpfs: then it counts as RAM and its free space is watched.
    pub(crate) tmpfs: bool,
    /// Where the low-space warning goes.
    pub(crate) events: EventSender,
}

/// The peaks so far.
#[derive(Debug, Default)]
struct Peaks {
    /// The processes' own peak, whatever the data directory held then.
    processes: u64,
    /// The processes' PSS in the latest sample.
    latest_processes: u64,
    run: MemoryPeak,
    phase: MemoryPeak,
    phases: Vec<PhaseMemory>,
    /// The largest processes' and data directory's figures since the last `MemorySample` event.
    window: Option<(u64, u64)>,
}

impl Peaks {
    /// The `MemorySample` event of the samples since the last one, if any.
    fn take_window(&mut self) -> Option<Event> {
        let (processes_bytes, data_dir_bytes) = self.window.take()?;
        Some(Event::MemorySample {
            processes_bytes,
            data_dir_bytes,
        })
    }
}

/// What a watch saw over the run.
#[derive(Debug)]
pub(crate) struct MemorySummary {
    /// The server processes' own peak PSS.
    pub(crate) processes_peak: u64,
    /// The peak of the RAM the cluster held, with its parts.
    pub(crate) ram: MemoryPeak,
    /// That peak in each phase, in the order they ended.
    pub(crate) phases: Vec<PhaseMemory>,
}

/// A running sampler; [`Watch::stop`] ends it and returns what it saw.
pub(crate) struct Watch {
    postmaster: Option<u32>,
    data_dir: PathBuf,
    tmpfs: bool,
    events: EventSender,
    peaks: Arc<Mutex<Peaks>>,
    /// Dropped to stop the sampling thread, which then ends within a sample.
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    pub(crate) fn start(watched: Watched) -> Watch {
        let peaks = Arc::new(Mutex::new(Peaks::default()));
        let (postmaster, data_dir, tmpfs) =
            (watched.postmaster, watched.data_dir.clone(), watched.tmpfs);
        let events = watched.events.clone();
        let (stop, stopped) = std::sync::mpsc::channel();
        let sampled = Arc::clone(&peaks);
        // Without a thread there are no samples: each phase's end still measures once.
        let thread = std::thread::Builder::new()
            .name("pgtest-memory".into())
            .spawn(move || sample_until_stopped(&watched, &sampled, &stopped))
            .ok();
        Watch {
            postmaster,
            data_dir,
            tmpfs,
            events,
            peaks,
            stop: Some(stop),
            thread,
        }
    }

    /// Ends the current phase: its peak is kept under `phase`. First a full walk of the data directory
    /// (about a millisecond per thousand files on tmpfs), so that what the phase left is counted however short
    /// it was and however far the incremental walk had got. The processes' PSS is taken from the latest
    /// sample rather than read again: what they hold comes and goes with the work, while the files stay, and
    /// a PSS read costs several milliseconds on the path to the next stage.
    pub(crate) fn phase_done(&self, phase: Phase) {
        let data_dir_bytes = walk_all(&self.data_dir);
        let mut peaks = self.peaks.lock().unwrap_or_else(PoisonError::into_inner);
        let processes = if peaks.latest_processes > 0 {
            peaks.latest_processes
        } else {
            // A phase ended before the first sample: read it once, so a short run still has a figure.
            self.postmaster.and_then(cluster_pss).unwrap_or(0)
        };
        let sample = sample_of(processes, data_dir_bytes, self.tmpfs);
        record(&mut peaks, sample);
        let peak = std::mem::take(&mut peaks.phase);
        if peak.ram_peak_bytes > 0 {
            peaks.phases.push(PhaseMemory { phase, peak });
        }
        if let Some(event) = peaks.take_window().filter(|_| peak.ram_peak_bytes > 0) {
            let _ = self.events.send(event);
        }
    }

    /// Stops sampling and returns what it saw (`None` when nothing was sampled).
    pub(crate) fn stop(mut self) -> Option<MemorySummary> {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let mut peaks = self.peaks.lock().unwrap_or_else(PoisonError::into_inner);
        let phases = std::mem::take(&mut peaks.phases);
        (peaks.run.ram_peak_bytes > 0).then_some(MemorySummary {
            processes_peak: peaks.processes,
            ram: peaks.run,
            phases,
        })
    }
}

/// Samples every [`EVERY`] (from the end of one sample to the start of the next) until `stopped` says so.
fn sample_until_stopped(
    watched: &Watched,
    peaks: &Mutex<Peaks>,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    let mut data_dir = DirSize::new(&watched.data_dir);
    let mut warned = false;
    let per_event = SAMPLE_EVENT_EVERY.as_millis() / EVERY.as_millis();
    for count in 1u128.. {
        if stopped.recv_timeout(EVERY) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            return;
        }
        let processes_bytes = watched.postmaster.and_then(cluster_pss).unwrap_or(0);
        let data_dir_bytes = data_dir.step(ENTRIES_PER_SAMPLE);
        let low = if watched.tmpfs {
            low_space(&watched.data_dir)
        } else {
            None
        };
        let sample = sample_of(processes_bytes, data_dir_bytes, watched.tmpfs);
        let mut locked = peaks.lock().unwrap_or_else(PoisonError::into_inner);
        record(&mut locked, sample);
        // Nothing measured (an existing server's): nothing to chart.
        if count % per_event == 0 && sample.ram_peak_bytes > 0 {
            if let Some(event) = locked.take_window() {
                let _ = watched.events.send(event);
            }
        }
        drop(locked);
        if let (Some(message), false) = (low, warned) {
            warned = true;
            let _ = watched.events.send(Event::Warning { message });
        }
    }
}

fn sample_of(processes_bytes: u64, data_dir_bytes: u64, tmpfs: bool) -> MemoryPeak {
    // On disk the data directory is not RAM: its figure is reported apart, not added.
    let counted_data = if tmpfs { data_dir_bytes } else { 0 };
    MemoryPeak {
        ram_peak_bytes: processes_bytes + counted_data,
        processes_bytes,
        data_dir_bytes,
    }
}

fn record(peaks: &mut Peaks, sample: MemoryPeak) {
    let (processes, data) = peaks.window.unwrap_or_default();
    peaks.window = Some((
        processes.max(sample.processes_bytes),
        data.max(sample.data_dir_bytes),
    ));
    peaks.processes = peaks.processes.max(sample.processes_bytes);
    peaks.latest_processes = sample.processes_bytes;
    keep_max(&mut peaks.run, sample);
    keep_max(&mut peaks.phase, sample);
}

fn keep_max(peak: &mut MemoryPeak, sample: MemoryPeak) {
    let bigger =
        (sample.ram_peak_bytes, sample.data_dir_bytes) > (peak.ram_peak_bytes, peak.data_dir_bytes);
    if bigger {
        *peak = sample;
    }
}

/// The free space under which a tmpfs of `size` bytes counts as about to fill: a tenth of it, and at least
/// room for a few more test databases and their WAL.
fn margin(size: u64) -> u64 {
    (size / 10).max(64 << 20)
}

/// The warning to give when the file system holding `data_dir` is about to fill, if it is.
fn low_space(data_dir: &Path) -> Option<String> {
    let stats = nix::sys::statvfs::statvfs(data_dir).ok()?;
    let unit = stats.fragment_size() as u64;
    let size = stats.blocks() as u64 * unit;
    let free = stats.blocks_available() as u64 * unit;
    (free < margin(size)).then(|| low_space_message(data_dir, free, size))
}

fn low_space_message(data_dir: &Path, free: u64, size: u64) -> String {
    format!(
        "the tmpfs holding the cluster's data ({}) is nearly full: {} MiB free of {} MiB, and tests will fail \
         with \"No space left on device\" once it is; run fewer tests at once (`--jobs`), put the data on \
         disk (`--no-tmpfs`), or point `PGTEST_TMPDIR` at a bigger tmpfs",
        data_dir.display(),
        free >> 20,
        size >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_a_tenth_and_at_least_64_mib() {
        assert_eq!(margin(100 << 20), 64 << 20);
        assert_eq!(margin(8 << 30), (8 << 30) / 10);
    }

    #[test]
    fn a_peak_is_the_sample_with_the_largest_sum() {
        let mut peak = MemoryPeak::default();
        let sample = |processes: u64, data: u64| MemoryPeak {
            ram_peak_bytes: processes + data,
            processes_bytes: processes,
            data_dir_bytes: data,
        };
        keep_max(&mut peak, sample(30, 10));
        keep_max(&mut peak, sample(10, 20));
        assert_eq!(peak, sample(30, 10));
        keep_max(&mut peak, sample(5, 40));
        assert_eq!(peak, sample(5, 40));
    }

    #[tokio::test]
    async fn the_data_directory_is_counted_and_each_phase_gets_its_peak() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("relation"), vec![1u8; 1 << 20]).unwrap();
        let (events, _receiver) = crate::events::channel();
        // A process whose memory stays put stands in for the server: this test process's own grows and
        // shrinks with the tests beside it, and a peak it set would hide the data directory's.
        let mut postmaster = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let watch = Watch::start(Watched {
            postmaster: Some(postmaster.id()),
            data_dir: dir.path().to_owned(),
            tmpfs: true,
            events,
        });
        wait_for_a_sample(&watch).await;
        watch.phase_done(Phase::Template);
        std::fs::write(dir.path().join("clone"), vec![1u8; 4 << 20]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while current(&watch).data_dir_bytes < 5 << 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                current(&watch)
            );
            tokio::time::sleep(EVERY).await;
        }
        watch.phase_done(Phase::Tests);
        let seen = watch.stop().expect("sampled");
        let _ = postmaster.kill();
        let _ = postmaster.wait();
        let (run, phases) = (seen.ram, seen.phases);
        assert!(run.processes_bytes > 0 && seen.processes_peak >= run.processes_bytes);
        assert!(run.data_dir_bytes >= 5 << 20, "{run:?}");
        assert_eq!(run.ram_peak_bytes, run.processes_bytes + run.data_dir_bytes);
        let names: Vec<Phase> = phases.iter().map(|p| p.phase).collect();
        assert_eq!(names, [Phase::Template, Phase::Tests]);
        assert!(phases[0].peak.data_dir_bytes < 5 << 20, "{phases:?}");
    }

    fn current(watch: &Watch) -> MemoryPeak {
        watch.peaks.lock().unwrap().phase
    }

    async fn wait_for_a_sample(watch: &Watch) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while current(watch).data_dir_bytes < 1 << 20 {
            assert!(std::time::Instant::now() < deadline, "never sampled");
            tokio::time::sleep(EVERY).await;
        }
    }
}
