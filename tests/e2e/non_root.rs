//! The non-root path: run by an ordinary user, cargo-pgtest runs initdb and the server as that same user.
//! The whole tool needs cargo, which another account cannot reach on machines where it lives under
//! /root, so this drives the cluster stage through the library: boot (initdb, start), a query, shutdown,
//! and nothing left. Under root the test re-runs itself as `nobody`; otherwise it is already non-root.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use crate::support;
use cargo_pgtest::cluster::binaries::{self, SearchPlaces};
use cargo_pgtest::cluster::{privileges, storage, Cluster, ClusterSpec};
use cargo_pgtest::config::PostgresChoice;
use sqlx::Connection;

const CHILD: &str = "PGTEST_NON_ROOT_CHILD_DIR";

fn an_unprivileged_user_boots_queries_and_removes_a_cluster() {
    if let Some(dir) = std::env::var_os(CHILD) {
        return boot_query_and_shut_down(PathBuf::from(dir));
    }
    let found = binaries::discover(&PostgresChoice::Newest, &SearchPlaces::from_env());
    if let Err(error) = &found {
        support::skip(&format!("PostgreSQL is missing: {error}"));
        return;
    }
    let shm = std::path::Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    if !nix::unistd::Uid::effective().is_root() {
        return boot_query_and_shut_down(parent.path().to_owned());
    }

    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a `nobody` account");
    std::os::unix::fs::chown(
        parent.path(),
        Some(nobody.uid.as_raw()),
        Some(nobody.gid.as_raw()),
    )
    .unwrap();
    // This test executable, where `nobody` can run it.
    let exe_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        exe_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let exe = exe_dir.path().join("e2e");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let output = Command::new(&exe)
        .args([
            "--exact",
            "non_root::an_unprivileged_user_boots_queries_and_removes_a_cluster",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env(CHILD, parent.path())
        .current_dir("/")
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "as nobody:\n{text}");
    assert!(text.contains("1 passed"), "the child ran the test:\n{text}");
    let left: Vec<_> = std::fs::read_dir(parent.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The child's part (or the whole test, when not root).
fn boot_query_and_shut_down(parent: PathBuf) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let binaries =
            binaries::discover(&PostgresChoice::Newest, &SearchPlaces::from_env()).unwrap();
        let server_user = privileges::server_user().unwrap();
        assert!(
            !server_user.is_other_account,
            "not root: the server runs as us"
        );
        assert_eq!(server_user.uid, nix::unistd::Uid::effective().as_raw());
        let placement = storage::choose(true, Some(parent.clone()), false);
        let spec = ClusterSpec {
            binaries: &binaries,
            placement: &placement,
            server_user: &server_user,
            settings: &[],
            jobs: 1,
        };
        let cluster = Cluster::boot(&spec, None)
            .await
            .expect("the cluster boots as an ordinary user");
        let mut connection =
            sqlx::PgConnection::connect_with(&cluster.endpoint().connect_options("postgres"))
                .await
                .unwrap();
        let owner: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut connection)
            .await
            .unwrap();
        assert_eq!(owner, "postgres");
        connection.close().await.unwrap();
        let (_, problems) = cluster.shutdown().await;
        assert!(problems.is_empty(), "{problems:?}");
    });
    let left: Vec<_> = std::fs::read_dir(&parent).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

crate::tests! {
    an_unprivileged_user_boots_queries_and_removes_a_cluster,
}
