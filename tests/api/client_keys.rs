//! Key-bound callers (RFC 7523 `private_key_jwt`): client keys through the
//! admin API, assertions at `POST /oauth2/token`, each refusal, replays on
//! one app and across replicas, and the RFC 8414 server metadata.

use std::time::{Duration, Instant};

use asapd::clock::Clock;
use asapd::crypto::{JwsSigner, KeyPair};
use asapd::domain::algorithm::Algorithm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, require_postgres, spawn_app_with_clock, spawn_replica, TestApp,
};
use crate::token_support::Caller;

/// Fixed time, so every claim below is exact.
const NOW: i64 = 1_900_000_000;
const PUBLIC_URL: &str = "https://asapd.example.test";
const TOKEN_ENDPOINT: &str = "https://asapd.example.test/oauth2/token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const RSA_1024_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCqha12kkZ6lsGkzOwAAoDlSrml
dWvvo82OHOFTo2Kt4asXfm5YUzlj5ykevzP1bhARpSTgWkrFZCxQYoF/tuWuqiUV
IwCMjqrzvYkMMjbQViTPyD/ngwfS3ucGDvNSOrsIrkjqMZXKNMfjX0inq5Xaq0ZA
3oj9D6pjZyUoUj7hdwIDAQAB
-----END PUBLIC KEY-----
";

async fn app() -> TestApp {
    spawn_app_with_clock(Clock::manual(NOW), |s| {
        s.http.public_url = Some(PUBLIC_URL.into());
    })
    .await
}

fn keys_path(caller: &str) -> String {
    format!("/v1/admin/callers/{caller}/client-keys")
}

/// Registers `public_key` for `caller`; the answer's status and body.
async fn register(app: &TestApp, caller: &str, public_key: Value) -> (StatusCode, Value) {
    let res = app
        .admin_json(
            Method::POST,
            &keys_path(caller),
            json!({ "public_key": public_key }),
        )
        .await;
    (res.status(), res.json().await.unwrap())
}

