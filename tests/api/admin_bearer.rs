//! The admin API accepts `Authorization: Bearer <token>` when asapd issued
//! the token to an admin or auditor caller for its own audience.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, TestApp};
use crate::token_support::Caller;

impl TestApp {
    fn admin_caller(&self) -> Caller {
        Caller {
            name: "admin".into(),
            secret: self.admin_secret.clone(),
            kid: String::new(),
        }
    }

    async fn with_bearer(&self, method: Method, path: &str, token: &str) -> reqwest::Response {
        self.request(method, path)
            .bearer_auth(token)
            .json(&json!({"name": "made-by-bearer", "audiences": ["x"], "max_lifetime": 60}))
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn an_admin_token_for_asapd_opens_the_admin_api() {
    let app = spawn_app().await;
    let token = app.token(&app.admin_caller(), "asapd").await;
    let res = app
        .with_bearer(Method::GET, "/v1/admin/callers", &token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .with_bearer(Method::POST, "/v1/admin/groups", &token)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn the_own_audience_is_configurable() {
    let app = spawn_app_with(|s| s.tokens.audience = "asapd.example".into()).await;
    // The reserved groups grant "asapd"; grant the configured name too.
    app.group(json!({"name": "ops", "audiences": ["asapd.example"], "max_lifetime": 600}))
        .await;
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/admin",
            json!({"groups": ["admin", "ops"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let good = app.token(&app.admin_caller(), "asapd.example").await;
    let res = app
        .with_bearer(Method::GET, "/v1/admin/callers", &good)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let other = app.token(&app.admin_caller(), "asapd").await;
    let res = app
        .with_bearer(Method::GET, "/v1/admin/callers", &other)
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn an_auditor_token_reads_but_does_not_write() {
    let app = spawn_app().await;
    let auditor = app
        .caller("audit-bot", json!({"groups": ["auditor"]}))
        .await;
    let token = app.token(&auditor, "asapd").await;
    let res = app
        .with_bearer(Method::GET, "/v1/admin/groups", &token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .with_bearer(Method::POST, "/v1/admin/groups", &token)
        .await;
    assert_problem(res, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let app = spawn_app().await;
    app.group(json!({"name": "g", "audiences": ["svc-b"], "max_lifetime": 600}))
        .await;
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/admin",
            json!({"groups": ["admin", "g"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let token = app.token(&app.admin_caller(), "svc-b").await;
    let res = app
        .with_bearer(Method::GET, "/v1/admin/callers", &token)
        .await;
    let problem = assert_problem(res, StatusCode::UNAUTHORIZED).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("another audience"));
}

#[tokio::test]
async fn a_token_of_a_non_admin_is_refused() {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["asapd"]).await;
    let token = app.token(&a, "asapd").await;
    let res = app
        .with_bearer(Method::GET, "/v1/admin/callers", &token)
        .await;
    assert_problem(res, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn a_delegated_subject_is_not_an_admin() {
    let app = spawn_app().await;
    app.group(
        json!({"name": "delegates", "audiences": ["asapd"], "max_lifetime": 600,
                     "allow_subject": true}),
    )
    .await;
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/admin",
            json!({"groups": ["admin", "delegates"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .token_request(
            &app.admin_caller(),
            json!({"audience": "asapd", "subject": "someone-else"}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    let res = app
        .with_bearer(Method::GET, "/v1/admin/callers", token)
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn forged_and_tampered_tokens_are_refused() {
    let app = spawn_app().await;
    let token = app.token(&app.admin_caller(), "asapd").await;
    let parts: Vec<&str> = token.split('.').collect();

    // Claims swapped for another caller's, signature kept.
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 60);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    // alg confusion: HS256 with the public PEM as the HMAC secret.
    let mut header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap().to_owned();
    let pem = app
        .request(Method::GET, &format!("/v1/keys/{kid}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    header["alg"] = json!("HS256");
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(pem.as_bytes()),
    )
    .unwrap();
    // alg "none".
    header["alg"] = json!("none");
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        parts[1]
    );
    for bad in [tampered.as_str(), hs.as_str(), none.as_str(), "garbage", ""] {
        let res = app.with_bearer(Method::GET, "/v1/admin/callers", bad).await;
        assert_problem(res, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn a_token_whose_key_was_revoked_is_refused() {
    let app = spawn_app().await;
    let token = app.token(&app.admin_caller(), "asapd").await;
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let res = app
        .admin(Method::POST, &format!("/v1/admin/keys/{kid}/revoke"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let res = app
        .with_bearer(Method::GET, "/v1/admin/callers", &token)
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn the_challenge_offers_basic_and_bearer() {
    let app = spawn_app().await;
    let res = app
        .request(Method::GET, "/v1/admin/callers")
        .send()
        .await
        .unwrap();
    let challenges: Vec<String> = res
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_problem(res, StatusCode::UNAUTHORIZED).await;
    assert!(
        challenges[0].starts_with("Basic realm=\"asapd\""),
        "{challenges:?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer")),
        "{challenges:?}"
    );
}
