//! The stages of a run, one module each, in the order data flows (lib.rs calls them in that order):
//! project → config → cluster → snapshot → template → build → run → report. Each takes the run's
//! [`context::Run`] and the typed results of the stages before it.

pub(crate) mod build;
pub(crate) mod cache;
pub(crate) mod cluster;
pub(crate) mod config;
pub(crate) mod context;
pub(crate) mod error;
pub(crate) mod history;
pub(crate) mod inspect;
pub(crate) mod list;
pub(crate) mod memory;
pub(crate) mod nextest;
pub(crate) mod project;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod server;
pub(crate) mod template;
