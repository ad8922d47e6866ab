//! The server's processes as the kernel lists them (`/proc`, Linux only): the postmaster's children, and
//! the CPU time the whole tree has used. Elsewhere there is nothing to read: no children, no CPU time.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::platform::proc_stat::ProcStat;

/// The child processes of `pid`: from its threads' `children` files where the kernel has them, else by
/// reading every process's parent out of `/proc`, which costs far more.
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
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
    Some(stat_of(pid)?.parent)
}

fn stat_of(pid: u32) -> Option<ProcStat> {
    ProcStat::read(Path::new(&format!("/proc/{pid}/stat")))
}

/// The CPU time (user + system) `root` and every process under it have used so far: its own, that of its
/// children that ended (which it waited for), and that of its live children. None where it cannot be read.
pub(crate) fn cpu(root: u32) -> Option<Duration> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let used = |stat: ProcStat| stat.cpu + stat.children_cpu;
    let mut total = used(stat_of(root)?);
    for child in children_of(root) {
        // A backend may end between the listing and the read: its time is then in its parent's.
        total += stat_of(child).map_or(Duration::ZERO, used);
    }
    Some(total)
}

// Every test reads /proc.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
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
    fn our_own_process_has_a_parent() {
        let me = std::process::id();
        assert_eq!(parent_of(me), Some(std::os::unix::process::parent_id()));
    }

    /// A child's CPU counts while it runs and, once waited for, as its parent's.
    #[test]
    fn a_childs_cpu_counts_in_the_tree_alive_and_ended() {
        let me = std::process::id();
        let before = cpu(me).expect("readable here");
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("sh runs");
        let spun = Duration::from_millis(200);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while stat_of(child.id()).map(|stat| stat.cpu).unwrap_or_default() < spun {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never got the CPU"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let alive = cpu(me).expect("readable here") - before;
        child.kill().expect("sh is stopped");
        let _ = child.wait();
        let ended = cpu(me).expect("readable here") - before;
        assert!(alive >= spun, "while it runs: {alive:?}");
        assert!(ended >= spun, "once waited for: {ended:?}");
    }
}
