//! Bad input gets a clear 4xx problem+json naming the problem; never a 500.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for body in ["{", "not json", "", "{\"name\": \"a\"} trailing", "[1,2]"] {
        let res = app
            .admin(Method::POST, "/v1/admin/groups")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_problem(res, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn unknown_fields_are_named() {
    let app = spawn_app().await;
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/callers",
            json!({"name": "a", "colour": "red"}),
        )
        .await;
    let body = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/callers",
            json!({"name": "a", "rate_limit": {"per_second": 1, "burst": 1, "x": 1}}),
        )
        .await;
    let body = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["field"], "rate_limit.x");
}

#[tokio::test]
async fn names_outside_the_pattern_are_400() {
    let app = spawn_app().await;
    for name in ["", "a/b", "../x", "-x", "caf\u{e9}", "a b", &"x".repeat(65)] {
        let res = app
            .admin_json(Method::POST, "/v1/admin/callers", json!({"name": name}))
            .await;
        let body = assert_problem(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["field"], "name", "{name:?}");
    }
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/callers/admin/keys",
            json!({"name": "a/b"}),
        )
        .await;
    let body = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["field"], "name");
}

#[tokio::test]
async fn unsupported_algorithms_are_400() {
    let app = spawn_app().await;
    for alg in ["HS256", "none", "EdDSA", "es256", "RS1024"] {
        let res = app
            .admin_json(
                Method::POST,
                "/v1/admin/callers",
                json!({"name": "svc", "algorithm": alg}),
            )
            .await;
        let body = assert_problem(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["field"], "algorithm");
        assert!(
            body["detail"].as_str().unwrap().contains("ES256"),
            "lists what is supported"
        );
    }
}

#[tokio::test]
async fn out_of_range_numbers_are_400() {
    let app = spawn_app().await;
    for (body, field) in [
        (
            json!({"name": "s", "rate_limit": {"per_second": 0, "burst": 1}}),
            "rate_limit",
        ),
        (
            json!({"name": "s", "rate_limit": {"per_second": -5, "burst": 1}}),
            "rate_limit",
        ),
        (
            json!({"name": "s", "rotation_period_secs": 10}),
            "rotation_period_secs",
        ),
        (
            json!({"name": "s", "rotation_period_secs": "soon"}),
            "rotation_period_secs",
        ),
        (json!({"name": "s", "enabled": 1}), "enabled"),
    ] {
        let res = app
            .admin_json(Method::POST, "/v1/admin/callers", body.clone())
            .await;
        let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["field"], field, "{body}");
    }
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = spawn_app().await;
    let huge = json!({"name": "g", "audiences": vec!["a".repeat(200); 2000]});
    let res = app.admin_json(Method::POST, "/v1/admin/groups", huge).await;
    assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_problem(
        app.admin_get("/v1/admin/groups/g").await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = spawn_app().await;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = app
            .admin(Method::POST, "/v1/admin/groups")
            .body(r#"{"name":"g"}"#);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        assert_problem(
            req.send().await.unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        )
        .await;
    }
    let res = app
        .admin(Method::POST, "/v1/admin/groups")
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"name":"g"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "charset parameter is fine"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    assert_problem(
        app.request(Method::GET, "/nope").send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    let res = app
        .request(Method::DELETE, "/healthz")
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert!(
        status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED,
        "{status}"
    );
    assert_problem(res, status).await;
}

/// PostgreSQL refuses NUL in text; a NUL anywhere a client can put one is
/// still the client's mistake (401/400/404), never a 500.
#[tokio::test]
async fn nul_characters_are_client_errors_on_every_database() {
    use base64::Engine;
    let app = spawn_app().await;
    let basic = |name: &str, secret: &str| {
        let pair = format!("{name}:{secret}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let nul_admin = basic("ad\0min", &app.admin_secret);

    let res = app
        .request(Method::GET, "/v1/admin/callers")
        .header("authorization", &nul_admin)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED).await;
    let res = app
        .request(Method::POST, "/v1/tokens")
        .header("authorization", &nul_admin)
        .json(&json!({"audience": "asapd"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED).await;
    let res = app
        .request(Method::POST, "/oauth2/token")
        .header("authorization", &nul_admin)
        .form(&[("grant_type", "client_credentials"), ("audience", "asapd")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    let res = app
        .request(Method::POST, "/oauth2/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("audience", "asapd"),
            ("client_id", "ad\0min"),
            ("client_secret", app.admin_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // In paths and query strings.
    for path in [
        "/v1/admin/callers/ad%00min",
        "/v1/admin/groups/g%00",
        "/v1/admin/keys/admin%2Fk%00",
        "/v1/keys/admin/k%00",
    ] {
        let res = app.admin(Method::GET, path).send().await.unwrap();
        assert_problem(res, StatusCode::NOT_FOUND).await;
    }
    let res = app
        .admin(Method::DELETE, "/v1/admin/callers/admin/secrets/sec%00")
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert!(status.is_client_error(), "{status}");
    assert_problem(res, status).await;
    for filter in ["actor", "target"] {
        let res = app
            .admin(Method::GET, &format!("/v1/admin/audit?{filter}=a%00b"))
            .send()
            .await
            .unwrap();
        let body = assert_problem(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["field"], filter);
    }
    // And the service still answers, and audited the failed logins.
    let failed = app.audit("action=auth.failed").await;
    assert!(failed.len() >= 2, "{failed:?}");
    assert!(app
        .admin_get("/v1/admin/callers")
        .await
        .status()
        .is_success());
}

#[tokio::test]
async fn a_group_listed_twice_is_400_naming_it() {
    let app = spawn_app().await;
    app.create_group("g", &["b"]).await;
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/callers",
            json!({"name": "svc", "groups": ["g", "g"]}),
        )
        .await;
    let body = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["field"], "groups[1]");
    app.create_caller(json!({"name": "svc", "groups": ["g"]}))
        .await;
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/svc",
            json!({"groups": ["g", "g"]}),
        )
        .await;
    let body = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["field"], "groups[1]");
}

/// Credentials are checked before the body is looked at: a stranger gets
/// 401 whatever they send, never a validation message.
#[tokio::test]
async fn admin_credentials_come_before_the_body() {
    let app = spawn_app().await;
    for (content_type, body) in [
        ("application/json", "{not json"),
        ("text/plain", "x"),
        ("application/json", "{\"name\": \"../x\"}"),
    ] {
        for _ in 0..3 {
            let res = app
                .request(Method::POST, "/v1/admin/groups")
                .basic_auth("admin", Some("asapd_wrong"))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_problem(res, StatusCode::UNAUTHORIZED).await;
        }
    }
    let res = app
        .request(Method::POST, "/v1/admin/groups")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED).await;
}
