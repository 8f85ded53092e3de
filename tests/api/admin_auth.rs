//! Who may use the admin API.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn missing_credentials_get_401_with_a_challenge() {
    let app = spawn_app().await;
    let res = app
        .request(Method::GET, "/v1/admin/callers")
        .send()
        .await
        .unwrap();
    let challenge = res.headers().get("www-authenticate").cloned();
    assert_problem(res, StatusCode::UNAUTHORIZED).await;
    assert!(challenge
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("Basic realm=\"asapd\""));
}

#[tokio::test]
async fn wrong_secret_and_unknown_caller_get_401() {
    let app = spawn_app().await;
    for (user, secret) in [("admin", "asapd_wrong"), ("nobody", "x"), ("admin", "")] {
        let res = app
            .request(Method::GET, "/v1/admin/callers")
            .basic_auth(user, Some(secret))
            .send()
            .await
            .unwrap();
        assert!(res.headers().contains_key("www-authenticate"));
        assert_problem(res, StatusCode::UNAUTHORIZED).await;
    }
    let res = app
        .request(Method::GET, "/v1/admin/callers")
        .header("authorization", "Basic !!!not-base64")
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn revoked_secret_gets_401() {
    let app = spawn_app().await;
    let added: serde_json::Value = app
        .admin(Method::POST, "/v1/admin/callers/admin/secrets")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = added["client_secret"].as_str().unwrap();
    let with_second = || {
        app.request(Method::GET, "/v1/admin/callers")
            .basic_auth("admin", Some(second))
            .send()
    };
    assert_eq!(with_second().await.unwrap().status(), StatusCode::OK);
    let id = added["id"].as_str().unwrap();
    let res = app
        .admin(
            Method::DELETE,
            &format!("/v1/admin/callers/admin/secrets/{id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_problem(with_second().await.unwrap(), StatusCode::UNAUTHORIZED).await;
    // The first secret still works.
    assert_eq!(
        app.admin_get("/v1/admin/callers").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn non_admin_caller_gets_403() {
    let app = spawn_app().await;
    app.create_group("svc", &["svc-b"]).await;
    let caller = app
        .create_caller(json!({"name": "svc-a", "groups": ["svc"]}))
        .await;
    let secret = caller["client_secret"].as_str().unwrap();
    for method in [Method::GET, Method::POST] {
        let res = app
            .request(method, "/v1/admin/groups")
            .basic_auth("svc-a", Some(secret))
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap();
        let body = assert_problem(res, StatusCode::FORBIDDEN).await;
        assert!(body["detail"]
            .as_str()
            .unwrap()
            .contains("not in group admin"));
    }
}

#[tokio::test]
async fn auditor_reads_but_cannot_write() {
    let app = spawn_app().await;
    let auditor = app
        .create_caller(json!({"name": "audit-bot", "groups": ["auditor"]}))
        .await;
    let secret = auditor["client_secret"].as_str().unwrap();
    for path in [
        "/v1/admin/callers",
        "/v1/admin/groups",
        "/v1/admin/callers/admin/keys",
    ] {
        let res = app
            .request(Method::GET, path)
            .basic_auth("audit-bot", Some(secret))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    let res = app
        .request(Method::POST, "/v1/admin/groups")
        .basic_auth("audit-bot", Some(secret))
        .json(&json!({"name": "sneaky", "audiences": ["*"]}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, StatusCode::FORBIDDEN).await;
    assert!(body["detail"].as_str().unwrap().contains("read-only"));
    assert_eq!(
        app.admin_get("/v1/admin/groups/sneaky").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn disabled_admin_is_refused() {
    let app = spawn_app().await;
    let second = app
        .create_caller(json!({"name": "root2", "groups": ["admin"]}))
        .await;
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/root2",
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .request(Method::GET, "/v1/admin/callers")
        .basic_auth("root2", second["client_secret"].as_str())
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn failed_admin_logins_are_audited_and_limited_per_source_ip() {
    // Frozen: no failed-login allowance comes back during the test.
    let clock = asapd::clock::Clock::manual(crate::token_support::now());
    let app = crate::helpers::spawn_app_with_clock(clock, |s| {
        s.http.trusted_proxies = vec!["127.0.0.1".to_owned().try_into().unwrap()];
        s.tokens.failed_auth_burst = 2;
        s.tokens.failed_auth_per_minute = 1;
    })
    .await;
    let attempt = |user: &'static str, secret: String, ip: &'static str| {
        app.request(Method::DELETE, "/v1/admin/callers/admin")
            .basic_auth(user, Some(secret))
            .header("X-Forwarded-For", ip)
            .send()
    };
    for user in ["admin", "nobody", "admin"] {
        let res = attempt(user, "asapd_guess".into(), "10.0.0.1")
            .await
            .unwrap();
        assert_problem(res, StatusCode::UNAUTHORIZED).await;
    }
    // The allowance is used up: even the right secret waits, and the
    // request changes nothing.
    let res = attempt("admin", app.admin_secret.clone(), "10.0.0.1")
        .await
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS).await;
    let res = app
        .admin(Method::GET, "/v1/admin/callers/admin")
        .header("X-Forwarded-For", "10.0.0.2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "admin still exists");

    let failed = app.audit_rows("auth.failed").await;
    assert_eq!(failed.len(), 3);
    let targets: Vec<_> = failed.iter().map(|r| r.target.as_deref()).collect();
    // `nobody` matches no caller: recorded as a keyed digest, not by name.
    assert!(targets.contains(&Some("caller:admin")));
    assert!(targets
        .iter()
        .any(|t| t.is_some_and(|t| t.starts_with("unknown-caller:"))));
    for row in &failed {
        assert_eq!(row.source_ip.as_deref(), Some("10.0.0.1"));
        assert!(
            row.detail.contains("/v1/admin/callers/{name}"),
            "{}",
            row.detail
        );
        assert!(!row.detail.contains("asapd_guess"), "no secret in audit");
    }
    assert_eq!(app.metric("asapd_auth_failures_total", &[]), Some(3.0));
}

#[tokio::test]
async fn a_rejected_bearer_token_is_audited_without_the_token() {
    let app = spawn_app().await;
    let res = app
        .request(Method::GET, "/v1/admin/callers")
        .bearer_auth("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln")
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED).await;
    let failed = app.audit_rows("auth.failed").await;
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].detail.contains("invalid_token"),
        "{}",
        failed[0].detail
    );
    assert!(!failed[0].detail.contains("eyJ"), "no token in audit");
}

/// A secret typed as the client id must not end up in the audit log: a name
/// that matches no caller is recorded as a keyed digest.
#[tokio::test]
async fn a_name_that_matches_no_caller_is_audited_as_a_digest() {
    let app = crate::helpers::spawn_app().await;
    let typed = "asapd_pX3bV9qLm2Zr7TtYw4Kc8Hs1";
    let res = app
        .request(Method::GET, "/v1/admin/callers")
        .basic_auth(typed, Some("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .request(Method::POST, "/v1/tokens")
        .basic_auth(typed, Some("x"))
        .json(&json!({"audience": "svc-b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .request(Method::POST, "/oauth2/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", typed),
            ("client_secret", "x"),
            ("audience", "svc-b"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A known caller with a wrong secret is still named.
    let res = app
        .request(Method::GET, "/v1/admin/callers")
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let failed = app.audit("action=auth.failed").await;
    assert_eq!(failed.len(), 4, "{failed:?}");
    assert_eq!(failed[0]["target"], "caller:admin");
    let digests: Vec<&str> = failed[1..]
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert!(digests.iter().all(|t| *t == digests[0]), "{digests:?}");
    let digest = digests[0].strip_prefix("unknown-caller:").unwrap();
    assert!(digest.len() == 24 && digest.chars().all(|c| c.is_ascii_hexdigit()));

    let export = app
        .admin(Method::GET, "/v1/admin/audit/export")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(export.contains(digest));
    assert!(
        !export.contains(typed),
        "the typed secret reached the audit export"
    );
}

#[tokio::test]
async fn denials_do_not_echo_long_opaque_values() {
    let app = crate::helpers::spawn_app().await;
    let opaque = "Z".repeat(300);
    let res = app
        .request(Method::POST, "/v1/tokens")
        .header("authorization", format!("{opaque} abc"))
        .json(&json!({"audience": "svc-b"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(res, StatusCode::UNAUTHORIZED).await;
    assert!(
        !problem["detail"].as_str().unwrap().contains(&opaque),
        "{problem}"
    );
    let res = app
        .request(Method::POST, "/oauth2/token")
        .basic_auth("admin", Some(&app.admin_secret))
        .form(&[("grant_type", opaque.as_str()), ("audience", "asapd")])
        .send()
        .await
        .unwrap();
    let body = res.text().await.unwrap();
    assert!(body.contains("not supported"), "{body}");
    assert!(!body.contains(&opaque), "{body}");
}
