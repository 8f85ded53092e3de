//! A database that answers but cannot store (disk full) answers 503 on
//! every write path, admin changes included, and takes the replica out of
//! readiness until space is back. Exercised on SQLite on a small tmpfs, the
//! one place a test can fill a disk for real. Mounting needs root: the
//! tests are ignored unless included (`make test-sqlite` does, as root).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::Connection;

use crate::helpers::{assert_problem, spawn_app_with, TestApp};
use crate::token_support::Caller;

/// A 4 MiB tmpfs, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Fails the test where this process may not mount (not root): an
    /// included ignored test must not pass having checked nothing.
    fn mount() -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(mounted, "mounting a tmpfs failed: this test needs root");
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full; returns it.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while file.write_all(&chunk).is_ok() {}
        // Whatever partial chunk fit is in; flush what is buffered.
        let _ = file.flush();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// An app whose SQLite database sits on a small disk that is now full,
/// with a caller granted `svc-b` made before. Each check gets a disk of
/// its own: after a failed write SQLite reuses the WAL space that write had
/// taken, so only the first write after filling the disk is sure to find
/// it full.
async fn app_on_a_full_disk() -> (SmallDisk, TestApp, Caller, PathBuf) {
    let disk = SmallDisk::mount();
    let url = format!("sqlite://{}", disk.path().join("asapd.db").display());
    let app = spawn_app_with(|s| s.database_url = Some(url.clone())).await;
    let caller = app.caller_granted("svc-a", &["svc-b"]).await;
    assert_eq!(status_of(&app, "/readyz").await, 200);
    // An empty WAL file: the next write must grow it, so it meets the
    // full disk (a WAL restarted after a checkpoint would reuse its space).
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let filler = disk.fill();
    (disk, app, caller, filler)
}

async fn create_group(app: &TestApp) -> reqwest::Response {
    app.admin_json(
        Method::POST,
        "/v1/admin/groups",
        json!({"name": "g2", "audiences": ["x"]}),
    )
    .await
}

async fn status_of(app: &TestApp, path: &str) -> u16 {
    app.request(Method::GET, path)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
#[ignore = "needs root: mounts a tmpfs"]
async fn admin_writes_on_a_full_disk_answer_503_and_change_nothing() {
    let (_disk, app, _, _) = app_on_a_full_disk().await;
    let res = create_group(&app).await;
    assert_problem(res, StatusCode::SERVICE_UNAVAILABLE).await;
    let res = app.admin_get("/v1/admin/groups/g2").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let (_disk, app, _, _) = app_on_a_full_disk().await;
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/svc-a",
            json!({"cidrs": ["10.0.0.0/8"]}),
        )
        .await;
    assert_problem(res, StatusCode::SERVICE_UNAVAILABLE).await;
    let caller_now = app.admin_get_json("/v1/admin/callers/svc-a").await;
    assert_eq!(caller_now["cidrs"], json!([]));
}

#[tokio::test]
#[ignore = "needs root: mounts a tmpfs"]
async fn tokens_on_a_full_disk_answer_503() {
    let (_disk, app, caller, _) = app_on_a_full_disk().await;
    let res = app
        .token_request(&caller, json!({"audience": "svc-b"}))
        .await;
    assert_problem(res, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
#[ignore = "needs root: mounts a tmpfs"]
async fn readiness_follows_the_disk() {
    let (_disk, app, caller, filler) = app_on_a_full_disk().await;
    let res = app.request(Method::GET, "/readyz").send().await.unwrap();
    assert_problem(res, StatusCode::SERVICE_UNAVAILABLE).await;
    // Alive all the same: restarting would not help.
    assert_eq!(
        app.request(Method::GET, "/healthz")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    std::fs::remove_file(filler).unwrap();
    assert_eq!(status_of(&app, "/readyz").await, 200);
    let res = create_group(&app).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    app.token(&caller, "svc-b").await;
}
