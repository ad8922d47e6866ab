//! The databases `#[sqlx::test]`s leave behind. sqlx drops a test's database only when the test passes,
//! and records each database it makes, with the test's path, in `_sqlx_test.databases` of the database
//! it makes them from (one per package here). After a batch, the databases of its tests that failed for
//! good are kept like any failed test's, within the run's `--keep-failed` cap; the others (over the cap,
//! or of tests stopped before they failed) are dropped, as a per-test database would be.

use sqlx::{Connection, PgConnection};

use super::dispatch::Dispatcher;
use super::selection::TestCase;
use crate::cluster::Endpoint;
use crate::template::TestDatabases;

/// What a batch needs to settle the databases its tests left.
pub(crate) struct SqlxLeftovers<'a> {
    /// The server itself (not the gateway): where sqlx's bookkeeping is read.
    pub(crate) endpoint: &'a Endpoint,
    /// The database sqlx made the tests' databases from.
    pub(crate) source: &'a str,
    pub(crate) databases: &'a TestDatabases,
}

impl SqlxLeftovers<'_> {
    /// Keeps or drops every database sqlx left for `cases`, and forgets them in sqlx's bookkeeping so the
    /// next binary of the package does not see them again. Nothing to read (no test got that far, or the
    /// server is gone) leaves nothing to do.
    pub(crate) async fn settle(&self, cases: &[TestCase], dispatch: &Dispatcher) {
        let Ok(mut connection) =
            PgConnection::connect_with(&self.endpoint.connect_options(self.source)).await
        else {
            return;
        };
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT db_name, test_path FROM _sqlx_test.databases ORDER BY created_at, db_name",
        )
        .fetch_all(&mut connection)
        .await
        .unwrap_or_default();
        let mut settled = Vec::new();
        for (database, test_path) in rows {
            let Some(case) = case_of(&test_path, cases) else {
                continue;
            };
            let failed = dispatch.has_failed(&case.id());
            self.databases
                .keep_or_drop(case.id(), &database, failed)
                .await;
            settled.push(database);
        }
        let _ = sqlx::query("DELETE FROM _sqlx_test.databases WHERE db_name = ANY($1)")
            .bind(&settled)
            .execute(&mut connection)
            .await;
        let _ = connection.close().await;
    }
}

/// The case whose database sqlx recorded under `test_path`: sqlx records `module_path!()::function`, and
/// libtest names the test by that path without its crate.
fn case_of<'a>(test_path: &str, cases: &'a [TestCase]) -> Option<&'a TestCase> {
    let (_crate, name) = test_path.split_once("::")?;
    cases.iter().find(|case| case.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_recorded_test_path_is_the_crate_and_libtest_name() {
        let binary = Arc::new(crate::cargo::TestBinary {
            id: "app::it".into(),
            package: "app".into(),
            path: "target/debug/deps/it-0".into(),
            cwd: ".".into(),
            env: Vec::new(),
        });
        let case = |name: &str| TestCase {
            binary: Arc::clone(&binary),
            name: name.to_owned(),
            ignored: false,
        };
        let cases = [case("fails"), case("users::fails")];
        let found = |path| case_of(path, &cases).map(|case| case.name.as_str());
        assert_eq!(found("it::fails"), Some("fails"));
        assert_eq!(found("it::users::fails"), Some("users::fails"));
        assert_eq!(found("other::fails_too"), None);
        assert_eq!(found("fails"), None, "no crate: not a path sqlx records");
    }
}
