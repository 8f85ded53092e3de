//! The HTTP contract around the routes: JSON bodies are objects, a wrong
//! method gets 405 with `Allow`, and the spec documents every status.

use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use crate::helpers::{assert_problem, spawn_app, TestApp};

/// Every operation of the spec that takes a JSON body, with its path
/// parameters filled in from what a fresh app has (the `admin` caller and
/// group). Derived from the spec so a new JSON endpoint is covered at once.
fn json_operations(spec: &Value) -> Vec<(Method, String)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["requestBody"]["content"]["application/json"].is_null() {
                continue;
            }
            let path = path.replace("{name}", "admin");
            assert!(!path.contains('{'), "no value for a parameter of {path}");
            out.push((method.to_uppercase().parse().unwrap(), path));
        }
    }
    out
}

/// `body` as admin, declared as JSON whatever it holds.
async fn send_json_text(app: &TestApp, method: Method, path: &str, body: &'static str) -> Response {
    app.admin(method, path)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn served_spec(app: &TestApp) -> Value {
    let res = app
        .request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap();
    res.json().await.unwrap()
}

#[tokio::test]
async fn every_json_endpoint_refuses_a_body_that_is_not_an_object() {
    let app = spawn_app().await;
    let operations = json_operations(&served_spec(&app).await);
    for known in [
        "/v1/tokens",
        "/v1/admin/callers",
        "/v1/admin/callers/admin",
        "/v1/admin/callers/admin/keys",
        "/v1/admin/callers/admin/keys/import",
        "/v1/admin/groups",
        "/v1/admin/groups/admin",
        "/v1/admin/settings/audit-retention",
    ] {
        assert!(
            operations.iter().any(|(_, p)| p == known),
            "{known} in {operations:?}"
        );
    }
    for (method, path) in &operations {
        for body in [
            "[null, null]",
            "[]",
            " [{}]",
            "\"text\"",
            "1",
            "null",
            "true",
        ] {
            // Admin credentials are also a caller's Basic credentials for
            // /v1/tokens, which authenticates before reading the body.
            let res = send_json_text(&app, method.clone(), path, body).await;
            let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
            assert_eq!(problem["field"], "body", "{method} {path} {body}");
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains("must be a JSON object"),
                "{method} {path} {body}: {problem}"
            );
        }
    }
}

#[tokio::test]
async fn an_array_body_changes_nothing() {
    let app = spawn_app().await;
    let before = app
        .admin_get_json("/v1/admin/settings/audit-retention")
        .await;
    let res = send_json_text(
        &app,
        Method::PUT,
        "/v1/admin/settings/audit-retention",
        "[null, null]",
    )
    .await;
    assert_problem(res, StatusCode::BAD_REQUEST).await;
    let after = app
        .admin_get_json("/v1/admin/settings/audit-retention")
        .await;
    assert_eq!(before, after);
    assert!(!after["max_age_days"].is_null(), "{after}");
}

