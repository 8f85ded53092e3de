//! `POST /v1/admin/callers/{name}/keys/import` with `kid`: an imported key
//! keeps the kid its service already uses.

use p256::pkcs8::{EncodePrivateKey, LineEnding};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, TestApp};

fn es256_pem() -> String {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
}

async fn import(app: &TestApp, body: Value) -> reqwest::Response {
    app.admin_json(Method::POST, "/v1/admin/callers/svc-a/keys/import", body)
        .await
}

#[tokio::test]
async fn an_imported_key_keeps_its_kid_and_signs_with_it() {
    let app = spawn_app().await;
    app.group(json!({"name": "g", "audiences": ["svc-b"], "max_lifetime": 600}))
        .await;
    let caller = app
        .caller("svc-a", json!({"groups": ["g"], "algorithm": "ES256"}))
        .await;
    let res = import(
        &app,
        json!({"private_key": es256_pem(), "kid": "svc-a/2019-prod.v2+x", "activate": true}),
    )
    .await;
    let status = res.status();
    let key: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{key}");
    assert_eq!(key["kid"], "svc-a/2019-prod.v2+x");

    let res = app
        .request(Method::GET, "/v1/keys/svc-a/2019-prod.v2+x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "published under the kept kid");
    let token = app.token(&caller, "svc-b").await;
    let (header, _) = app.verify(&token, "svc-b").await;
    assert_eq!(header.kid.as_deref(), Some("svc-a/2019-prod.v2+x"));

    // A kid is never reused: the same kid again is a conflict.
    let res = import(
        &app,
        json!({"private_key": es256_pem(), "kid": "svc-a/2019-prod.v2+x"}),
    )
    .await;
    assert_problem(res, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn a_kid_asapd_cannot_keep_is_a_400_naming_kid() {
    let app = spawn_app().await;
    app.caller("svc-a", json!({"algorithm": "ES256"})).await;
    app.caller("svc-b", json!({"algorithm": "ES256"})).await;
    for (kid, why) in [
        ("svc-b/k1", "another caller's prefix"),
        ("svc-ab/k1", "a longer caller name"),
        ("k1", "no caller prefix"),
        ("svc-a/", "an empty key name"),
        ("svc-a/../k1", "a .. segment"),
        ("svc-a/a/b", "a third segment"),
        ("svc-a/k 1", "a space"),
        ("svc-a/ключ", "non-ASCII"),
        ("/svc-a/k1", "a leading /"),
    ] {
        let res = import(&app, json!({"private_key": es256_pem(), "kid": kid})).await;
        let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["field"], "kid", "{kid} ({why}): {problem}");
    }
    let res = import(
        &app,
        json!({"private_key": es256_pem(), "kid": "svc-a/k1", "name": "k1"}),
    )
    .await;
    let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["field"], "kid");
    let keys = app.admin_get_json("/v1/admin/callers/svc-a/keys").await;
    assert_eq!(
        keys.as_array().unwrap().len(),
        1,
        "nothing imported: {keys}"
    );
}
