//! No spelling of an admin path reaches an admin handler around the gate:
//! percent-encoded, doubled-slash and dot-segment spellings of every admin
//! route get the same 401/403 as the plain path.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{spawn_app, TestApp};

/// Sends `method path` as written, byte for byte (reqwest would resolve
/// dot segments first); returns the status code.
async fn raw_status(app: &TestApp, method: &str, path: &str, basic: Option<&str>) -> u16 {
    use base64::Engine;
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = basic
        .map(|b| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(b);
            format!("Authorization: Basic {encoded}\r\n")
        })
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// Every admin operation in the served spec, path parameters filled in.
async fn admin_operations(app: &TestApp) -> Vec<(String, String)> {
    let spec: Value = app
        .request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/admin") {
            continue;
        }
        let path = path
            .replace("{name}", "admin")
            .replace("{kid}", "admin/k1")
            .replace("{id}", "s1");
        for method in item.as_object().unwrap().keys() {
            operations.push((method.to_uppercase(), path.clone()));
        }
    }
    assert!(operations.len() >= 20, "admin operations: {operations:?}");
    operations
}

/// Ways to write `/v1/admin/…` that a router or a proxy may take for it.
fn spellings(path: &str) -> Vec<String> {
    let rest = path.strip_prefix("/v1/admin").unwrap();
    vec![
        path.to_owned(),
        format!("/v1/%61dmin{rest}"),
        format!("/v1/%61%64%6d%69%6e{rest}"),
        format!("//v1//admin{rest}"),
        format!("/v1/./admin{rest}"),
        format!("/v1/admin/.{rest}"),
        format!("/v1/keys/../admin{rest}"),
        format!("/v1/keys/%2e%2e/admin{rest}"),
    ]
}

#[tokio::test]
async fn every_spelling_of_every_admin_route_is_gated() {
    let app = spawn_app().await;
    let caller = app.create_caller(json!({"name": "svc-x"})).await;
    let member = format!("svc-x:{}", caller["client_secret"].as_str().unwrap());
    for (method, path) in admin_operations(&app).await {
        for spelled in spellings(&path) {
            let anonymous = raw_status(&app, &method, &spelled, None).await;
            assert_eq!(anonymous, 401, "{method} {spelled} without credentials");
            let not_admin = raw_status(&app, &method, &spelled, Some(&member)).await;
            assert_eq!(not_admin, 403, "{method} {spelled} as a non-admin");
        }
    }
}

#[tokio::test]
async fn failed_logins_on_an_encoded_admin_path_are_audited_and_limited() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.tokens.failed_auth_burst = 2;
        s.tokens.failed_auth_per_minute = 1;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(raw_status(&app, "GET", "/v1/%61dmin/callers", Some("admin:wrong")).await);
    }
    // The burst of 2, the failure that used it up, then the block.
    assert_eq!(statuses, [401, 401, 401, 429]);
    // Read from the database: this address is blocked on the API now.
    let failed = app.audit_rows("auth.failed").await;
    assert_eq!(failed.len(), 3);
    assert!(failed
        .iter()
        .all(|r| r.target.as_deref() == Some("caller:admin")));
    let res = app.admin_get("/v1/admin/callers").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}