#[tokio::test]
async fn broken_json_is_still_called_broken() {
    let app = spawn_app().await;
    for body in ["[1,", "nonsense", "{"] {
        let res = send_json_text(&app, Method::POST, "/v1/admin/groups", body).await;
        let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("not valid JSON"), "{body}: {detail}");
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow() {
    let app = spawn_app().await;
    let cases = [
        (Method::DELETE, "/v1/admin/callers", "GET, HEAD, POST"),
        (
            Method::PUT,
            "/v1/admin/callers/admin",
            "GET, HEAD, PATCH, DELETE",
        ),
        (Method::GET, "/v1/admin/callers/admin/keys/rotate", "POST"),
        (
            Method::POST,
            "/v1/admin/settings/audit-retention",
            "GET, HEAD, PUT",
        ),
        (Method::PUT, "/v1/tokens", "POST"),
        (Method::HEAD, "/v1/tokens", "POST"),
        (Method::GET, "/oauth2/token", "POST"),
        (Method::POST, "/healthz", "GET, HEAD"),
        (Method::DELETE, "/.well-known/jwks.json", "GET, HEAD"),
        (Method::POST, "/v1/keys/admin/some-key", "GET, HEAD"),
        (Method::OPTIONS, "/openapi.json", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let res = app.admin(method.clone(), path).send().await.unwrap();
        let header = res
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header.as_deref(), Some(allow), "{method} {path}");
        if method == Method::HEAD {
            assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
            continue;
        }
        let problem = assert_problem(res, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_eq!(problem["type"], "urn:asapd:problem:method-not-allowed");
    }
}

/// RFC 9110 §9.3.2: HEAD answers wherever GET does, with GET's status and
/// headers and no body; a matching `If-None-Match` gets 304 as with GET.
#[tokio::test]
async fn head_answers_as_get_without_a_body() {
    let app = spawn_app().await;
    let kid = app.jwks().await[0]["kid"].as_str().unwrap().to_owned();
    for path in [
        "/healthz".to_owned(),
        "/.well-known/jwks.json".to_owned(),
        format!("/v1/keys/{kid}"),
    ] {
        let get = app.request(Method::GET, &path).send().await.unwrap();
        let head = app.request(Method::HEAD, &path).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "{path}");
        assert_eq!(get.status(), StatusCode::OK, "{path}");
        for name in ["content-type", "content-length", "etag", "cache-control"] {
            assert_eq!(
                head.headers().get(name),
                get.headers().get(name),
                "{name} of HEAD {path}"
            );
        }
        assert!(head.headers().get("x-request-id").is_some(), "{path}");
        let etag = get.headers().get("etag").cloned();
        assert!(!get.bytes().await.unwrap().is_empty(), "{path}");
        assert!(head.bytes().await.unwrap().is_empty(), "{path}");
        let Some(etag) = etag else { continue };
        let res = app
            .request(Method::HEAD, &path)
            .header("If-None-Match", etag.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(res.headers().get("etag"), Some(&etag), "{path}");
    }
}

#[tokio::test]
async fn an_unknown_path_is_still_404() {
    let app = spawn_app().await;
    for path in ["/nope", "/v1/admin/nope", "/v1/tokens/extra"] {
        let res = app.admin(Method::DELETE, path).send().await.unwrap();
        assert!(res.headers().get("allow").is_none(), "{path}");
        assert_problem(res, StatusCode::NOT_FOUND).await;
    }
}

/// A response of the spec, following a `$ref` into the components.
fn resolve<'a>(spec: &'a Value, response: &'a Value) -> &'a Value {
    match response["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &spec["components"]["responses"][name]
        }
        None => response,
    }
}

#[test]
fn the_spec_documents_the_shared_statuses() {
    let spec: Value = serde_json::from_str(&asapd::http::openapi::spec_json()).unwrap();
    let mut admin_operations = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = &op["responses"];
            let mut expected = Vec::new();
            if path.starts_with("/v1/admin/") {
                admin_operations += 1;
                expected.extend(["401", "403", "429", "503"]);
            }
            if !op["requestBody"]["content"]["application/json"].is_null() {
                expected.extend(["400", "413", "415"]);
            }
            for status in expected {
                let response = resolve(&spec, &responses[status]);
                assert!(
                    response["content"]["application/problem+json"].is_object(),
                    "{method} {path} documents {status} as problem+json"
                );
            }
            if !responses["429"].is_null() {
                let response = resolve(&spec, &responses["429"]);
                assert!(
                    response["headers"]["Retry-After"].is_object(),
                    "{method} {path}: 429 documents Retry-After"
                );
            }
        }
    }
    assert!(admin_operations >= 22, "{admin_operations}");
}

#[test]
fn the_spec_states_the_limits_the_code_enforces() {
    let spec: Value = serde_json::from_str(&asapd::http::openapi::spec_json()).unwrap();
    let schemas = &spec["components"]["schemas"];
    assert_eq!(schemas["CallerName"]["maxLength"], 64);
    assert!(schemas["CallerName"]["pattern"].is_string());
    assert_eq!(schemas["Lifetime"]["maximum"], 3600);
    assert_eq!(schemas["RotationPeriod"]["maximum"], 315_360_000);
    assert_eq!(schemas["AudienceList"]["maxItems"], 16);
    assert_eq!(schemas["AudiencePattern"]["maxLength"], 255);
    let retention = &schemas["RetentionUpdate"]["properties"];
    assert_eq!(retention["max_age_days"]["maximum"], 3650);
    assert_eq!(retention["max_entries"]["minimum"], 100);
    let audit = &spec["paths"]["/v1/admin/audit"]["get"]["parameters"];
    let limit = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["maximum"], 1000);
}

#[tokio::test]
async fn integral_floats_are_integers() {
    let app = spawn_app().await;
    let res = app
        .admin_json(
            reqwest::Method::POST,
            "/v1/admin/groups",
            serde_json::json!({"name": "g", "audiences": ["svc"], "max_lifetime": 600.0}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let group: Value = res.json().await.unwrap();
    assert_eq!(group["max_lifetime"], 600);
    let res = app
        .admin_json(
            reqwest::Method::PATCH,
            "/v1/admin/groups/g",
            serde_json::json!({"max_lifetime": 600.5}),
        )
        .await;
    let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["field"], "max_lifetime");
}
