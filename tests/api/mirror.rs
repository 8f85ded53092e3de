//! `asapd mirror --to DIR [--watch]`: the key repository as static files,
//! byte for byte what `serve` answers. Runs the real binary on the test
//! app's database (SQLite, or PostgreSQL with `ASAPD_TEST_POSTGRES_URL`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};
use crate::process::asapd_bare;

/// How long `--watch` may take to show a change. It follows changes within
/// a second (notifications on PostgreSQL, a look a second on SQLite); the
/// margin is for a loaded test machine, not for the mirror.
const FOLLOW_DEADLINE: Duration = Duration::from_secs(5);
/// The first pass of a debug binary that has just started.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// `asapd mirror` on `app`'s database, without a master key.
fn mirror_command(app: &TestApp, dir: &Path, extra: &[&str]) -> Command {
    let mut args = vec![
        "mirror",
        "--to",
        dir.to_str().unwrap(),
        "--database-url",
        &app.database_url,
    ];
    args.extend_from_slice(extra);
    asapd_bare(&args)
}

async fn body(app: &TestApp, path: &str) -> (StatusCode, Vec<u8>) {
    let res = app.request(Method::GET, path).send().await.unwrap();
    (res.status(), res.bytes().await.unwrap().to_vec())
}

/// Every published key's file holds what `/v1/keys/<kid>` serves, and the
/// JWKS file what `/.well-known/jwks.json` serves.
async fn assert_mirrors(app: &TestApp, dir: &Path) {
    let (status, jwks) = body(app, "/.well-known/jwks.json").await;
    assert_eq!(status, StatusCode::OK);
    let mirrored = std::fs::read(dir.join(".well-known/jwks.json")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&mirrored),
        String::from_utf8_lossy(&jwks)
    );
    let jwks: Value = serde_json::from_slice(&jwks).unwrap();
    for key in jwks["keys"].as_array().unwrap() {
        let kid = key["kid"].as_str().unwrap();
        let (_, pem) = body(app, &format!("/v1/keys/{kid}")).await;
        assert_eq!(std::fs::read(dir.join(kid)).unwrap(), pem, "{kid}");
    }
}

async fn rotate(app: &TestApp, caller: &str) -> String {
    let res = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/callers/{caller}/keys/rotate"),
            json!({}),
        )
        .await;
    let status = res.status();
    let key: Value = res.json().await.unwrap();
    assert!(status.is_success(), "rotate {caller}: {key}");
    key["kid"].as_str().unwrap().to_owned()
}

async fn revoke(app: &TestApp, kid: &str) {
    let res = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/keys/{kid}/revoke"),
            json!({}),
        )
        .await;
    assert!(res.status().is_success(), "revoke {kid}: {}", res.status());
}

#[tokio::test]
async fn mirror_writes_every_published_key_and_the_jwks_and_removes_the_rest() {
    let app = spawn_app().await;
    let a = app.caller("svc-a", json!({"algorithm": "ES256"})).await;
    app.caller("svc-b", json!({"algorithm": "ES384"})).await;
    let a2 = rotate(&app, "svc-a").await; // a.kid is retired, still published
    let b = app.caller("svc-c", json!({"algorithm": "ES256"})).await;
    revoke(&app, &b.kid).await;

    let dir = tempfile::tempdir().unwrap();
    // A key file from an earlier pass whose key is gone, and a file of the
    // web server's own.
    std::fs::create_dir_all(dir.path().join("svc-z")).unwrap();
    std::fs::write(dir.path().join("svc-z/old"), "stale").unwrap();
    std::fs::write(dir.path().join("index.html"), "mine").unwrap();

    let mut cmd = mirror_command(&app, dir.path(), &[]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "mirror: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_mirrors(&app, dir.path()).await;
    assert!(dir.path().join(&a.kid).is_file(), "retired: published");
    assert!(dir.path().join(&a2).is_file());
    assert!(!dir.path().join(&b.kid).exists(), "revoked: not mirrored");
    assert!(!dir.path().join("svc-z").exists(), "unpublished: removed");
    assert!(dir.path().join("index.html").exists(), "not a kid: kept");
}

#[tokio::test]
async fn mirror_refuses_a_database_that_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}/none.db", dir.path().display());
    let out = asapd_bare(&[
        "mirror",
        "--to",
        dir.path().join("out").to_str().unwrap(),
        "--database-url",
        &missing,
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        !dir.path().join("none.db").exists(),
        "no empty database made"
    );
}

/// Kills the `--watch` process if the test fails before it stops it.
struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `done` until it holds or `deadline` passes.
async fn within(deadline: Duration, what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < deadline, "{what} within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn jwks_kids(dir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read(dir.join(".well-known/jwks.json")) else {
        return Vec::new();
    };
    let jwks: Value = serde_json::from_slice(&text).unwrap_or_default();
    jwks["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn mirror_watch_follows_a_rotation_and_a_revocation() {
    let app = spawn_app().await;
    let a = app.caller("svc-a", json!({"algorithm": "ES256"})).await;
    let dir = tempfile::tempdir().unwrap();
    let child = mirror_command(&app, dir.path(), &["--watch"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watcher = Watcher(child);
    let path = dir.path().to_owned();
    within(START_DEADLINE, "the first pass", || {
        path.join(&a.kid).is_file()
    })
    .await;

    let next = rotate(&app, "svc-a").await;
    within(FOLLOW_DEADLINE, "the rotated-in key mirrored", || {
        path.join(&next).is_file() && jwks_kids(&path).contains(&next)
    })
    .await;
    revoke(&app, &a.kid).await;
    within(FOLLOW_DEADLINE, "the revoked key removed", || {
        !path.join(&a.kid).exists() && !jwks_kids(&path).contains(&a.kid)
    })
    .await;
    assert_mirrors(&app, &path).await;

    // SIGTERM stops it cleanly.
    let pid = watcher.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = watcher.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < START_DEADLINE,
            "mirror --watch ignored SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "mirror --watch exit: {status:?}");
}