/// A caller granted svc-b, with a registered ES256 key: its signer (the
/// header's kid is the key's id) and that id.
async fn key_bound(app: &TestApp, name: &str) -> (Caller, JwsSigner, String) {
    let caller = app.caller_granted(name, &["svc-b"]).await;
    let pair = KeyPair::generate(Algorithm::ES256).unwrap();
    let (status, body) = register(app, name, json!(pair.public.pem)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    (caller, JwsSigner::new(id.clone(), pair), id)
}

/// The key pair behind a test's own (software) signer.
fn software(signer: &JwsSigner) -> &KeyPair {
    match &signer.key {
        asapd::crypto::Signer::Software(pair) => pair,
        other => panic!("a test signer holds its key in memory, not {other:?}"),
    }
}

/// The claims of a good assertion by `iss`, for asapd's token endpoint.
fn claims(iss: &str, jti: &str) -> Value {
    json!({ "iss": iss, "sub": iss, "aud": TOKEN_ENDPOINT, "jti": jti,
            "iat": NOW, "nbf": NOW, "exp": NOW + 60 })
}

/// `POST /oauth2/token` with `assertion` as client authentication.
async fn with_assertion(app: &TestApp, assertion: &str) -> Response {
    app.request(Method::POST, "/oauth2/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("audience", "svc-b"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap()
}

/// Asserts an `invalid_client` refusal; returns its description.
async fn refused(res: Response) -> String {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client", "{body}");
    body["error_description"].as_str().unwrap().to_owned()
}

async fn issued(res: Response) -> Value {
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// `b64(header).b64(claims).` + a signature given as bytes.
fn unsigned(header: Value, claims: &Value, signature: &[u8]) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!(
        "{}.{}.{}",
        enc(&header),
        enc(claims),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[tokio::test]
async fn pem_and_jwk_keys_register_list_and_delete() {
    let app = app().await;
    app.caller_granted("svc-a", &["svc-b"]).await;
    let ec = KeyPair::generate(Algorithm::ES256).unwrap();
    let (status, pem) = register(&app, "svc-a", json!(ec.public.pem)).await;
    assert_eq!(status, StatusCode::CREATED, "{pem}");
    assert_eq!(pem["family"], "P-256");
    assert_eq!(pem["public_key_pem"], ec.public.pem.as_str());
    // The same key as a JWK is the same key: one id, and a conflict.
    let (status, again) = register(&app, "svc-a", ec.public.jwk("x", Algorithm::ES256)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    let p384 = KeyPair::generate(Algorithm::ES384).unwrap();
    let jwk = p384.public.jwk_members.clone();
    let (status, from_jwk) = register(&app, "svc-a", jwk).await;
    assert_eq!(status, StatusCode::CREATED, "{from_jwk}");
    assert_eq!(from_jwk["family"], "P-384");

    let listed = app.admin_get_json(&keys_path("svc-a")).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&pem["id"].as_str().unwrap()));

    let id = from_jwk["id"].as_str().unwrap();
    let path = format!("{}/{id}", keys_path("svc-a"));
    let res = app.admin(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.admin(Method::DELETE, &path).send().await.unwrap();
    assert_problem(res, StatusCode::NOT_FOUND).await;
    let added = app.audit("action=client_key.added").await;
    assert_eq!(added.len(), 2);
    assert_eq!(added[0]["target"], "caller:svc-a");
    assert_eq!(app.audit("action=client_key.deleted").await.len(), 1);
    let res = app.admin_get(&keys_path("nobody")).await;
    assert_problem(res, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn bad_keys_are_refused_naming_the_field() {
    let app = app().await;
    app.caller_granted("svc-a", &["svc-b"]).await;
    let ec = KeyPair::generate(Algorithm::ES256).unwrap();
    let mut private_jwk = ec.public.jwk("x", Algorithm::ES256);
    private_jwk["d"] = json!("AAAA");
    let cases = [
        (json!(RSA_1024_PEM), "public_key", "1024 bits"),
        (private_jwk, "public_key.d", "private"),
        (
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            "public_key.k",
            "private",
        ),
        (json!({"kty": "oct"}), "public_key.kty", "symmetric"),
        (
            json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"}),
            "public_key.kty",
            "not supported",
        ),
        (
            json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            "public_key",
            "private key",
        ),
        (json!("not a key"), "public_key", "PEM"),
        (json!(7), "public_key", "PEM"),
    ];
    for (public_key, field, says) in cases {
        let res = app
            .admin_json(
                Method::POST,
                &keys_path("svc-a"),
                json!({ "public_key": public_key }),
            )
            .await;
        let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["field"], field, "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{detail}");
        assert!(!detail.contains("AAAA"), "the key is not echoed: {detail}");
    }
    let res = app
        .admin_json(Method::POST, &keys_path("svc-a"), json!({}))
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn a_signed_assertion_gets_a_token_and_is_audited_without_the_assertion() {
    let app = app().await;
    let (_, signer, id) = key_bound(&app, "svc-a").await;
    let assertion = signer.sign(&claims("svc-a", "jti-1")).unwrap();
    let body = issued(with_assertion(&app, &assertion).await).await;
    let (_, token) = app
        .verify(body["access_token"].as_str().unwrap(), "svc-b")
        .await;
    assert_eq!(token["iss"], "svc-a");

    let events = app.audit("action=token.issued").await;
    assert_eq!(events.len(), 1);
    let auth = &events[0]["detail"]["auth"];
    assert_eq!(auth["method"], format!("client_key:{id}"));
    assert_eq!(
        auth["presented"],
        json!({"iss": "svc-a", "sub": "svc-a", "jti": "jti-1"})
    );
    let everything = app
        .admin_get_json("/v1/admin/audit?limit=1000")
        .await
        .to_string();
    let signature = assertion.rsplit('.').next().unwrap();
    assert!(
        !everything.contains(signature),
        "the assertion is never audited"
    );

    // client_id may come along, equal to iss.
    let assertion = signer.sign(&claims("svc-a", "jti-2")).unwrap();
    let res = app
        .request(Method::POST, "/oauth2/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("audience", "svc-b"),
            ("client_id", "svc-a"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .unwrap();
    issued(res).await;
}

/// A client assertion is a presented JWT like any other: it is accepted
/// wherever one is, as Bearer on `/v1/tokens` and as a token exchange's
/// subject token, each time once.
#[tokio::test]
async fn an_assertion_is_accepted_as_bearer_and_as_a_subject_token() {
    let app = app().await;
    let (_, signer, id) = key_bound(&app, "svc-a").await;
    let bearer = signer.sign(&claims("svc-a", "jti-bearer")).unwrap();
    let res = app
        .request(Method::POST, "/v1/tokens")
        .bearer_auth(&bearer)
        .json(&json!({"audience": "svc-b"}))
        .send()
        .await
        .unwrap();
    let body = issued(res).await;
    let (_, token) = app.verify(body["token"].as_str().unwrap(), "svc-b").await;
    assert_eq!(token["iss"], "svc-a");

    let subject = signer.sign(&claims("svc-a", "jti-exchange")).unwrap();
    let exchange = |t: String| {
        app.request(Method::POST, "/oauth2/token").form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
            ),
            ("subject_token", t),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:jwt".to_owned(),
            ),
            ("audience", "svc-b".to_owned()),
        ])
    };
    let body = issued(exchange(subject.clone()).send().await.unwrap()).await;
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    let events = app.audit("action=token.issued").await;
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(
            event["detail"]["auth"]["method"],
            format!("client_key:{id}")
        );
    }
    // Each is still accepted once, wherever it is presented.
    let replay = exchange(subject).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

#[tokio::test]
async fn the_configured_audience_and_a_key_without_kid_are_accepted() {
    let app = app().await;
    let (_, signer, _) = key_bound(&app, "svc-a").await;
    // A kid that names no key: every key of the caller is tried.
    let pair = KeyPair::from_pkcs8_der(Algorithm::ES256, software(&signer).pkcs8_der()).unwrap();
    let no_kid = JwsSigner::new(String::new(), pair);
    let mut c = claims("svc-a", "j-aud");
    c["aud"] = json!(["other", "asapd"]);
    c.as_object_mut().unwrap().remove("sub");
    issued(with_assertion(&app, &no_kid.sign(&c).unwrap()).await).await;
    c["jti"] = json!("j-url");
    c["aud"] = json!(PUBLIC_URL);
    issued(with_assertion(&app, &no_kid.sign(&c).unwrap()).await).await;
}

/// One refusal per rule: the status, the reason, and an `auth.failed`.
#[tokio::test]
async fn assertions_that_break_a_rule_are_refused_one_by_one() {
    let app = app().await;
    let (_, signer, _) = key_bound(&app, "svc-a").await;
    let with = |jti: &str, change: &dyn Fn(&mut Value)| {
        let mut c = claims("svc-a", jti);
        change(&mut c);
        signer.sign(&c).unwrap()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong aud",
            with("j1", &|c| {
                c["aud"] = json!("https://elsewhere/oauth2/token")
            }),
            "aud",
        ),
        (
            "exp too far",
            with("j2", &|c| c["exp"] = json!(NOW + 3600)),
            "300 s ahead",
        ),
        (
            "expired",
            with("j3", &|c| c["exp"] = json!(NOW - 60)),
            "expired",
        ),
        (
            "no exp",
            with("j4", &|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "no exp",
        ),
        (
            "no jti",
            with("j5", &|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            "no jti",
        ),
        (
            "nbf ahead",
            with("j6", &|c| c["nbf"] = json!(NOW + 120)),
            "nbf",
        ),
        (
            "iss != sub",
            with("j7", &|c| c["sub"] = json!("svc-x")),
            "sub",
        ),
    ];
    for (what, assertion, says) in cases {
        let reason = refused(with_assertion(&app, &assertion).await).await;
        assert!(reason.contains(says), "{what}: {reason}");
    }
    let failed = app.audit("action=auth.failed").await;
    assert_eq!(failed.len(), 7);
    assert_eq!(failed[0]["detail"]["presented"]["iss"], "svc-a");
    assert_eq!(failed[0]["detail"]["reason"], "invalid_token");
}

#[tokio::test]
async fn a_wrong_key_alg_none_and_hs256_are_refused() {
    let app = app().await;
    let (_, signer, id) = key_bound(&app, "svc-a").await;
    let c = claims("svc-a", "j");
    let stranger = JwsSigner::new(id.clone(), KeyPair::generate(Algorithm::ES256).unwrap());
    let reason = refused(with_assertion(&app, &stranger.sign(&c).unwrap()).await).await;
    assert!(reason.contains("signature"), "{reason}");

    let none = unsigned(json!({"alg": "none", "typ": "JWT"}), &c, b"");
    refused(with_assertion(&app, &none).await).await;

    // HS256 keyed with the public key, the classic algorithm confusion.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &c,
        &jsonwebtoken::EncodingKey::from_secret(signer.key.public().pem.as_bytes()),
    )
    .unwrap();
    let reason = refused(with_assertion(&app, &hs).await).await;
    assert!(reason.contains("HS256"), "{reason}");
    // An RS256 alg over a P-256 key.
    let rs = unsigned(json!({"alg": "RS256", "kid": id}), &c, &[0u8; 256]);
    refused(with_assertion(&app, &rs).await).await;
    // A caller with no client keys, and one that does not exist.
    app.caller_granted("svc-c", &["svc-b"]).await;
    refused(with_assertion(&app, &signer.sign(&claims("svc-c", "j")).unwrap()).await).await;
    refused(with_assertion(&app, &signer.sign(&claims("nobody", "j")).unwrap()).await).await;
}

#[tokio::test]
async fn a_replayed_or_deleted_key_assertion_is_refused() {
    let app = app().await;
    let (_, signer, id) = key_bound(&app, "svc-a").await;
    let assertion = signer.sign(&claims("svc-a", "once")).unwrap();
    issued(with_assertion(&app, &assertion).await).await;
    let reason = refused(with_assertion(&app, &assertion).await).await;
    assert!(reason.contains("used already"), "{reason}");

    let path = format!("{}/{id}", keys_path("svc-a"));
    let res = app.admin(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let fresh = signer.sign(&claims("svc-a", "after-delete")).unwrap();
    refused(with_assertion(&app, &fresh).await).await;
}

#[tokio::test]
async fn used_jtis_are_pruned_after_their_expiry() {
    let app = app().await;
    let (_, signer, _) = key_bound(&app, "svc-a").await;
    issued(with_assertion(&app, &signer.sign(&claims("svc-a", "p")).unwrap()).await).await;
    let pruned = asapd::jobs::used_assertions::run_once(&app.state)
        .await
        .unwrap();
    assert_eq!(pruned, Some(0), "still live");
    app.state.clock.advance(3600);
    let pruned = asapd::jobs::used_assertions::run_once(&app.state)
        .await
        .unwrap();
    assert_eq!(pruned, Some(1));
}

#[tokio::test]
async fn an_assertion_with_a_secret_or_another_client_id_is_invalid_request() {
    let app = app().await;
    let (caller, signer, _) = key_bound(&app, "svc-a").await;
    let assertion = signer.sign(&claims("svc-a", "j")).unwrap();
    let form = |extra: &[(&str, &str)]| {
        let mut fields = vec![
            ("grant_type", "client_credentials"),
            ("audience", "svc-b"),
            ("client_assertion", assertion.as_str()),
        ];
        fields.extend_from_slice(extra);
        app.request(Method::POST, "/oauth2/token").form(&fields)
    };
    let cases = [
        form(&[("client_assertion_type", JWT_BEARER)]).basic_auth("svc-a", Some(&caller.secret)),
        form(&[
            ("client_assertion_type", JWT_BEARER),
            ("client_id", "svc-x"),
        ]),
        form(&[("client_assertion_type", "urn:other")]),
        form(&[]),
    ];
    for request in cases {
        let res = request.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{body}");
    }
}

#[tokio::test]
async fn the_server_metadata_lists_endpoints_grants_and_methods() {
    let app = app().await;
    let meta = metadata(&app).await;
    assert_eq!(meta["issuer"], PUBLIC_URL);
    assert_eq!(meta["token_endpoint"], TOKEN_ENDPOINT);
    assert_eq!(
        meta["jwks_uri"],
        format!("{PUBLIC_URL}/.well-known/jwks.json")
    );
    assert_eq!(
        meta["introspection_endpoint"],
        format!("{PUBLIC_URL}/oauth2/introspect")
    );
    assert_eq!(
        meta["revocation_endpoint"],
        format!("{PUBLIC_URL}/oauth2/revoke")
    );
    assert_eq!(
        meta["grant_types_supported"],
        json!([
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt"
        ])
    );
    let algs = meta["token_endpoint_auth_signing_alg_values_supported"].to_string();
    assert!(algs.contains("ES256") && algs.contains("PS256") && !algs.contains("HS"));

    // Without a public URL, from the request's own scheme and Host.
    let bare = spawn_app_with_clock(Clock::manual(NOW), |_| {}).await;
    let meta = metadata(&bare).await;
    assert_eq!(meta["token_endpoint"], bare.url("/oauth2/token"));
}

/// How long a change may take to reach the other replica.
const FLEET_BOUND: Duration = Duration::from_secs(1);

/// Two replicas on one PostgreSQL database.
async fn two_replicas() -> (TestApp, TestApp) {
    require_postgres();
    let a = app().await;
    let b = spawn_replica(&a, |s| s.http.public_url = Some(PUBLIC_URL.into())).await;
    (a, b)
}

async fn metadata(app: &TestApp) -> Value {
    let res = app
        .request(Method::GET, "/.well-known/oauth-authorization-server")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[tokio::test]
#[ignore = "needs PostgreSQL (make test-postgres)"]
async fn an_assertion_used_on_one_replica_is_refused_on_the_other() {
    let (a, b) = two_replicas().await;
    let (_, signer, _) = key_bound(&a, "svc-a").await;
    let assertion = signer.sign(&claims("svc-a", "fleet-once")).unwrap();
    issued(with_assertion(&a, &assertion).await).await;
    let reason = refused(with_assertion(&b, &assertion).await).await;
    assert!(reason.contains("used already"), "{reason}");

    // Two replicas racing with one fresh assertion: exactly one wins.
    let racing = signer.sign(&claims("svc-a", "fleet-race")).unwrap();
    let (ra, rb) = tokio::join!(with_assertion(&a, &racing), with_assertion(&b, &racing));
    let ok = [ra.status(), rb.status()]
        .iter()
        .filter(|s| **s == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "{} {}", ra.status(), rb.status());
}

#[tokio::test]
#[ignore = "needs PostgreSQL (make test-postgres)"]
async fn a_client_key_deleted_on_one_replica_is_refused_on_the_other_within_a_second() {
    let (a, b) = two_replicas().await;
    let (_, signer, id) = key_bound(&a, "svc-a").await;
    issued(with_assertion(&b, &signer.sign(&claims("svc-a", "before")).unwrap()).await).await;
    let res = a
        .admin(Method::DELETE, &format!("{}/{id}", keys_path("svc-a")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let deleted = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let assertion = signer
            .sign(&claims("svc-a", &format!("after-{n}")))
            .unwrap();
        if with_assertion(&b, &assertion).await.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            deleted.elapsed() < FLEET_BOUND,
            "still accepted on B after {FLEET_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `asapd callers client-keys add|list|delete` against a running server,
/// with a PEM file and a JWK file.
#[tokio::test]
async fn the_cli_adds_lists_and_deletes_client_keys() {
    use crate::helpers::fresh_database_url;
    use crate::process::{asapd_bare, init_admin, output_within, Server};

    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let master = asapd::crypto::MasterKey::generate_base64();
    let secret = init_admin(dir.path(), &db, &master);
    let server = Server::start(dir.path(), &db, &master).await;
    let cli = |args: &[&str]| {
        let mut cmd = asapd_bare(args);
        cmd.args(["--json", "--url", &server.url("")])
            .env("ASAPD_CLIENT_ID", "admin")
            .env("ASAPD_CLIENT_SECRET", &secret);
        let out = output_within(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            stderr,
        )
    };
    let (ok, _, err) = cli(&["callers", "create", "svc-cli"]);
    assert!(ok, "{err}");
    let pem_file = dir.path().join("key.pub");
    let ec = KeyPair::generate(Algorithm::ES256).unwrap();
    std::fs::write(&pem_file, &ec.public.pem).unwrap();
    let jwk_file = dir.path().join("key.jwk");
    let p384 = KeyPair::generate(Algorithm::ES384).unwrap();
    std::fs::write(&jwk_file, p384.public.jwk_members.to_string()).unwrap();
    let mut ids = Vec::new();
    for file in [&pem_file, &jwk_file] {
        let file = file.to_str().unwrap();
        let (ok, out, err) = cli(&[
            "callers",
            "client-keys",
            "add",
            "svc-cli",
            "--public-key-file",
            file,
        ]);
        assert!(ok, "{err}");
        let added: Value = serde_json::from_str(&out).unwrap();
        ids.push(added["id"].as_str().unwrap().to_owned());
    }
    let (ok, out, _) = cli(&["callers", "client-keys", "list", "svc-cli"]);
    assert!(ok);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let (ok, _, err) = cli(&["callers", "client-keys", "delete", "svc-cli", &ids[0]]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&["callers", "client-keys", "delete", "svc-cli", &ids[0]]);
    assert!(!ok && err.contains("404"), "{err}");
}

/// `tokens.client_assertion_max_secs` moves the bound on `exp`, for
/// clients that sign longer assertions (authlib: an hour).
#[tokio::test]
async fn the_bound_on_exp_is_a_setting() {
    let app = spawn_app_with_clock(Clock::manual(NOW), |s| {
        s.http.public_url = Some(PUBLIC_URL.into());
        s.tokens.client_assertion_max_secs = 3600;
    })
    .await;
    let (_, signer, _) = key_bound(&app, "svc-a").await;
    let mut c = claims("svc-a", "hour");
    c["exp"] = json!(NOW + 3600);
    issued(with_assertion(&app, &signer.sign(&c).unwrap()).await).await;
    c["jti"] = json!("longer");
    c["exp"] = json!(NOW + 3700);
    let reason = refused(with_assertion(&app, &signer.sign(&c).unwrap()).await).await;
    assert!(reason.contains("3600 s ahead"), "{reason}");
}

/// Introspection authenticates clients as the token endpoint does (the
/// same form reader serves revocation), so a key-bound caller uses its
/// assertion there too, as the server metadata says.
#[tokio::test]
async fn introspection_takes_a_client_assertion() {
    let app = app().await;
    let (_, signer, _) = key_bound(&app, "svc-b").await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    let token = app.token(&a, "svc-b").await;
    let introspect = |jti: &str| {
        let assertion = signer.sign(&claims("svc-b", jti)).unwrap();
        app.request(Method::POST, "/oauth2/introspect").form(&[
            ("token", token.clone()),
            ("client_assertion_type", JWT_BEARER.to_owned()),
            ("client_assertion", assertion),
        ])
    };
    let res = introspect("i-1").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["iss"], "svc-a");
    // The same assertion twice: refused like any replay.
    let res = introspect("i-1").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
