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

/// The ids of `caller`'s secrets, as the admin sees them.
async fn secret_ids(app: &crate::helpers::TestApp, caller: &str) -> Vec<String> {
    let list = app
        .admin_get_json(&format!("/v1/admin/callers/{caller}/secrets"))
        .await;
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_last_admins_last_secret_cannot_be_revoked() {
    let app = spawn_app().await;
    let ids = secret_ids(&app, "admin").await;
    assert_eq!(ids.len(), 1);
    let path = format!("/v1/admin/callers/admin/secrets/{}", ids[0]);
    let res = app.admin(Method::DELETE, &path).send().await.unwrap();
    let problem = assert_problem(res, StatusCode::CONFLICT).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("last enabled admin"),
        "{problem}"
    );
    // Nothing changed: the secret still works, and no revocation was recorded.
    assert_eq!(app.admin_get("/v1/admin/callers").await.status(), 200);
    assert!(app.audit("action=secret.revoked").await.is_empty());

    // With a second secret, the first may go; the last one still may not.
    let added: Value = app
        .admin(Method::POST, "/v1/admin/callers/admin/secrets")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = app.admin(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let second = added["client_secret"].as_str().unwrap();
    let last = format!(
        "/v1/admin/callers/admin/secrets/{}",
        added["id"].as_str().unwrap()
    );
    let res = app
        .request(Method::DELETE, &last)
        .basic_auth("admin", Some(second))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::CONFLICT).await;

    // Another admin that can sign in lifts the restriction.
    let res = app
        .request(Method::POST, "/v1/admin/callers")
        .basic_auth("admin", Some(second))
        .json(&json!({"name": "admin2", "groups": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .request(Method::DELETE, &last)
        .basic_auth("admin", Some(second))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_non_admins_last_secret_can_be_revoked() {
    let app = spawn_app().await;
    let created = app.create_caller(json!({"name": "svc-a"})).await;
    let path = format!(
        "/v1/admin/callers/svc-a/secrets/{}",
        created["secret_id"].as_str().unwrap()
    );
    let res = app.admin(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(secret_ids(&app, "svc-a").await.is_empty());
}
