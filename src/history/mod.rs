//! Regression tracking for the user's own tests: a bounded history of each passing test's time under the
//! target directory ([`store`]), and the rule that flags a test far slower than its own recent past
//! ([`rule`]). The run stage feeds it the passing tests and sends what it flags as events.

pub(crate) mod rule;
pub(crate) mod store;

pub(crate) use store::Store;
