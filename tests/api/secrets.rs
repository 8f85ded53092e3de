//! Caller secrets: add, list, revoke.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn add_list_revoke() {
    let app = spawn_app().await;
    let caller = app
        .create_caller(json!({"name": "ops", "groups": ["auditor"]}))
        .await;
    let first_id = caller["secret_id"].as_str().unwrap().to_owned();

    let res = app
        .admin(Method::POST, "/v1/admin/callers/ops/secrets")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let added: Value = res.json().await.unwrap();
    let second = added["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(second, caller["client_secret"].as_str().unwrap());

    let list: Value = app
        .admin_get("/v1/admin/callers/ops/secrets")
        .await
        .json()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for entry in list {
        let keys: Vec<_> = entry.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["created_at", "id"], "ids and times only");
    }
    assert!(list.iter().any(|e| e["id"] == first_id.as_str()));

    let auth = |secret: String| {
        app.request(Method::GET, "/v1/admin/groups")
            .basic_auth("ops", Some(secret))
            .send()
    };
    assert_eq!(auth(second.clone()).await.unwrap().status(), StatusCode::OK);
    let res = app
        .admin(
            Method::DELETE,
            &format!("/v1/admin/callers/ops/secrets/{first_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let old = caller["client_secret"].as_str().unwrap().to_owned();
    assert_problem(auth(old).await.unwrap(), StatusCode::UNAUTHORIZED).await;
    assert_eq!(auth(second).await.unwrap().status(), StatusCode::OK);

    let res = app
        .admin(
            Method::DELETE,
            &format!("/v1/admin/callers/ops/secrets/{first_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn secrets_of_unknown_callers_are_404() {
    let app = spawn_app().await;
    let res = app
        .admin(Method::POST, "/v1/admin/callers/ghost/secrets")
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::NOT_FOUND).await;
    assert_problem(
        app.admin_get("/v1/admin/callers/ghost/secrets").await,
        StatusCode::NOT_FOUND,
    )
    .await;
}
