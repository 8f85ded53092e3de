//! Workload identity federation: trusted issuers, bindings, and tokens of a
//! stand-in OIDC issuer (Kubernetes and GitHub Actions claims) exchanged at
//! `/oauth2/token` (RFC 8693) or presented as Bearer on `/v1/tokens`.

use std::sync::atomic::Ordering;

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, TestApp};
use crate::oidc_issuer::{now, OidcIssuer};
use crate::token_support::detail;

const LEDGER_SUB: &str = "system:serviceaccount:payments:ledger";

/// An app trusting a stand-in issuer as `k8s` (audience `asapd`), with
/// caller `ledger` bound to the `payments:ledger` service account and
/// granted audience `svc-b`.
struct Fed {
    app: TestApp,
    issuer: OidcIssuer,
}

async fn setup() -> Fed {
    setup_on(asapd::clock::Clock::System).await
}

async fn setup_on(clock: asapd::clock::Clock) -> Fed {
    let issuer = OidcIssuer::start().await;
    let app = crate::helpers::spawn_app_with_clock(clock, |_| {}).await;
    trust(&app, "k8s", &issuer).await;
    app.group(json!({"name": "g-ledger", "audiences": ["svc-b"], "max_lifetime": 600}))
        .await;
    app.caller(
        "ledger",
        json!({"groups": ["g-ledger"], "federated": [{"issuer": "k8s", "subject": LEDGER_SUB}]}),
    )
    .await;
    Fed { app, issuer }
}

/// Trusts `issuer` as `name` (OIDC Discovery, its CA as `ca_pem`).
async fn trust(app: &TestApp, name: &str, issuer: &OidcIssuer) {
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/issuers",
            json!({"name": name, "issuer": issuer.url, "ca_pem": issuer.ca_pem, "audiences": ["asapd"]}),
        )
        .await;
    let status = res.status();
    assert_eq!(status, StatusCode::CREATED, "{}", res.text().await.unwrap());
}

async fn exchange(app: &TestApp, token: &str, audience: &str) -> Response {
    let form = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", token),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("audience", audience),
    ];
    app.request(Method::POST, "/oauth2/token")
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn bearer(app: &TestApp, token: &str, audience: &str) -> Response {
    app.request(Method::POST, "/v1/tokens")
        .bearer_auth(token)
        .json(&json!({ "audience": audience }))
        .send()
        .await
        .unwrap()
}

/// The exchange is refused as `invalid_grant`, and audited as
/// `auth.failed` with what the token claimed; returns the description.
async fn assert_refused(fed: &Fed, token: &str, expect: &str) -> String {
    let res = exchange(&fed.app, token, "svc-b").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let description = body["error_description"].as_str().unwrap().to_owned();
    assert!(
        description.contains(expect),
        "{description:?} lacks {expect:?}"
    );
    let failed = fed.app.audit_rows("auth.failed").await;
    let last = detail(failed.first().expect("auth.failed recorded"));
    assert_eq!(last["reason"], "invalid_token");
    assert!(
        !failed[0].detail.contains(token),
        "the token itself is never audited"
    );
    description
}

/// The `auth` detail of the newest `token.issued` record, and the record.
async fn last_issued_auth(app: &TestApp) -> (Value, String) {
    let rows = app.audit_rows("token.issued").await;
    let row = rows.first().expect("a token.issued record");
    (detail(row)["auth"].clone(), row.detail.clone())
}

