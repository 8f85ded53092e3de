//! The public key repository and JWKS, as verifiers see them.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn unknown_and_malformed_kids_are_404_problems() {
    let app = spawn_app().await;
    app.create_caller(json!({"name": "svc-a"})).await;
    for kid in [
        "svc-a/nope",
        "svc-a",
        "svc-a/",
        "svc-a/../admin",
        "svc-a/%2e%2e/admin",
        "..%2f..%2fetc%2fpasswd",
        "svc-a//x",
        "a/b/c",
        "%00",
        "sv%C3%A9/x",
    ] {
        let res = app
            .request(Method::GET, &format!("/v1/keys/{kid}"))
            .send()
            .await
            .unwrap();
        assert_problem(res, StatusCode::NOT_FOUND).await;
    }
    let res = app.request(Method::GET, "/v1/keys").send().await.unwrap();
    assert_problem(res, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn the_key_repository_serves_pem_and_only_answers_get() {
    let app = spawn_app().await;
    let caller = app.create_caller(json!({"name": "svc-a"})).await;
    let kid = caller["kid"].as_str().unwrap();
    let path = format!("/v1/keys/{kid}");
    let res = app.request(Method::GET, &path).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/x-pem-file");
    assert!(res
        .text()
        .await
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----\n"));
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let res = app.request(method, &path).send().await.unwrap();
        assert_problem(res, StatusCode::METHOD_NOT_ALLOWED).await;
    }
}

#[tokio::test]
async fn jwks_lists_every_published_key_with_cache_headers() {
    let app = spawn_app().await;
    let a = app
        .create_caller(json!({"name": "svc-a", "algorithm": "RS256"}))
        .await;
    let b = app.create_caller(json!({"name": "svc-b"})).await;
    let res = app
        .request(Method::GET, "/.well-known/jwks.json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age="));
    let body: Value = res.json().await.unwrap();
    let kids: Vec<_> = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    for created in [&a, &b] {
        assert!(kids.contains(&created["kid"].as_str().unwrap().to_owned()));
    }
    for key in body["keys"].as_array().unwrap() {
        for member in ["kid", "alg", "use", "kty"] {
            assert!(key.get(member).is_some(), "{member} in {key}");
        }
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let res = app.request(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.request(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = spawn_app().await;
    let res = app
        .request(Method::GET, "/healthz")
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-123");
    let res = app
        .request(Method::GET, "/healthz")
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let made = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 24, "{made}");
    assert!(made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");
    let again = app.request(Method::GET, "/healthz").send().await.unwrap();
    assert_ne!(again.headers()["x-request-id"].to_str().unwrap(), made);
}

/// `GET path` with an optional `If-None-Match`: status, ETag, Cache-Control, body.
async fn conditional_get(
    app: &crate::helpers::TestApp,
    path: &str,
    if_none_match: Option<&str>,
) -> (u16, String, String, String) {
    let mut req = app.request(reqwest::Method::GET, path);
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    let res = req.send().await.unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (status, etag, cache) = (
        res.status().as_u16(),
        header("etag"),
        header("cache-control"),
    );
    (status, etag, cache, res.text().await.unwrap())
}

#[tokio::test]
async fn pem_and_jwks_carry_content_etags_that_revalidate_to_304() {
    let app = crate::helpers::spawn_app().await;
    let created = app
        .create_caller(serde_json::json!({"name": "svc-a"}))
        .await;
    let kid = created["kid"].as_str().unwrap();
    let replica = crate::helpers::spawn_replica(&app, |_| {}).await;

    for path in [
        format!("/v1/keys/{kid}"),
        "/.well-known/jwks.json".to_owned(),
    ] {
        let (status, etag, cache, body) = conditional_get(&app, &path, None).await;
        assert_eq!(status, 200);
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 20,
            "{etag}"
        );
        assert!(cache.contains("max-age"), "{cache}");
        // Derived from the content: another replica gives the same tag.
        let (_, other_etag, _, other_body) = conditional_get(&replica, &path, None).await;
        assert_eq!((&other_etag, &other_body), (&etag, &body), "{path}");

        for tag in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"x\", {etag}"),
            // Items that do not parse are skipped, not the whole header.
            format!("unquoted, {etag}"),
            "*".into(),
        ] {
            let (status, again, cache_304, body) = conditional_get(&app, &path, Some(&tag)).await;
            assert_eq!(status, 304, "{path} If-None-Match: {tag}");
            assert_eq!(
                (again.as_str(), cache_304.as_str()),
                (etag.as_str(), cache.as_str())
            );
            assert!(body.is_empty());
        }
        for other in ["\"stale\"", "unquoted", ""] {
            let (status, _, _, body) = conditional_get(&app, &path, Some(other)).await;
            assert_eq!(status, 200, "If-None-Match: {other}");
            assert!(!body.is_empty());
        }
    }

    // A new key changes the JWKS and its tag; the old tag gets the new body.
    let (_, before, _, _) = conditional_get(&app, "/.well-known/jwks.json", None).await;
    app.create_caller(serde_json::json!({"name": "svc-b"}))
        .await;
    let (status, after, _, body) =
        conditional_get(&app, "/.well-known/jwks.json", Some(&before)).await;
    assert_eq!(status, 200);
    assert_ne!(after, before);
    let kids: Vec<String> = serde_json::from_str::<serde_json::Value>(&body).unwrap()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = kids.clone();
    sorted.sort();
    assert_eq!(kids, sorted, "the JWKS is sorted by kid");
}

/// A replica that has not heard of a key yet (SQLite: never; PostgreSQL:
/// until the notification arrives) still serves it, from the database, the
/// moment another replica signs with it; revoked and unknown kids stay 404.
#[tokio::test]
async fn a_replica_serves_a_key_published_through_another_one_at_once() {
    let no_refresh = |s: &mut asapd::config::Settings| s.keys.refresh_interval_secs = 3600;
    let a = crate::helpers::spawn_app_with(no_refresh).await;
    let b = crate::helpers::spawn_replica(&a, no_refresh).await;
    a.create_caller(json!({"name": "svc-a"})).await;
    let rotated: Value = a
        .admin(Method::POST, "/v1/admin/callers/svc-a/keys/rotate")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = rotated["kid"].as_str().unwrap();
    let path = format!("/v1/keys/{kid}");
    let (status, etag, _, pem) = conditional_get(&b, &path, None).await;
    assert_eq!(status, 200, "B serves {kid}");
    let (_, etag_a, _, pem_a) = conditional_get(&a, &path, None).await;
    assert_eq!((etag, pem), (etag_a, pem_a));

    let res = a
        .admin(Method::POST, &format!("/v1/admin/keys/{kid}/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // B may still hold it in its ring until it reloads (PostgreSQL: the
    // notification; SQLite: never here), but A never serves it again, and
    // a kid that was never published is not found anywhere.
    assert_eq!(conditional_get(&a, &path, None).await.0, 404);
    assert_eq!(
        conditional_get(&b, "/v1/keys/svc-a/never", None).await.0,
        404
    );
}
