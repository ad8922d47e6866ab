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
    // SAFETY: clock_gettime writes a plain struct, zero-initialised here.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `now` is a valid, writable timespec; the clock exists on Linux and macOS.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return Duration::ZERO;
    }
    let seconds = u64::try_from(now.tv_sec).unwrap_or_default();
    let nanos = u32::try_from(now.tv_nsec).unwrap_or_default();
    Duration::new(seconds, nanos)
}

/// Thread id → the thread's name and the CPU time it has used.
pub(crate) type Threads = std::collections::BTreeMap<u32, (String, Duration)>;

/// The CPU time each live thread of this process has used so far, by thread id, with its name: read from
/// `/proc/self/task` (Linux); empty elsewhere.
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
            threads.insert(id, (stat.name, stat.cpu));
        }
    }
    threads
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
