//! The server processes' memory: the proportional set size (PSS) of the postmaster and all its children,
//! so shared buffers count once however many backends map them. Linux only (`/proc`); `None` elsewhere (macOS has no per-process PSS to read).

use std::fs;

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

/// The child processes of `pid`: from its threads' `children` files where the kernel has them, else by
/// reading every process's parent out of `/proc`, which costs far more.
fn children_of(pid: u32) -> Vec<u32> {
    match children_from_task_files(pid) {
        Some(children) => children,
        None => children_by_scan(pid),
    }
}

fn children_from_task_files(pid: u32) -> Option<Vec<u32>> {
    // The main thread's file tells whether the kernel has them at all (CONFIG_PROC_CHILDREN).
    fs::metadata(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let mut children = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(Result::ok)
    {
        // A thread that ended since the listing has no children left to count.
        let Ok(text) = fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        children.extend(
            text.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    Some(children)
}

fn children_by_scan(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| child != pid && parent_of(child) == Some(pid))
        .collect()
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
    #[cfg(target_os = "linux")]
    fn both_ways_of_listing_children_find_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let me = std::process::id();
        // Kernels without CONFIG_PROC_CHILDREN lack the task files; the ones we run on have them.
        let listed = (
            children_from_task_files(me).unwrap_or_default(),
            children_by_scan(me),
        );
        child.kill().expect("sleep is stopped");
        let _ = child.wait();
        assert!(listed.0.contains(&child.id()), "{listed:?}");
        assert!(listed.1.contains(&child.id()), "{listed:?}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn our_own_process_has_a_size_and_a_parent() {
        let me = std::process::id();
        assert!(cluster_pss(me).is_some_and(|bytes| bytes > 0));
        assert_eq!(parent_of(me), Some(std::os::unix::process::parent_id()));
    }
}
