//! Request binding: `POST /v1/tokens` with `request` puts Connect's `qsh`
//! in the token, and `asapd verify --method --url` checks it.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};
use crate::process::asapd_bare;
use crate::token_support::detail;

/// (method, url, qsh) as npm atlassian-jwt 2.0.3 computes it
/// (`tests/interop/qsh/npm_qsh.js`); the interop tests check many more.
const NPM_VECTORS: [(&str, &str, &str); 6] = [
    (
        "get",
        "/rest/api/2/project?expand=description",
        "5c34bdef622bb932aa55be056710c341fa076d52a498538a29194c45853af8ad",
    ),
    (
        "GET",
        "/search?q=1&jwt=abc.def.ghi&a=2",
        "ceb80607e87bf48a657698bcce28c1c3777b154b4609d630090f5498965e199c",
    ),
    (
        "GET",
        "/search?x=2&x=1&x=10&x=1",
        "44486f34eba62d9546338d68df5c412f112cdc0e5f70e8d990e1740445dafde9",
    ),
    (
        "GET",
        "/search?q=ü€😀&ключ=значение",
        "704af5b23db147f88cd4025a8e0224602a3ca55f5927dcf0a2b7412af6971d61",
    ),
    (
        "POST",
        "/rest/api/2/issue/",
        "43dd1779e33c34fae00c308d62e5dd153a32147d1bcb5d40b3936457fda0ece4",
    ),
    (
        "GET",
        "/search?q=hello+world",
        "5f82885d91897f62bf0f113d7a99ae27fbc9d7915c5d728b724f3e7f93df86e6",
    ),
];

#[tokio::test]
async fn a_token_bound_to_a_request_carries_its_connect_qsh() {
    let app = spawn_app().await;
    let caller = app.caller_granted("svc-a", &["svc-b"]).await;
    for (method, url, qsh) in NPM_VECTORS {
        let res = app
            .token_request(
                &caller,
                json!({"audience": "svc-b", "request": {"method": method, "url": url}}),
            )
            .await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{method} {url}: {body}");
        assert_eq!(body["qsh"], qsh, "{method} {url}: the answer");
        let (_, claims) = app.verify(body["token"].as_str().unwrap(), "svc-b").await;
        assert_eq!(claims["qsh"], qsh, "{method} {url}: the claim");
    }

    let plain = app.token(&caller, "svc-b").await;
    let (_, claims) = app.verify(&plain, "svc-b").await;
    assert!(claims.get("qsh").is_none(), "no request, no qsh: {claims}");

    // The audit record keeps the hash, never the URL (a query may hold secrets).
    let rows = app.audit_rows("token.issued").await;
    let bound = detail(&rows[1]);
    assert_eq!(bound["qsh"], NPM_VECTORS[5].2);
    assert!(!rows[1].detail.contains("hello"), "{}", rows[1].detail);
    assert_eq!(detail(&rows[0])["qsh"], Value::Null);
}

#[tokio::test]
async fn a_request_asapd_cannot_hash_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let caller = app.caller_granted("svc-a", &["svc-b"]).await;
    let cases = [
        (json!({"method": "", "url": "/a"}), "request.method"),
        (json!({"method": "GE T", "url": "/a"}), "request.method"),
        (
            json!({"method": "GET", "url": "https://host/a"}),
            "request.url",
        ),
        (json!({"method": "GET", "url": "//host/a"}), "request.url"),
        (json!({"method": "GET", "url": "/a b"}), "request.url"),
        (json!({"method": "GET", "url": "/a\\b"}), "request.url"),
        (json!({"method": "GET", "url": "/a?q=100%"}), "request.url"),
        (json!({"method": "GET", "url": "/a?q=%FF"}), "request.url"),
        (
            json!({"method": "GET", "url": format!("/{}", "a".repeat(9000))}),
            "request.url",
        ),
        (json!({"method": "GET"}), "request"),
        (
            json!({"method": "GET", "url": "/a", "body": "x"}),
            "request",
        ),
        (json!("GET /a"), "request"),
    ];
    for (request, field) in cases {
        let res = app
            .token_request(&caller, json!({"audience": "svc-b", "request": request}))
            .await;
        let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
        let named = problem["field"].as_str().unwrap_or_default();
        assert!(
            named.starts_with(field),
            "{request}: field {named:?}, want {field}: {problem}"
        );
    }

    // asapd sets qsh from request; a claims.qsh beside it is refused.
    let res = app
        .token_request(
            &caller,
            json!({"audience": "svc-b", "claims": {"qsh": "x"},
                   "request": {"method": "GET", "url": "/a"}}),
        )
        .await;
    let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["field"], "claims.qsh");
}

#[tokio::test]
async fn asapd_verify_checks_qsh_against_method_and_url() {
    let app = spawn_app().await;
    let caller = app.caller_granted("svc-a", &["svc-b"]).await;
    let res = app
        .token_request(
            &caller,
            json!({"audience": "svc-b",
                   "request": {"method": "GET", "url": "/issues?b=2&a=1"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let bound: Value = res.json().await.unwrap();
    let bound = bound["token"].as_str().unwrap().to_owned();
    let plain = app.token(&caller, "svc-b").await;
    let repository = app.url("/v1/keys/");

    let verify = |token: &str, request: &[&str]| {
        let mut args = vec!["verify", "--repository", &repository, "--audience", "svc-b"];
        args.extend_from_slice(request);
        args.push(token);
        // The app serves on this runtime: the process must not block it.
        let mut cmd = asapd_bare(&args);
        async move {
            let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    // The same request, written differently: the canonical form matches.
    let (ok, err) = verify(&bound, &["--method", "get", "--url", "/issues/?a=1&b=2"]).await;
    assert!(ok, "{err}");
    let (ok, err) = verify(&bound, &["--method", "GET", "--url", "/issues?a=1&b=3"]).await;
    assert!(!ok && err.contains("qsh"), "another query: {err}");
    let (ok, err) = verify(&bound, &["--method", "POST", "--url", "/issues?a=1&b=2"]).await;
    assert!(!ok && err.contains("qsh"), "another method: {err}");
    let (ok, err) = verify(&plain, &["--method", "GET", "--url", "/issues?a=1&b=2"]).await;
    assert!(!ok && err.contains("no qsh"), "an unbound token: {err}");
    let (ok, err) = verify(&bound, &["--method", "GET", "--url", "/a b"]).await;
    assert!(!ok && err.contains("--url"), "a bad --url: {err}");
    // Without --method/--url qsh is not checked, as ASAP verifiers do not.
    let (ok, err) = verify(&bound, &[]).await;
    assert!(ok, "{err}");
}
