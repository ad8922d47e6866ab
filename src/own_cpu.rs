//! cargo-pgtest's own CPU time: the whole process's (every thread, `getrusage`) and one thread's (its CPU
//! clock). A run reports both for its tests phase, by thread, so that what our own work costs per test,
//! and which single thread would be the first to limit a machine with many cores, can be read off a run.

use std::time::Duration;

use crate::platform::proc_stat::ProcStat;

/// The CPU time (user + system) every thread of this process has used so far.
pub(crate) fn process() -> Duration {
    // SAFETY: getrusage writes a plain struct, zero-initialised here; RUSAGE_SELF is always valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// The CPU time (user + system) of the processes this one started and waited for, so far (their own
/// waited-for children's included): the test binaries, say, once they have ended.
pub(crate) fn children() -> Duration {
    // SAFETY: as in `process`, with RUSAGE_CHILDREN, also always valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// The CPU time the calling thread has used so far.
pub(crate) fn this_thread() -> Duration {
    // The clock exists on Linux and macOS.
    read_clock(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or_default()
}

/// Thread id → the thread's name and the CPU time it has used.
pub(crate) type Threads = std::collections::BTreeMap<u32, (String, Duration)>;

/// The CPU time each live thread of this process has used so far, by thread id, with its name: listed from
/// `/proc/self/task` (Linux), each time read from the thread's own CPU clock (to the nanosecond; `stat`
/// counts in ticks of 10 ms, too coarse for a tenth of a second of work split over threads); empty
/// elsewhere.
pub(crate) fn threads() -> Threads {
    let mut threads = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return threads;
    };
    for task in tasks.filter_map(Result::ok) {
        let Some(id) = task.file_name().to_str().and_then(|id| id.parse().ok()) else {
            continue;
        };
        // A thread that ended since the listing has nothing left to read.
        if let Some(stat) = ProcStat::read(&task.path().join("stat")) {
            let cpu = thread_clock(id).unwrap_or(stat.cpu);
            threads.insert(id, (stat.name, cpu));
        }
    }
    threads
}

/// The CPU time of this process's thread `id`, from its CPU clock; None once it has ended.
#[cfg(target_os = "linux")]
fn thread_clock(id: u32) -> Option<Duration> {
    // The clock id glibc's `pthread_getcpuclockid` makes of a thread id (the kernel's
    // `MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`): the id inverted, shifted past three bits that say
    // "scheduler time" (2) of "one thread" (4). Reached here by id, as only `/proc` names the threads.
    let id = libc::clockid_t::try_from(id).ok()?;
    read_clock((!id << 3) | 6)
}

#[cfg(not(target_os = "linux"))]
fn thread_clock(_id: u32) -> Option<Duration> {
    None
}

/// The time of CPU clock `clock`; None if it cannot be read.
fn read_clock(clock: libc::clockid_t) -> Option<Duration> {
    // SAFETY: clock_gettime writes a plain struct, zero-initialised here.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `now` is a valid, writable timespec; an unknown clock is an error return, not UB.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    let seconds = u64::try_from(now.tv_sec).ok()?;
    let nanos = u32::try_from(now.tv_nsec).ok()?;
    Some(Duration::new(seconds, nanos))
}

/// The threads that used CPU since the [`threads`] reading `before`, busiest first: each one's name and the
/// CPU time it used in between (a thread that started in between counts from zero).
pub(crate) fn used_since(before: &Threads) -> Vec<(String, Duration)> {
    used_between(before, threads())
}

fn used_between(before: &Threads, now: Threads) -> Vec<(String, Duration)> {
    let mut used: Vec<(String, Duration)> = now
        .into_iter()
        .map(|(id, (name, now))| {
            let then = before.get(&id).map_or(Duration::ZERO, |(_, then)| *then);
            (name, now.saturating_sub(then))
        })
        .filter(|(_, used)| !used.is_zero())
        .collect();
    used.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    used
}

fn timeval(time: libc::timeval) -> Duration {
    let seconds = u64::try_from(time.tv_sec).unwrap_or_default();
    let micros = u64::try_from(time.tv_usec).unwrap_or_default();
    Duration::from_secs(seconds) + Duration::from_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(for_at_least: Duration) {
        let start = this_thread();
        let mut x = 0u64;
        while this_thread() - start < for_at_least {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_threads_cpu_is_read_under_its_name() {
        let worker = std::thread::Builder::new()
            .name("spinner".into())
            .spawn(|| {
                let before = threads();
                spin(Duration::from_millis(300));
                let id = u32::try_from(unsafe { libc::gettid() }).unwrap();
                let (name, now) = threads().remove(&id).expect("this thread is listed");
                (
                    name,
                    now - before.get(&id).map(|(_, t)| *t).unwrap_or_default(),
                )
            })
            .unwrap();
        let (name, used) = worker.join().unwrap();
        assert_eq!(name, "spinner");
        assert!(used >= Duration::from_millis(250), "{used:?}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_threads_cpu_is_read_finer_than_the_kernels_ticks() {
        let worker = std::thread::spawn(|| {
            let id = u32::try_from(unsafe { libc::gettid() }).unwrap();
            let before = threads()[&id].1;
            spin(Duration::from_micros(2_500));
            let used = threads()[&id].1 - before;
            (used, this_thread())
        });
        let (used, own_clock) = worker.join().unwrap();
        // Read in ticks (`stat`), 2.5 ms of work shows as 0 or a whole 10 ms.
        assert!(used >= Duration::from_micros(2_500), "{used:?}");
        assert!(used.as_nanos() % 10_000_000 != 0, "{used:?} is whole ticks");
        assert!(
            used <= own_clock,
            "{used:?} > the thread's own clock {own_clock:?}"
        );
    }

    #[test]
    fn threads_are_listed_busiest_first_by_what_they_used_in_between() {
        let second = Duration::from_secs(1);
        let entry = |name: &str, used: Duration| (name.to_owned(), used);
        let before = Threads::from([
            (1, entry("main", 10 * second)),
            (2, entry("a", second)),
            (4, entry("idle", second)),
        ]);
        let now = Threads::from([
            (1, entry("main", 11 * second)),
            (2, entry("a", 4 * second)),
            (3, entry("new", 2 * second)),
            (4, entry("idle", second)),
        ]);
        let used = used_between(&before, now);
        assert_eq!(
            used,
            [
                entry("a", 3 * second),
                entry("new", 2 * second),
                entry("main", second)
            ],
            "an idle thread is left out"
        );
    }

    #[test]
    fn a_thread_s_work_shows_in_its_own_clock_and_the_process_s_but_not_in_another_thread_s() {
        let (process_before, mine_before) = (process(), this_thread());
        let other = std::thread::spawn(|| {
            let before = this_thread();
            spin(Duration::from_millis(60));
            this_thread() - before
        });
        let theirs = other.join().unwrap();
        let mine = this_thread() - mine_before;
        assert!(theirs >= Duration::from_millis(60), "{theirs:?}");
        assert!(
            mine < Duration::from_millis(30),
            "this thread only waited: {mine:?}"
        );
        assert!(
            process() - process_before >= Duration::from_millis(50),
            "the process counts every thread"
        );
    }
}
