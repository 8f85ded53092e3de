//! `asapd mirror --to DIR [--watch]`: the key repository as static files,
//! byte for byte what `serve` answers. Runs the real binary on the test
//! app's database (SQLite, or PostgreSQL with `ASAPD_TEST_POSTGRES_URL`).

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
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

/// One pass of `asapd mirror` (no `--watch`), run to its end.
async fn run_mirror(app: &TestApp, dir: &Path, extra: &[&str]) -> Output {
    let mut cmd = mirror_command(app, dir, extra);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "mirror: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let dir = tempfile::tempdir().unwrap();
    assert_ok(&run_mirror(&app, dir.path(), &[]).await);
    assert!(dir.path().join(&b.kid).is_file());

    revoke(&app, &b.kid).await;
    assert_ok(&run_mirror(&app, dir.path(), &[]).await);
    assert_mirrors(&app, dir.path()).await;
    assert!(dir.path().join(&a.kid).is_file(), "retired: published");
    assert!(dir.path().join(&a2).is_file());
    assert!(!dir.path().join(&b.kid).exists(), "revoked: removed");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(".asapd-mirror.json")).unwrap())
            .unwrap();
    let mut files: Vec<String> = jwks_kids(dir.path());
    files.push(".well-known/jwks.json".into());
    files.sort();
    assert_eq!(manifest["files"], json!(files), "exactly what it wrote");
}

/// Every file under `root`, by path, without following symlinks: a
/// symlink is recorded as `-> target`.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                files.insert(rel, format!("-> {}", target.display()));
            } else if meta.is_dir() {
                files.insert(rel, "dir".into());
                todo.push(path);
            } else {
                files.insert(
                    rel,
                    String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into(),
                );
            }
        }
    }
    files
}

/// A web root with a site of its own: files whose paths look like kids, a
/// nested folder, a symlink to a folder outside. None of it is the
/// mirror's, so all of it survives, as does everything outside.
#[tokio::test]
async fn mirror_leaves_a_web_root_it_did_not_write_alone() {
    let app = spawn_app().await;
    let a = app.caller("svc-a", json!({"algorithm": "ES256"})).await;
    let work = tempfile::tempdir().unwrap();
    let (www, outside) = (work.path().join("www"), work.path().join("outside"));
    for (path, body) in [
        ("www/index.html", "site"),
        ("www/assets/app.js", "x"),
        ("www/static/img/logo.png", "png"),
        ("www/svc-z/old", "someone's"),
        ("www/svc-a/notes", "mine, in a caller's folder"),
        ("outside/notes.txt", "y"),
        ("outside/svc-a/k0", "not a key"),
    ] {
        let path = work.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    symlink(&outside, www.join("backup")).unwrap();
    let (site, outside_before) = (snapshot(&www), snapshot(&outside));

    assert_ok(&run_mirror(&app, &www, &[]).await);
    let next = rotate(&app, "svc-a").await;
    revoke(&app, &a.kid).await;
    // A pass that removes a key walks the web root: it must still pass.
    assert_ok(&run_mirror(&app, &www, &[]).await);
    assert_mirrors(&app, &www).await;
    assert!(www.join(&next).is_file() && !www.join(&a.kid).exists());

    let after = snapshot(&www);
    for (path, before) in &site {
        assert_eq!(after.get(path), Some(before), "{path} survives as it was");
    }
    assert_eq!(snapshot(&outside), outside_before, "outside untouched");
}

/// A symlink at a caller's folder or at a key's path is refused, not
/// followed: nothing is written or removed through it, the other keys
/// are published, and the exit status and the metrics file say so.
#[tokio::test]
async fn mirror_never_follows_a_symlink_and_reports_what_it_refused() {
    let app = spawn_app().await;
    let a = app.caller("svc-a", json!({"algorithm": "ES256"})).await;
    let b = app.caller("svc-b", json!({"algorithm": "ES256"})).await;
    let c = app.caller("svc-c", json!({"algorithm": "ES256"})).await;
    let work = tempfile::tempdir().unwrap();
    let (www, outside) = (work.path().join("www"), work.path().join("outside"));
    std::fs::create_dir_all(www.join("svc-b")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("target"), "outside").unwrap();
    symlink(&outside, www.join("svc-a")).unwrap();
    symlink(outside.join("target"), www.join(&b.kid)).unwrap();
    let metrics = work.path().join("mirror.prom");
    let metrics_arg = metrics.to_str().unwrap();

    let out = run_mirror(&app, &www, &["--metrics-file", metrics_arg]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("svc-a/ is a symlink"), "{err}");
    assert!(err.contains(&b.kid), "{err}");
    let outside_files = snapshot(&outside);
    assert_eq!(
        outside_files.len(),
        1,
        "nothing written outside: {outside_files:?}"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("target")).unwrap(),
        "outside"
    );
    // One bad entry does not stop the others.
    assert!(www.join(&c.kid).is_file());
    assert_eq!(jwks_kids(&www).len(), app.jwks().await.len());
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("asapd_mirror_failed_entries 2"), "{text}");
    assert!(
        text.contains("asapd_mirror_passes_total{result=\"partial\"} 1"),
        "{text}"
    );

    // Once the way is clear, the next pass publishes them and exits 0.
    std::fs::remove_file(www.join("svc-a")).unwrap();
    std::fs::remove_file(www.join(&b.kid)).unwrap();
    assert_ok(&run_mirror(&app, &www, &["--metrics-file", metrics_arg]).await);
    assert!(www.join(&a.kid).is_file() && www.join(&b.kid).is_file());
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("asapd_mirror_failed_entries 0"), "{text}");
}

/// A file at a kid's path that the mirror did not write is an error, and
/// stays as it is.
#[tokio::test]
async fn mirror_does_not_overwrite_a_file_it_did_not_write() {
    let app = spawn_app().await;
    let a = app.caller("svc-a", json!({"algorithm": "ES256"})).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(&a.kid);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "someone else's").unwrap();

    let out = run_mirror(&app, dir.path(), &[]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("did not write"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's");
    assert!(
        jwks_kids(dir.path()).contains(&a.kid),
        "the JWKS still goes out"
    );
}

/// A pass cut short leaves a temporary file; the next pass removes it,
/// and only it.
#[tokio::test]
async fn mirror_cleans_up_its_stale_temporary_files() {
    let app = spawn_app().await;
    app.caller("svc-a", json!({"algorithm": "ES256"})).await;
    let dir = tempfile::tempdir().unwrap();
    assert_ok(&run_mirror(&app, dir.path(), &[]).await);
    let stale = dir.path().join(".well-known/.jwks.json.asapd-tmp");
    std::fs::write(&stale, "half a JWKS").unwrap();
    std::fs::write(dir.path().join(".well-known/.htaccess"), "mine").unwrap();

    assert_ok(&run_mirror(&app, dir.path(), &[]).await);
    assert!(!stale.exists(), "stale temporary file removed");
    assert!(dir.path().join(".well-known/.htaccess").exists());
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
    // A nested folder of the site's own must not stop the removals.
    std::fs::create_dir_all(dir.path().join("static/img/icons")).unwrap();
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
