//! Scheduled rotation: prepublish, activate, retire, expire.

use asapd::clock::Clock;
use asapd::jobs::key_rotation;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with_clock, TestApp};

async fn state_of(app: &TestApp, kid: &str) -> String {
    let key: Value = app
        .admin_get(&format!("/v1/admin/keys/{kid}"))
        .await
        .json()
        .await
        .unwrap();
    key["state"].as_str().unwrap().to_owned()
}

async fn published(app: &TestApp, kid: &str) -> bool {
    app.request(Method::GET, &format!("/v1/keys/{kid}"))
        .send()
        .await
        .unwrap()
        .status()
        == StatusCode::OK
}

#[tokio::test]
async fn keys_rotate_on_schedule_with_prepublication_and_retirement() {
    let app = spawn_app_with_clock(Clock::manual(1_900_000_000), |s| {
        s.keys.cache_max_age_secs = 300;
    })
    .await;
    let created = app
        .create_caller(json!({"name": "svc-a", "rotation_period_secs": 3600}))
        .await;
    let first = created["kid"].as_str().unwrap().to_owned();
    let run = || key_rotation::run_once(&app.state);

    // Not due yet.
    app.state.clock.advance(3000);
    assert_eq!(run().await.unwrap().unwrap(), Default::default());

    // Within the prepublication window: the next key is published, pending.
    app.state.clock.advance(301);
    let report = run().await.unwrap().unwrap();
    assert_eq!(report.prepublished.len(), 1);
    let next = report.prepublished[0].clone();
    assert_eq!(state_of(&app, &next).await, "pending");
    assert!(
        published(&app, &next).await,
        "caches can fetch it before it signs"
    );
    assert_eq!(state_of(&app, &first).await, "active");

    // Period over and prepublished long enough: it becomes active.
    app.state.clock.advance(300);
    let report = run().await.unwrap().unwrap();
    assert_eq!(report.activated, vec![next.clone()]);
    assert_eq!(state_of(&app, &next).await, "active");
    assert_eq!(state_of(&app, &first).await, "retired");
    assert!(
        published(&app, &first).await,
        "tokens it signed still verify"
    );
    let caller: Value = app
        .admin_get("/v1/admin/callers/svc-a")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(caller["active_kid"], next.as_str());

    // Once every token it signed has expired, the retired key expires:
    // max lifetime + leeway + one key ring refresh (other replicas).
    let refresh = app.state.settings.keys.refresh_interval_secs as i64;
    app.state.clock.advance(3600 + 60 + refresh - 1);
    let report = run().await.unwrap().unwrap();
    assert!(
        report.expired.is_empty(),
        "not before max lifetime + leeway + refresh"
    );
    app.state.clock.advance(1);
    let report = run().await.unwrap().unwrap();
    assert_eq!(report.expired, vec![first.clone()]);
    assert_eq!(state_of(&app, &first).await, "expired");
    assert!(!published(&app, &first).await);

    let actions: Vec<String> = app
        .audit("actor=system")
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for a in ["key.created", "key.rotated", "key.expired"] {
        assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
    }
}
