//! cargo-pgtest's own CPU time: the whole process's (every thread, `getrusage`) and one thread's (its CPU
//! clock). A run reports both for its tests phase, by thread, so that what our own work costs per test,
//! and which single thread would be the first to limit a machine with many cores, can be read off a run.

use std::time::Duration;

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
