//! Restarts keep every key; a wrong or missing master key stops the start.

use asapd::crypto::MasterKey;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::fresh_database_url;
use crate::process::{asapd, init_admin, Server};

async fn pem(server: &Server, kid: &str) -> (StatusCode, String) {
    let res = reqwest::get(server.url(&format!("/v1/keys/{kid}")))
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

#[tokio::test]
async fn same_master_key_keeps_keys_wrong_one_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = MasterKey::generate_base64();
    let secret = init_admin(dir.path(), &db, &key);
    let client = reqwest::Client::new();

    let server = Server::start(dir.path(), &db, &key).await;
    let mut kids = Vec::new();
    for (name, alg) in [("svc-ec", "ES256"), ("svc-rsa", "RS256")] {
        let res = client
            .post(server.url("/v1/admin/callers"))
            .basic_auth("admin", Some(&secret))
            .json(&json!({"name": name, "algorithm": alg}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        kids.push(body["kid"].as_str().unwrap().to_owned());
    }
    let mut before = Vec::new();
    for kid in &kids {
        before.push(pem(&server, kid).await);
    }
    server.stop();

    // Same key: every key is still served, unchanged, and the ring (which
    // decrypts every active private key at start) loaded.
    let server = Server::start(dir.path(), &db, &key).await;
    for (kid, expected) in kids.iter().zip(&before) {
        assert_eq!(&pem(&server, kid).await, expected);
    }
    let res = client
        .post(server.url("/v1/admin/callers/svc-rsa/keys/rotate"))
        .basic_auth("admin", Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    server.stop();

    // Wrong key: refuses to start, and says why.
    let wrong = MasterKey::generate_base64();
    let out = asapd(
        &["serve", "--listen", "127.0.0.1:0"],
        dir.path(),
        &db,
        Some(&wrong),
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("master key does not match"), "{stderr}");
}

#[tokio::test]
async fn missing_or_malformed_master_key_stops_the_start_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("x.db").display());
    let out = asapd(&["serve", "--listen", "127.0.0.1:0"], dir.path(), &db, None)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no master key") && stderr.contains("ASAPD_MASTER_KEY="),
        "{stderr}"
    );

    let out = asapd(
        &["serve", "--listen", "127.0.0.1:0"],
        dir.path(),
        &db,
        Some("c2hvcnQ="),
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("32 bytes"), "{stderr}");
}

#[tokio::test]
async fn bad_configuration_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("x.db").display());
    let key = MasterKey::generate_base64();
    let out = asapd(&["serve"], dir.path(), &db, Some(&key))
        .env("ASAPD_KEYS__DEFAULT_ALGORITHM", "HS256")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.to_lowercase().contains("default_algorithm") && stderr.contains("HS256"),
        "{stderr}"
    );

    let out = asapd(
        &["serve", "--listen", "not-an-address"],
        dir.path(),
        &db,
        Some(&key),
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));

    let out = asapd(&["migrate"], dir.path(), &db, Some(&key))
        .env("ASAPD_LISTN", "x")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ASAPD_LISTN") && stderr.contains("ASAPD_LISTEN"),
        "{stderr}"
    );
}

#[tokio::test]
async fn init_refuses_when_an_admin_exists() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = MasterKey::generate_base64();
    init_admin(dir.path(), &db, &key);
    let out = asapd(&["init", "--json"], dir.path(), &db, Some(&key))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no second secret printed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}