#[tokio::test]
async fn issuers_are_managed_validated_and_audited() {
    let issuer = OidcIssuer::start().await;
    let app = spawn_app().await;
    let post = |body: Value| app.admin_json(Method::POST, "/v1/admin/issuers", body);
    let missing = post(json!({"name": "k8s", "issuer": issuer.url})).await;
    assert_eq!(
        assert_problem(missing, StatusCode::BAD_REQUEST).await["field"],
        "audiences"
    );
    let empty = post(json!({"name": "k8s", "issuer": issuer.url, "audiences": []})).await;
    assert_eq!(
        assert_problem(empty, StatusCode::BAD_REQUEST).await["field"],
        "audiences"
    );
    let http = post(json!({"name": "k8s", "issuer": "http://k8s", "audiences": ["asapd"]})).await;
    assert_eq!(
        assert_problem(http, StatusCode::BAD_REQUEST).await["field"],
        "issuer"
    );
    let bad_ca =
        post(json!({"name": "k8s", "issuer": issuer.url, "audiences": ["asapd"], "ca_pem": "x"}))
            .await;
    assert_eq!(
        assert_problem(bad_ca, StatusCode::BAD_REQUEST).await["field"],
        "ca_pem"
    );
    let old = post(json!({"name": "k8s", "issuer": issuer.url, "audiences": ["asapd"], "max_token_age_secs": 1})).await;
    assert_problem(old, StatusCode::BAD_REQUEST).await;

    trust(&app, "k8s", &issuer).await;
    let same_iss =
        post(json!({"name": "k8s-2", "issuer": issuer.url, "audiences": ["asapd"]})).await;
    assert_problem(same_iss, StatusCode::CONFLICT).await;
    let listed = app.admin_get_json("/v1/admin/issuers").await;
    assert_eq!(listed[0]["name"], "k8s");
    assert_eq!(listed[0]["max_token_age_secs"], 3600);
    let put = app
        .admin_json(
            Method::PUT,
            "/v1/admin/issuers/k8s",
            json!({"issuer": issuer.url, "ca_pem": issuer.ca_pem, "audiences": ["asapd", "vault"], "max_token_age_secs": 600}),
        )
        .await;
    assert_eq!(put.status(), StatusCode::OK);
    let shown = app.admin_get_json("/v1/admin/issuers/k8s").await;
    assert_eq!(shown["audiences"], json!(["asapd", "vault"]));
    assert_eq!(shown["max_token_age_secs"], 600);

    let unknown = app
        .admin_json(
            Method::POST,
            "/v1/admin/callers",
            json!({"name": "c", "federated": [{"issuer": "nope", "subject": "s"}]}),
        )
        .await;
    assert_eq!(
        assert_problem(unknown, StatusCode::BAD_REQUEST).await["field"],
        "federated[0].issuer"
    );
    app.caller(
        "c",
        json!({"federated": [{"issuer": "k8s", "subject": "s"}]}),
    )
    .await;
    let shown = app.admin_get_json("/v1/admin/callers/c").await;
    assert_eq!(
        shown["federated"],
        json!([{"issuer": "k8s", "subject": "s"}])
    );
    let bound = app
        .admin(Method::DELETE, "/v1/admin/issuers/k8s")
        .send()
        .await
        .unwrap();
    assert_problem(bound, StatusCode::CONFLICT).await;
    let unbind = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/c",
            json!({"federated": []}),
        )
        .await;
    assert_eq!(unbind.status(), StatusCode::OK);
    let gone = app
        .admin(Method::DELETE, "/v1/admin/issuers/k8s")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    for action in ["issuer.created", "issuer.updated", "issuer.deleted"] {
        let rows = app.audit(&format!("action={action}")).await;
        assert_eq!(rows.len(), 1, "{action}");
        assert_eq!(rows[0]["target"], "issuer:k8s");
    }
}

