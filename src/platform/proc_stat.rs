//! One process's or thread's `stat` line under `/proc` (Linux): its name, its parent, and the CPU time it
//! and its waited-for children used. The one reader of that line's layout; elsewhere there is no file to
//! read and every reading is None.

use std::path::Path;
use std::time::Duration;

/// What cargo-pgtest reads of a `stat` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// The command or thread name (`comm`), at most 15 bytes.
    pub(crate) name: String,
    pub(crate) parent: u32,
    /// User + system time.
    pub(crate) cpu: Duration,
    /// User + system time of its children that ended and were waited for.
    pub(crate) children_cpu: Duration,
}

impl ProcStat {
    /// Reads `/proc/<pid>/stat`, or a thread's `/proc/<pid>/task/<tid>/stat`; None if it is gone (or
    /// there is no such file on this system).
    pub(crate) fn read(path: &Path) -> Option<ProcStat> {
        ProcStat::parse(&std::fs::read_to_string(path).ok()?)
    }

    pub(crate) fn parse(line: &str) -> Option<ProcStat> {
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so fields are counted after the
        // last ')'. ppid is the 4th field; utime, stime, cutime and cstime are the 14th to 17th.
        let (open, close) = (line.find('(')?, line.rfind(')')?);
        let fields: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
        let ticks = |index: usize| fields.get(index)?.parse::<u64>().ok();
        Some(ProcStat {
            name: line.get(open + 1..close)?.to_owned(),
            parent: fields.get(1)?.parse().ok()?,
            cpu: from_ticks(ticks(11)? + ticks(12)?),
            children_cpu: from_ticks(ticks(13)? + ticks(14)?),
        })
    }
}

/// Clock ticks (USER_HZ) as a duration.
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
    fn the_fields_are_read_after_the_last_parenthesis_of_the_name() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 20 10 20 0 1 0 100 0 0";
        let stat = ProcStat::parse(line).unwrap();
        assert_eq!(stat.name, "a (b) c");
        assert_eq!(stat.parent, 1);
        assert_eq!(stat.cpu, from_ticks(150 + 50));
        assert_eq!(stat.children_cpu, from_ticks(20 + 10));
        assert_eq!(ProcStat::parse("42 (x) S 1 2"), None, "cut short");
    }
}
