//! The migrated-cluster cache, end to end: the key ([`key`]), the pack format ([`pack`]), the store under
//! the target directory ([`store`]), the manifest beside each entry ([`manifest`]), taking a snapshot of
//! the cluster ([`take`]), and the one place where a run's use of the cache is decided ([`policy`]).

pub(crate) mod capture;
pub(crate) mod key;
pub(crate) mod manifest;
pub(crate) mod pack;
pub(crate) mod policy;
pub(crate) mod store;

pub(crate) use capture::CacheError;
pub use pack::Pack;
pub(crate) use policy::{Cache, Templates};
pub use store::{Entry, Store};
