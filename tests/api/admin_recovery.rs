//! `asapd admin reset-secret`: offline recovery when no admin can sign in.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::fresh_database_url;
use crate::process::{asapd, init_admin, Server};

#[tokio::test]
async fn reset_secret_replaces_every_secret_and_is_audited_as_system() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path()).await;
    let master_key = asapd::crypto::MasterKey::generate_base64();
    let lost = init_admin(dir.path(), &database_url, &master_key);
    let http = crate::helpers::http();
    let running = Server::start(dir.path(), &database_url, &master_key).await;
    let callers_on = |server: &Server, secret: &str| {
        http.get(server.url("/v1/admin/callers"))
            .basic_auth("admin", Some(secret))
            .send()
    };
    // The running server has the admin's credentials cached now.
    assert_eq!(
        callers_on(&running, &lost).await.unwrap().status(),
        StatusCode::OK
    );

    let out = asapd(
        &["admin", "reset-secret", "admin", "--json"],
        dir.path(),
        &database_url,
        Some(&master_key),
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let creds: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(creds["client_id"], "admin");
    let fresh = creds["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(fresh, lost);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&fresh));

    // A server that was running accepts the new secret at once.
    assert_eq!(
        callers_on(&running, &fresh).await.unwrap().status(),
        StatusCode::OK
    );
    running.stop();
    // The old one is gone from the database.
    let server = Server::start(dir.path(), &database_url, &master_key).await;
    assert_eq!(
        callers_on(&server, &lost).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        callers_on(&server, &fresh).await.unwrap().status(),
        StatusCode::OK
    );

    let events: Value = http
        .get(server.url("/v1/admin/audit?action=secret.reset"))
        .basic_auth("admin", Some(&fresh))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor"], "system");
    assert_eq!(events[0]["target"], "caller:admin");
    assert_eq!(
        events[0]["detail"]["revoked_secret_ids"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let record = events[0].to_string();
    assert!(!record.contains(&fresh) && !record.contains(&lost));
}

#[tokio::test]
async fn reset_secret_of_an_unknown_caller_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path()).await;
    let master_key = asapd::crypto::MasterKey::generate_base64();
    init_admin(dir.path(), &database_url, &master_key);
    let out = asapd(
        &["admin", "reset-secret", "nobody"],
        dir.path(),
        &database_url,
        Some(&master_key),
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no caller named nobody"), "{stderr}");
    assert!(out.stdout.is_empty());

    // Without the master key it refuses to start at all.
    let out = asapd(
        &["admin", "reset-secret", "admin"],
        dir.path(),
        &database_url,
        None,
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}
