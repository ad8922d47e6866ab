//! The cluster's memory use: the proportional set size (PSS) of the postmaster and all its children, so
//! shared buffers count once however many backends map them. Linux only (`/proc`); `None` elsewhere.

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Keeps the cluster's peak memory in `peak`, sampling every 50 ms until the task is dropped.
pub async fn track_peak(postmaster: u32, peak: Arc<AtomicU64>) {
    let mut every = tokio::time::interval(Duration::from_millis(50));
    loop {
        every.tick().await;
        // A blocking /proc scan of a few dozen small files: well under a millisecond.
        if let Some(bytes) = cluster_pss(postmaster) {
            peak.fetch_max(bytes, Ordering::Relaxed);
        }
    }
}

/// The summed PSS, in bytes, of `postmaster` and its child processes.
pub fn cluster_pss(postmaster: u32) -> Option<u64> {
    let mut total = pss_of(postmaster)?;
    for entry in fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != postmaster && parent_of(pid) == Some(postmaster) {
            // A backend may exit between the listing and the read: it then counts for nothing.
            total += pss_of(pid).unwrap_or(0);
        }
    }
    Some(total)
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so read after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn pss_of(pid: u32) -> Option<u64> {
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    parse_pss_kib(&rollup).map(|kib| kib * 1024)
}

fn parse_pss_kib(smaps_rollup: &str) -> Option<u64> {
    smaps_rollup.lines().find_map(|line| {
        let value = line.strip_prefix("Pss:")?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_is_read_from_smaps_rollup() {
        let text = "55a0-7ffe ---p 00000000 00:00 0 [rollup]\nRss:  20480 kB\nPss:   9216 kB\nPss_Anon: 100 kB\n";
        assert_eq!(parse_pss_kib(text), Some(9216));
        assert_eq!(parse_pss_kib("Rss: 1 kB\n"), None);
    }

    #[test]
    fn our_own_process_has_a_size_and_a_parent() {
        let me = std::process::id();
        assert!(cluster_pss(me).is_some_and(|bytes| bytes > 0));
        assert_eq!(parent_of(me), Some(std::os::unix::process::parent_id()));
    }
}
