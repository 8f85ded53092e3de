//! `POST /oauth2/token`: RFC 6749 §4.4 client credentials, RFC 6749 §5.1 /
//! §5.2 bodies, RFC 8707 resource indicators.

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with_clock, TestApp};
use crate::token_support::Caller;

fn form(app: &TestApp, body: &str) -> RequestBuilder {
    app.request(Method::POST, "/oauth2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
}

/// Asserts an RFC 6749 §5.2 error; returns `error_description`.
async fn assert_oauth2_error(res: Response, status: StatusCode, error: &str) -> String {
    assert_eq!(res.status(), status);
    let headers = res.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    if status == StatusCode::UNAUTHORIZED {
        assert!(headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=\"asapd\""));
    }
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    let description = body["error_description"].as_str().unwrap().to_owned();
    assert!(
        description
            .chars()
            .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\'),
        "RFC 6749 error_description charset: {description}"
    );
    description
}

async fn setup() -> (TestApp, Caller) {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["svc-b", "svc-c"]).await;
    (app, a)
}

#[tokio::test]
async fn basic_auth_and_audience_get_an_rfc6749_token_response() {
    let (app, a) = setup().await;
    let res = form(&app, "grant_type=client_credentials&audience=svc-b")
        .basic_auth(&a.name, Some(&a.secret))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["pragma"], "no-cache");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 60);
    let (header, claims) = app
        .verify(body["access_token"].as_str().unwrap(), "svc-b")
        .await;
    assert_eq!(header.kid.as_deref(), Some(a.kid.as_str()));
    assert_eq!(claims["iss"], "svc-a");
    assert_eq!(claims["aud"], "svc-b");

    let issued = app.audit_rows("token.issued").await;
    assert_eq!(
        crate::token_support::detail(&issued[0])["endpoint"],
        "/oauth2/token"
    );
}

#[tokio::test]
async fn form_credentials_and_repeated_resources() {
    let (app, a) = setup().await;
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&resource=svc-b&resource=svc-c&scope=",
        a.name, a.secret
    );
    let res = form(&app, &body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let (_, claims) = app
        .verify(body["access_token"].as_str().unwrap(), "svc-c")
        .await;
    assert_eq!(claims["aud"], json!(["svc-b", "svc-c"]));
}

#[tokio::test]
async fn invalid_client() {
    let (app, a) = setup().await;
    let res = form(&app, "grant_type=client_credentials&audience=svc-b")
        .basic_auth(&a.name, Some("asapd_wrong"))
        .send()
        .await
        .unwrap();
    assert_oauth2_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;

    let res = form(&app, "grant_type=client_credentials&audience=svc-b")
        .send()
        .await
        .unwrap();
    assert_oauth2_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;

    let body = "grant_type=client_credentials&audience=svc-b&client_id=svc-a&client_secret=nope";
    let res = form(&app, body).send().await.unwrap();
    assert_oauth2_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;

    let res = form(&app, "grant_type=client_credentials&audience=svc-b")
        .bearer_auth("some.jwt.token")
        .send()
        .await
        .unwrap();
    assert_oauth2_error(res, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_eq!(app.audit_rows("auth.failed").await.len(), 2);
}

#[tokio::test]
async fn invalid_request() {
    let (app, a) = setup().await;
    // Two authentication methods at once (RFC 6749 §2.3).
    let body = format!(
        "grant_type=client_credentials&audience=svc-b&client_id=svc-a&client_secret={}",
        a.secret
    );
    let res = form(&app, &body)
        .basic_auth(&a.name, Some(&a.secret))
        .send()
        .await
        .unwrap();
    assert_oauth2_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;

    let basic = |body: &str| form(&app, body).basic_auth(&a.name, Some(&a.secret)).send();
    for body in [
        "audience=svc-b", // no grant_type
        "grant_type=client_credentials&grant_type=client_credentials&audience=svc-b", // twice
        "grant_type=client_credentials&audience=svc-b&resource=svc-c", // both
        "grant_type=client_credentials&audience=svc-b&client_id=other", // id mismatch
    ] {
        let d = assert_oauth2_error(
            basic(body).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
        assert!(!d.is_empty(), "{body}");
    }
    // Not a form.
    let res = app
        .request(Method::POST, "/oauth2/token")
        .basic_auth(&a.name, Some(&a.secret))
        .json(&json!({"grant_type": "client_credentials", "audience": "svc-b"}))
        .send()
        .await
        .unwrap();
    assert_oauth2_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn unsupported_grant_type() {
    let (app, a) = setup().await;
    let res = form(
        &app,
        "grant_type=password&username=u&password=p&audience=svc-b",
    )
    .basic_auth(&a.name, Some(&a.secret))
    .send()
    .await
    .unwrap();
    assert_oauth2_error(res, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
    let denied = app.audit_rows("token.denied").await;
    assert_eq!(
        crate::token_support::detail(&denied[0])["rule"],
        "unsupported_grant_type"
    );
}

#[tokio::test]
async fn invalid_scope() {
    let (app, a) = setup().await;
    let res = form(
        &app,
        "grant_type=client_credentials&audience=svc-b&scope=read",
    )
    .basic_auth(&a.name, Some(&a.secret))
    .send()
    .await
    .unwrap();
    let d = assert_oauth2_error(res, StatusCode::BAD_REQUEST, "invalid_scope").await;
    assert!(d.contains("audience"), "{d}");
}

#[tokio::test]
async fn invalid_target() {
    let (app, a) = setup().await;
    let basic = |body: &'static str| form(&app, body).basic_auth(&a.name, Some(&a.secret)).send();
    for body in [
        "grant_type=client_credentials",                // no audience
        "grant_type=client_credentials&audience=svc-z", // not granted
        "grant_type=client_credentials&resource=svc-b&resource=svc-z", // one not granted
        "grant_type=client_credentials&resource=https%3A%2F%2Fsvc-b%2F%23frag", // fragment
        "grant_type=client_credentials&audience=has+space", // malformed
    ] {
        assert_oauth2_error(
            basic(body).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_target",
        )
        .await;
    }
}

#[tokio::test]
async fn unauthorized_client_when_disabled() {
    let (app, a) = setup().await;
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/svc-a",
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = form(&app, "grant_type=client_credentials&audience=svc-b")
        .basic_auth(&a.name, Some(&a.secret))
        .send()
        .await
        .unwrap();
    let d = assert_oauth2_error(res, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    assert!(d.contains("caller_disabled"), "{d}");
}

#[tokio::test]
async fn rate_limited_is_429_with_retry_after() {
    // A clock that stands still: the second request is surely within the
    // first one's second.
    let start = crate::token_support::now();
    let app = spawn_app_with_clock(asapd::clock::Clock::manual(start), |_| {}).await;
    app.group(json!({"name": "g", "audiences": ["svc-b"], "max_lifetime": 600}))
        .await;
    let a = app
        .caller(
            "svc-a",
            json!({"groups": ["g"], "rate_limit": {"per_second": 1, "burst": 1}}),
        )
        .await;
    let ask = || {
        form(&app, "grant_type=client_credentials&audience=svc-b")
            .basic_auth(&a.name, Some(&a.secret))
            .send()
    };
    assert_eq!(ask().await.unwrap().status(), StatusCode::OK);
    let res = ask().await.unwrap();
    assert_eq!(res.headers()["retry-after"], "1");
    assert_oauth2_error(
        res,
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
    )
    .await;
    app.state.clock.advance(1);
    assert_eq!(ask().await.unwrap().status(), StatusCode::OK);
}
