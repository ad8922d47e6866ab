//! Everything `#[sqlx::test]`-specific, in one place: reading the sources for which tests are sqlx's
//! ([`scan`]), whether `template1` may carry the migrations ([`template1`]), and the gateway those tests
//! reach the cluster through ([`gateway`]). The rest of cargo-pgtest treats such tests as batches that
//! isolate themselves.

pub(crate) mod gateway;
pub(crate) mod scan;
pub(crate) mod template1;

pub(crate) use template1::sqlx_test_spec;
