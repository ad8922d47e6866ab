//! The server processes' memory: the proportional set size (PSS) of the postmaster and all its children,
//! so shared buffers count once however many backends map them. Linux only (`/proc`); `None` elsewhere (macOS has no per-process PSS to read).

use std::fs;

use crate::cluster::process_tree::children_of;

/// Whether this system has the files [`cluster_pss`] reads.
const MEASURED: bool = cfg!(target_os = "linux");

/// The summed PSS, in bytes, of `postmaster` and its child processes.
///
/// Each process's `smaps_rollup` walks its page tables: about 0.3 ms of CPU per process, 3–4 ms for a
/// cluster with two tests in flight, which is why [`super::watch`] samples off the runtime's thread.
pub(crate) fn cluster_pss(postmaster: u32) -> Option<u64> {
    if !MEASURED {
        return None;
    }
    let mut total = pss_of(postmaster)?;
    for child in children_of(postmaster) {
        // A backend may exit between the listing and the read: it then counts for nothing.
        total += pss_of(child).unwrap_or(0);
    }
    Some(total)
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
    #[cfg(target_os = "linux")]
    fn our_own_process_has_a_size() {
        let me = std::process::id();
        assert!(cluster_pss(me).is_some_and(|bytes| bytes > 0));
    }
}
