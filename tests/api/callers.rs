//! Caller CRUD.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn create_returns_the_secret_once_and_an_active_key() {
    let app = spawn_app().await;
    app.create_group("billing-readers", &["billing"]).await;
    let created = app
        .create_caller(json!({
            "name": "svc-a",
            "groups": ["billing-readers"],
            "cidrs": ["10.0.0.0/8", "192.168.1.7"],
            "rate_limit": {"per_second": 50, "burst": 100},
        }))
        .await;
    assert_eq!(created["name"], "svc-a");
    assert_eq!(created["client_id"], "svc-a");
    assert_eq!(created["algorithm"], "ES256", "server default algorithm");
    assert_eq!(created["cidrs"], json!(["10.0.0.0/8", "192.168.1.7/32"]));
    assert_eq!(
        created["rate_limit"],
        json!({"per_second": 50, "burst": 100})
    );
    assert_eq!(created["rotation_period_secs"], 30 * 86400);
    let secret = created["client_secret"].as_str().unwrap();
    assert!(secret.starts_with("asapd_") && secret.len() >= 49);
    let kid = created["kid"].as_str().unwrap();
    assert!(kid.starts_with("svc-a/"));
    assert_eq!(created["active_kid"], kid);

    let fetched: Value = app
        .admin_get("/v1/admin/callers/svc-a")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        fetched.get("client_secret").is_none(),
        "secret shown only once"
    );
    assert_eq!(fetched["groups"], json!(["billing-readers"]));
    assert_eq!(fetched["active_kid"], kid);

    let keys: Value = app
        .admin_get("/v1/admin/callers/svc-a/keys")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["state"], "active");
    assert_eq!(keys[0]["kid"], kid);
}

#[tokio::test]
async fn list_update_and_delete() {
    let app = spawn_app().await;
    app.create_group("g1", &["a"]).await;
    app.create_group("g2", &["b"]).await;
    let created = app
        .create_caller(json!({"name": "svc-a", "groups": ["g1"], "algorithm": "PS256"}))
        .await;
    let kid = created["kid"].as_str().unwrap().to_owned();

    let list: Value = app
        .admin_get("/v1/admin/callers")
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "svc-a"]);

    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/svc-a",
            json!({"groups": ["g2"], "algorithm": "ES384", "enabled": false,
                   "rotation_period_secs": 86400, "cidrs": ["10.1.0.0/16"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["groups"], json!(["g2"]));
    assert_eq!(updated["algorithm"], "ES384");
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["rotation_period_secs"], 86400);
    assert_eq!(
        updated["active_kid"],
        kid.as_str(),
        "algorithm change waits for the next key"
    );

    // rate_limit: set, then null removes the override.
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/svc-a",
            json!({"rate_limit": {"per_second": 5, "burst": 5}}),
        )
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["rate_limit"]["burst"], 5);
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/svc-a",
            json!({"rate_limit": null}),
        )
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["rate_limit"],
        Value::Null
    );

    let res = app
        .admin(Method::DELETE, "/v1/admin/callers/svc-a")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.admin_get("/v1/admin/callers/svc-a").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let res = app
        .request(Method::GET, &format!("/v1/keys/{kid}"))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::NOT_FOUND).await;
    let res = app
        .admin(Method::DELETE, "/v1/admin/callers/svc-a")
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn duplicate_names_conflict() {
    let app = spawn_app().await;
    app.create_caller(json!({"name": "svc-a"})).await;
    let res = app
        .admin_json(Method::POST, "/v1/admin/callers", json!({"name": "svc-a"}))
        .await;
    let body = assert_problem(res, StatusCode::CONFLICT).await;
    assert!(body["detail"].as_str().unwrap().contains("svc-a"));
}

#[tokio::test]
async fn unknown_group_is_named() {
    let app = spawn_app().await;
    app.create_group("g1", &["a"]).await;
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/callers",
            json!({"name": "svc-a", "groups": ["g1", "nope"]}),
        )
        .await;
    let body = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["field"], "groups[1]");
    assert!(body["detail"].as_str().unwrap().contains("nope"));
    assert_problem(
        app.admin_get("/v1/admin/callers/svc-a").await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn the_last_admin_cannot_lock_everyone_out() {
    let app = spawn_app().await;
    for (method, body) in [
        (Method::PATCH, Some(json!({"enabled": false}))),
        (Method::PATCH, Some(json!({"groups": []}))),
        (Method::DELETE, None),
    ] {
        let mut req = app.admin(method, "/v1/admin/callers/admin");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let problem = assert_problem(req.send().await.unwrap(), StatusCode::CONFLICT).await;
        assert!(problem["detail"]
            .as_str()
            .unwrap()
            .contains("last enabled admin"));
    }
    // With a second admin, the first may go.
    app.create_caller(json!({"name": "root2", "groups": ["admin"]}))
        .await;
    let res = app
        .admin(Method::DELETE, "/v1/admin/callers/admin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}
