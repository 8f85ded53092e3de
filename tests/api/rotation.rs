//! Scheduled rotation: prepublish, activate, retire, expire.

use asapd::clock::Clock;
use asapd::jobs::key_rotation;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with_clock, spawn_replica, TestApp};

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

/// Two replicas on one database and one clock run their rotation passes at
/// the same moment: the next key is prepublished once and activated once.
#[tokio::test]
async fn two_replicas_on_one_clock_rotate_once() {
    let fast_caches = |s: &mut asapd::config::Settings| s.keys.cache_max_age_secs = 300;
    let a = spawn_app_with_clock(Clock::manual(1_900_000_000), fast_caches).await;
    let b = spawn_replica(&a, fast_caches).await;
    for name in ["svc-a", "svc-b", "svc-c"] {
        a.create_caller(json!({"name": name, "rotation_period_secs": 3600}))
            .await;
    }
    let both = || async {
        let (ra, rb) = tokio::join!(
            key_rotation::run_once(&a.state),
            key_rotation::run_once(&b.state)
        );
        [ra.unwrap(), rb.unwrap()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
    };

    a.state.clock.advance(3301);
    let prepublished: usize = both().await.iter().map(|r| r.prepublished.len()).sum();
    assert_eq!(prepublished, 3, "one pending key per caller");
    a.state.clock.advance(300);
    let activated: usize = both().await.iter().map(|r| r.activated.len()).sum();
    assert_eq!(activated, 3, "one activation per caller");
    // A later pass of either finds nothing left to do.
    assert!(both()
        .await
        .iter()
        .all(|r| r.activated.is_empty() && r.prepublished.is_empty()));

    for name in ["svc-a", "svc-b", "svc-c"] {
        let keys = a
            .admin_get_json(&format!("/v1/admin/callers/{name}/keys"))
            .await;
        let states: Vec<&str> = keys
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["state"].as_str().unwrap())
            .collect();
        let mut sorted = states.clone();
        sorted.sort();
        assert_eq!(sorted, ["active", "retired"], "{name}: {states:?}");
    }
    assert_eq!(a.audit("action=key.rotated").await.len(), 3);
    let scheduled = a.audit("action=key.created&actor=system").await;
    let scheduled = scheduled
        .iter()
        .filter(|e| e["target"].as_str().unwrap().starts_with("key:svc-"));
    assert_eq!(scheduled.count(), 3);
}

/// Whatever a crash leaves half done, the database itself refuses a
/// second active key for a caller: a rotation is one transaction, and the
/// partial unique index holds between statements too.
#[tokio::test]
async fn the_database_refuses_a_second_active_key() {
    let app = spawn_app_with_clock(Clock::manual(1_900_000_000), |_| {}).await;
    app.create_caller(json!({"name": "svc-a"})).await;
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/callers/svc-a/keys",
            json!({"activate": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let pending = res.json::<Value>().await.unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    // What a replica killed between "activate the new key" and "retire the
    // old one" would have needed the database to accept.
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&app.database_url)
        .await
        .unwrap();
    let refused = sqlx::query("UPDATE keys SET state = 'active' WHERE kid = $1")
        .bind(&pending)
        .execute(&mut conn)
        .await;
    let err = refused.expect_err("a second active key was accepted");
    let unique = err
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation());
    assert!(unique, "{err}");
    assert_eq!(state_of(&app, &pending).await, "pending");
}
