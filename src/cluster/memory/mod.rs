//! The cluster's memory, the whole of it: its processes' proportional set size ([`pss`]) and, on tmpfs,
//! its data directory, which is RAM too ([`data_dir`]), sampled together while the cluster runs
//! ([`watch`]), with a warning before the data directory fills its tmpfs.

pub(crate) mod data_dir;
pub(crate) mod pss;
pub(crate) mod watch;
