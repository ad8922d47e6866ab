//! The server's processes as the kernel lists them (`/proc`, Linux only): the postmaster's children, and
//! the CPU time the whole tree has used. Elsewhere there is nothing to read: no children, no CPU time.

use std::fs;
use std::time::Duration;

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
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so read after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The CPU time (user + system) `root` and every process under it have used so far: its own, that of its
/// children that ended (which it waited for), and that of its live children. None where it cannot be read.
pub(crate) fn cpu(root: u32) -> Option<Duration> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let mut ticks = stat_ticks(root)?;
    for child in children_of(root) {
        // A backend may end between the listing and the read: its time is then in its parent's.
        ticks += stat_ticks(child).unwrap_or(0);
    }
    Some(from_ticks(ticks))
}

/// The clock ticks `/proc/<pid>/stat` gives `pid`: its user and system time, and its waited-for children's.
fn stat_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat)
}

fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so fields are counted after the
    // last ')'. utime, stime, cutime and cstime are the 14th to 17th fields, the 12th to 15th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let times: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    (times.len() == 4).then(|| times.iter().sum())
}

fn from_ticks(ticks: u64) -> Duration {
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_times_are_read_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 20 10 20 0 1 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(7 + 3 + 20 + 10));
        assert_eq!(parse_stat_ticks("42 (x) S 1 2"), None);
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
    fn our_own_process_has_a_parent() {
        let me = std::process::id();
        assert_eq!(parent_of(me), Some(std::os::unix::process::parent_id()));
    }

    /// A child's CPU counts while it runs and, once waited for, as its parent's.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_childs_cpu_counts_in_the_tree_alive_and_ended() {
        let me = std::process::id();
        let before = cpu(me).expect("readable here");
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("sh runs");
        let spun = Duration::from_millis(200);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while stat_ticks(child.id()).map(from_ticks).unwrap_or_default() < spun {
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
