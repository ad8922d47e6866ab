//! Operating-system specifics, one small module per concern, each choosing its Linux or macOS way with
//! `cfg(target_os)` inside so that callers stay portable. What can be checked without the system (command
//! lines, parsed output) is a pure function unit-tested on every platform.

pub(crate) mod exec_shim;
pub(crate) mod parent_death;
pub(crate) mod peer;
pub(crate) mod proc_stat;
pub(crate) mod process;
pub(crate) mod ram_disk;

/// How many CPUs this process may run on (at least one): the default `--jobs`, the runtime's workers, the
/// gateway's cap on relay threads.
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}