#[tokio::test]
async fn a_kubernetes_token_is_exchanged_for_an_asap_token() {
    let fed = setup().await;
    let token = fed
        .issuer
        .sign(&fed.issuer.kubernetes_claims("payments", "ledger", "asapd"));
    let res = exchange(&fed.app, &token, "svc-b").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(body["token_type"], "Bearer");
    let (_, claims) = fed
        .app
        .verify(body["access_token"].as_str().unwrap(), "svc-b")
        .await;
    assert_eq!(claims["iss"], "ledger");

    let (auth, record) = last_issued_auth(&fed.app).await;
    assert_eq!(auth["method"], "federated:k8s");
    assert_eq!(auth["presented"]["iss"], fed.issuer.url.as_str());
    assert_eq!(auth["presented"]["sub"], LEDGER_SUB);
    assert!(!record.contains(&token));
    // Cached: a second token costs no fetch.
    let again = fed
        .issuer
        .sign(&fed.issuer.kubernetes_claims("payments", "ledger", "asapd"));
    assert_eq!(
        exchange(&fed.app, &again, "svc-b").await.status(),
        StatusCode::OK
    );
    assert_eq!(fed.issuer.jwks_fetches.load(Ordering::SeqCst), 1);
    assert_eq!(
        fed.app.metric(
            "asapd_federation_jwks_fetches_total",
            &["issuer=\"k8s\"", "outcome=\"ok\""]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_github_actions_token_is_a_bearer_credential_on_v1_tokens() {
    let fed = setup().await;
    let github = OidcIssuer::start().await;
    trust(&fed.app, "github", &github).await;
    fed.app
        .caller(
            "deployer",
            json!({"groups": ["g-ledger"], "federated": [{
                "issuer": "github",
                "subject": "repo:org/repo:ref:refs/heads/main",
                "claims": {"repository": "org/repo", "environment": "production"}
            }]}),
        )
        .await;
    let claims = github.github_claims("org/repo", "refs/heads/main", "asapd");
    let res = bearer(&fed.app, &github.sign(&claims), "svc-b").await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, issued) = fed
        .app
        .verify(body["token"].as_str().unwrap(), "svc-b")
        .await;
    assert_eq!(issued["iss"], "deployer");
    let (auth, _) = last_issued_auth(&fed.app).await;
    assert_eq!(auth["method"], "federated:github");
    assert_eq!(auth["presented"]["jti"], claims["jti"]);
}

/// A workload's token is a presented JWT like any other: it also
/// authenticates as an RFC 7523 client assertion on the client-credentials
/// grant.
#[tokio::test]
async fn a_kubernetes_token_is_accepted_as_a_client_assertion() {
    let fed = setup().await;
    let token = fed
        .issuer
        .sign(&fed.issuer.kubernetes_claims("payments", "ledger", "asapd"));
    let res = fed
        .app
        .request(Method::POST, "/oauth2/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("audience", "svc-b"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &token),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("issued_token_type").is_none(), "{body}");
    let (_, claims) = fed
        .app
        .verify(body["access_token"].as_str().unwrap(), "svc-b")
        .await;
    assert_eq!(claims["iss"], "ledger");
    let (auth, _) = last_issued_auth(&fed.app).await;
    assert_eq!(auth["method"], "federated:k8s");
}

/// Kubernetes claims for `payments:ledger`, changed by `edit`.
fn ledger_claims(fed: &Fed, edit: impl FnOnce(&mut Value)) -> Value {
    let mut claims = fed.issuer.kubernetes_claims("payments", "ledger", "asapd");
    edit(&mut claims);
    claims
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let fed = setup().await;
    let token = fed
        .issuer
        .sign(&ledger_claims(&fed, |c| c["aud"] = json!(["vault"])));
    assert_refused(&fed, &token, "aud").await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let fed = setup().await;
    let token = fed.issuer.sign(&ledger_claims(&fed, |c| {
        c["iat"] = json!(now() - 700);
        c["nbf"] = json!(now() - 700);
        c["exp"] = json!(now() - 100);
    }));
    assert_refused(&fed, &token, "expired").await;
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused() {
    let fed = setup().await;
    let token = fed
        .issuer
        .sign(&ledger_claims(&fed, |c| c["nbf"] = json!(now() + 600)));
    assert_refused(&fed, &token, "not valid yet").await;
}

#[tokio::test]
async fn a_token_older_than_the_issuers_limit_is_refused() {
    let fed = setup().await;
    let token = fed.issuer.sign(&ledger_claims(&fed, |c| {
        c["iat"] = json!(now() - 2 * 3600);
        c["nbf"] = json!(now() - 2 * 3600);
        c["exp"] = json!(now() + 3600);
    }));
    assert_refused(&fed, &token, "older than").await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let fed = setup().await;
    let claims = ledger_claims(&fed, |_| {});
    let header = json!({"alg": "none", "typ": "JWT", "kid": fed.issuer.kid()});
    let token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    assert_refused(&fed, &token, "alg none").await;
}

#[tokio::test]
async fn hs256_signed_with_the_issuers_public_key_is_refused() {
    let fed = setup().await;
    let claims = ledger_claims(&fed, |_| {});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(fed.issuer.kid());
    let key = jsonwebtoken::EncodingKey::from_secret(fed.issuer.public_pem().as_bytes());
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    assert_refused(&fed, &token, "HS256").await;
}

#[tokio::test]
async fn an_unknown_kid_is_refused_after_one_refetch() {
    let fed = setup().await;
    let good = fed.issuer.sign(&ledger_claims(&fed, |_| {}));
    assert_eq!(
        exchange(&fed.app, &good, "svc-b").await.status(),
        StatusCode::OK
    );
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "forged"});
    let forged = fed
        .issuer
        .sign_with_header(&header, &ledger_claims(&fed, |_| {}));
    assert_refused(&fed, &forged, "no key with kid").await;
    assert_refused(&fed, &forged, "no key with kid").await;
    // One refetch for the unknown kid, then none until the interval passes.
    assert_eq!(fed.issuer.jwks_fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_issuers_new_key_is_fetched_when_it_rotates() {
    let fed = setup().await;
    let first = fed.issuer.sign(&ledger_claims(&fed, |_| {}));
    assert_eq!(
        exchange(&fed.app, &first, "svc-b").await.status(),
        StatusCode::OK
    );
    fed.issuer.rotate();
    let rotated = fed.issuer.sign(&ledger_claims(&fed, |_| {}));
    let res = exchange(&fed.app, &rotated, "svc-b").await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    assert_eq!(fed.issuer.jwks_fetches.load(Ordering::SeqCst), 2);
    assert_eq!(fed.issuer.discovery_fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_token_of_an_untrusted_issuer_is_refused() {
    let fed = setup().await;
    let stranger = OidcIssuer::start().await;
    let token = stranger.sign(&stranger.kubernetes_claims("payments", "ledger", "asapd"));
    assert_refused(&fed, &token, "neither a trusted issuer").await;
    assert_eq!(stranger.jwks_fetches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_subject_bound_to_no_caller_is_refused() {
    let fed = setup().await;
    let token = fed.issuer.sign(
        &fed.issuer
            .kubernetes_claims("payments", "intruder", "asapd"),
    );
    assert_refused(&fed, &token, "no caller is bound").await;
}

#[tokio::test]
async fn claims_that_differ_from_the_binding_are_refused() {
    let fed = setup().await;
    let patch = json!({"federated": [{"issuer": "k8s", "subject": LEDGER_SUB,
        "claims": {"kubernetes.io": {"namespace": "payments",
            "pod": {"name": "ledger-0", "uid": "u"}, "serviceaccount": {"name": "ledger", "uid": "u"}}}}]});
    let res = fed
        .app
        .admin_json(Method::PATCH, "/v1/admin/callers/ledger", patch)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let token = fed.issuer.sign(&ledger_claims(&fed, |_| {}));
    assert_refused(&fed, &token, "no caller is bound").await;
}

#[tokio::test]
async fn an_identity_bound_to_two_callers_is_refused() {
    let fed = setup().await;
    fed.app
        .caller(
            "ledger-twin",
            json!({"federated": [{"issuer": "k8s", "subject": LEDGER_SUB}]}),
        )
        .await;
    let token = fed.issuer.sign(&ledger_claims(&fed, |_| {}));
    assert_refused(&fed, &token, "bound to 2 callers").await;
}

#[tokio::test]
async fn an_issuer_down_with_no_cached_keys_answers_503() {
    let app = spawn_app().await;
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://localhost:{port}");
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/issuers",
            json!({"name": "down", "issuer": url, "audiences": ["asapd"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    app.caller(
        "c",
        json!({"federated": [{"issuer": "down", "subject": "s"}]}),
    )
    .await;
    let stand_in = OidcIssuer::start().await;
    let mut claims = stand_in.kubernetes_claims("payments", "ledger", "asapd");
    claims["iss"] = json!(url);
    let token = stand_in.sign(&claims);
    let problem = assert_problem(
        bearer(&app, &token, "svc-b").await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("trusted issuer down"),
        "{problem}"
    );
    let res = exchange(&app, &token, "svc-b").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
}

#[tokio::test]
async fn an_asapd_trusts_another_asapds_asap_tokens() {
    // Fleet B, over HTTPS, issues an ASAP token to its caller svc-remote
    // for audience asapd-a; fleet A trusts B's JWKS for that issuer.
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    asapd::crypto::tls::ensure_dev_certificate(&cert, &key).unwrap();
    let fleet_b = crate::helpers::spawn_app_with(|s| {
        s.tls_cert = Some(cert.clone());
        s.tls_key = Some(key.clone());
    })
    .await;
    let ca_pem = std::fs::read_to_string(&cert).unwrap();
    let b_url = fleet_b
        .address
        .replace("http://127.0.0.1", "https://localhost");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let admin = |method: Method, path: &str| {
        client
            .request(method, format!("{b_url}{path}"))
            .basic_auth("admin", Some(&fleet_b.admin_secret))
    };
    let group = json!({"name": "to-a", "audiences": ["asapd-a"], "max_lifetime": 600});
    let res = admin(Method::POST, "/v1/admin/groups")
        .json(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = admin(Method::POST, "/v1/admin/callers")
        .json(&json!({"name": "svc-remote", "groups": ["to-a"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let asap: Value = client
        .post(format!("{b_url}/v1/tokens"))
        .basic_auth("svc-remote", created["client_secret"].as_str())
        .json(&json!({"audience": "asapd-a"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let asap = asap["token"].as_str().expect("fleet B issued a token");

    let fleet_a = spawn_app().await;
    let res = fleet_a
        .admin_json(
            Method::POST,
            "/v1/admin/issuers",
            json!({"name": "fleet-b-svc-remote", "issuer": "svc-remote",
                   "jwks_uri": format!("{b_url}/.well-known/jwks.json"),
                   "ca_pem": ca_pem, "audiences": ["asapd-a"]}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
    fleet_a
        .group(json!({"name": "g-remote", "audiences": ["svc-b"], "max_lifetime": 600}))
        .await;
    fleet_a
        .caller(
            "remote",
            json!({"groups": ["g-remote"],
                   "federated": [{"issuer": "fleet-b-svc-remote", "subject": "svc-remote"}]}),
        )
        .await;
    let res = exchange(&fleet_a, asap, "svc-b").await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, claims) = fleet_a
        .verify(body["access_token"].as_str().unwrap(), "svc-b")
        .await;
    assert_eq!(claims["iss"], "remote");
}

#[tokio::test]
#[ignore = "needs PostgreSQL (make test-postgres)"]
async fn an_issuer_and_binding_made_on_one_replica_work_on_another_within_a_second() {
    crate::helpers::require_postgres();
    let issuer = OidcIssuer::start().await;
    // No periodic reload: only the change notification can tell B.
    let no_refresh = |s: &mut asapd::config::Settings| s.keys.refresh_interval_secs = 86_400;
    let a = crate::helpers::spawn_app_with(no_refresh).await;
    let b = crate::helpers::spawn_replica(&a, no_refresh).await;
    // B has looked at the (empty) set of issuers, so it holds a snapshot.
    let token = issuer.sign(&issuer.kubernetes_claims("payments", "ledger", "asapd"));
    assert_eq!(
        exchange(&b, &token, "svc-b").await.status(),
        StatusCode::BAD_REQUEST
    );

    trust(&a, "k8s", &issuer).await;
    a.group(json!({"name": "g-ledger", "audiences": ["svc-b"], "max_lifetime": 600}))
        .await;
    a.caller(
        "ledger",
        json!({"groups": ["g-ledger"], "federated": [{"issuer": "k8s", "subject": LEDGER_SUB}]}),
    )
    .await;
    let committed = std::time::Instant::now();
    crate::replicas::eventually("B accepts the issuer and binding made on A", || async {
        // A fresh token each time; the few refusals stay far below the
        // failed-authentication limit.
        let token = issuer.sign(&issuer.kubernetes_claims("payments", "ledger", "asapd"));
        exchange(&b, &token, "svc-b").await.status() == StatusCode::OK
    })
    .await;
    let took = committed.elapsed();
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn keys_are_cached_for_their_max_age_then_served_stale_while_the_issuer_is_down() {
    let clock = asapd::clock::Clock::manual(now());
    let fed = setup_on(clock.clone()).await;
    // Claims issued at the app's (manual) time.
    let at = |offset: i64| {
        let mut claims = fed.issuer.kubernetes_claims("payments", "ledger", "asapd");
        for name in ["iat", "nbf"] {
            claims[name] = json!(claims[name].as_i64().unwrap() + offset);
        }
        claims["exp"] = json!(claims["exp"].as_i64().unwrap() + offset);
        fed.issuer.sign(&claims)
    };
    let fetches = || fed.issuer.jwks_fetches.load(Ordering::SeqCst);
    assert_eq!(
        exchange(&fed.app, &at(0), "svc-b").await.status(),
        StatusCode::OK
    );
    // The stand-in says max-age=300.
    clock.advance(299);
    assert_eq!(
        exchange(&fed.app, &at(299), "svc-b").await.status(),
        StatusCode::OK
    );
    assert_eq!(fetches(), 1, "served from the cache within max-age");
    clock.advance(2);
    assert_eq!(
        exchange(&fed.app, &at(301), "svc-b").await.status(),
        StatusCode::OK
    );
    assert_eq!(fetches(), 2, "fetched again once max-age passed");

    // The issuer goes away: the last good set serves for jwks_stale_secs
    // (6 h) past its expiry, then the answer is 503.
    let stale_token = at(301 + 600);
    let late_token = at(301 + 300 + 6 * 3600 + 60);
    let app = fed.app;
    drop(fed.issuer);
    clock.advance(600);
    let res = exchange(&app, &stale_token, "svc-b").await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    assert_eq!(
        app.metric(
            "asapd_federation_jwks_fetches_total",
            &["issuer=\"k8s\"", "outcome=\"stale\""]
        ),
        Some(1.0)
    );
    clock.advance(300 + 6 * 3600 - 600 + 60);
    let res = exchange(&app, &late_token, "svc-b").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error_description"].as_str().unwrap().contains("k8s"),
        "{body}"
    );
}

#[tokio::test]
async fn a_token_presented_again_has_its_claims_checked_again() {
    // Its signature is checked once per key set; its time every time.
    let clock = asapd::clock::Clock::manual(now());
    let fed = setup_on(clock.clone()).await;
    let token = fed.issuer.sign(&ledger_claims(&fed, |c| {
        c["exp"] = json!(now() + 60);
    }));
    for _ in 0..2 {
        assert_eq!(
            exchange(&fed.app, &token, "svc-b").await.status(),
            StatusCode::OK
        );
    }
    clock.advance(100);
    assert_refused(&fed, &token, "expired").await;
    // A token that failed once fails again: nothing of it was kept.
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_refused(&fed, &forged, "signature").await;
    assert_refused(&fed, &forged, "signature").await;
}
