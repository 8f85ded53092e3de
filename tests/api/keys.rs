//! Key generation for every algorithm, and the key lifecycle.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use p256::pkcs8::{DecodePublicKey, EncodePrivateKey, LineEnding};
use reqwest::{Method, StatusCode};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, TestApp};

async fn pem_of(app: &TestApp, kid: &str) -> reqwest::Response {
    app.request(Method::GET, &format!("/v1/keys/{kid}"))
        .send()
        .await
        .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn every_algorithm_publishes_the_right_key_type_and_size() {
    let app = spawn_app().await;
    let cases = [
        ("RS256", "RSA", 2048),
        ("RS384", "RSA", 3072),
        ("RS512", "RSA", 4096),
        ("PS256", "RSA", 2048),
        ("PS384", "RSA", 3072),
        ("PS512", "RSA", 4096),
        ("ES256", "P-256", 256),
        ("ES384", "P-384", 384),
    ];
    for (alg, kind, bits) in cases {
        let name = format!("svc-{}", alg.to_lowercase());
        let created = app
            .create_caller(json!({"name": name, "algorithm": alg}))
            .await;
        let kid = created["kid"].as_str().unwrap().to_owned();
        let res = pem_of(&app, &kid).await;
        assert_eq!(res.status(), StatusCode::OK, "{alg}");
        assert_eq!(res.headers()["content-type"], "application/x-pem-file");
        let cache = res.headers()["cache-control"].to_str().unwrap().to_owned();
        assert!(
            cache.contains("public") && cache.contains("max-age="),
            "{cache}"
        );
        let pem = res.text().await.unwrap();
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\n"),
            "{alg}: SPKI PEM"
        );

        let jwk = app
            .jwks()
            .await
            .into_iter()
            .find(|k| k["kid"] == kid.as_str())
            .unwrap_or_else(|| panic!("{alg}: {kid} in JWKS"));
        assert_eq!(jwk["alg"], alg);
        assert_eq!(jwk["use"], "sig");
        match kind {
            "RSA" => {
                let key = rsa::RsaPublicKey::from_public_key_pem(&pem).expect("RSA SPKI");
                assert_eq!(key.size() * 8, bits, "{alg} modulus");
                assert_eq!(jwk["kty"], "RSA");
                assert_eq!(jwk["n"], b64(&key.n().to_bytes_be()));
                assert_eq!(jwk["e"], b64(&key.e().to_bytes_be()));
            }
            "P-256" => {
                let key = p256::PublicKey::from_public_key_pem(&pem).expect("P-256 SPKI");
                let point = p256::EncodedPoint::from(key);
                assert_eq!(jwk["crv"], "P-256");
                assert_eq!(jwk["x"], b64(point.x().unwrap()));
                assert_eq!(jwk["y"], b64(point.y().unwrap()));
            }
            _ => {
                let key = p384::PublicKey::from_public_key_pem(&pem).expect("P-384 SPKI");
                let point = p384::EncodedPoint::from(key);
                assert_eq!(jwk["crv"], "P-384");
                assert_eq!(jwk["x"], b64(point.x().unwrap()));
                assert_eq!(jwk["y"], b64(point.y().unwrap()));
            }
        }
        let info: Value = app
            .admin_get(&format!("/v1/admin/keys/{kid}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(info["algorithm"], alg);
        assert_eq!(info["public_key_pem"], pem.as_str());
    }
}

#[tokio::test]
async fn pending_active_retired_revoked() {
    let app = spawn_app().await;
    let created = app.create_caller(json!({"name": "svc-a"})).await;
    let first = created["kid"].as_str().unwrap().to_owned();

    // A pending key is published before it signs.
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/callers/svc-a/keys",
            json!({"name": "next"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let pending: Value = res.json().await.unwrap();
    assert_eq!(pending["kid"], "svc-a/next");
    assert_eq!(pending["state"], "pending");
    assert_eq!(pending["published"], true);
    assert_eq!(pem_of(&app, "svc-a/next").await.status(), StatusCode::OK);
    let caller: Value = app
        .admin_get("/v1/admin/callers/svc-a")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(caller["active_kid"], first.as_str());

    // Rotation activates the pending key; the old one retires, still published.
    let res = app
        .admin(Method::POST, "/v1/admin/callers/svc-a/keys/rotate")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let active: Value = res.json().await.unwrap();
    assert_eq!(active["kid"], "svc-a/next");
    assert_eq!(active["state"], "active");
    let old: Value = app
        .admin_get(&format!("/v1/admin/keys/{first}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(old["state"], "retired");
    assert_eq!(pem_of(&app, &first).await.status(), StatusCode::OK);

    // Revoking unpublishes at once.
    let res = app
        .admin(Method::POST, &format!("/v1/admin/keys/{first}/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let revoked: Value = res.json().await.unwrap();
    assert_eq!(revoked["revoked"]["state"], "revoked");
    assert_eq!(revoked["replacement"], Value::Null);
    assert_problem(pem_of(&app, &first).await, StatusCode::NOT_FOUND).await;
    assert!(app.jwks().await.iter().all(|k| k["kid"] != first.as_str()));

    // Revoking the active key puts a fresh one in its place.
    let res = app
        .admin(Method::POST, "/v1/admin/keys/svc-a/next/revoke")
        .send()
        .await
        .unwrap();
    let revoked: Value = res.json().await.unwrap();
    let replacement = revoked["replacement"]["kid"].as_str().unwrap().to_owned();
    assert_eq!(revoked["replacement"]["state"], "active");
    assert_problem(pem_of(&app, "svc-a/next").await, StatusCode::NOT_FOUND).await;
    assert_eq!(pem_of(&app, &replacement).await.status(), StatusCode::OK);

    let list: Value = app
        .admin_get("/v1/admin/callers/svc-a/keys")
        .await
        .json()
        .await
        .unwrap();
    let states: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "active").count(),
        1,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "revoked").count(),
        2,
        "{states:?}"
    );
}

#[tokio::test]
async fn generate_active_retires_the_current_key() {
    let app = spawn_app().await;
    let created = app.create_caller(json!({"name": "svc-a"})).await;
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/callers/svc-a/keys",
            json!({"activate": true, "algorithm": "ES384"}),
        )
        .await;
    let key: Value = res.json().await.unwrap();
    assert_eq!(key["state"], "active");
    assert_eq!(key["algorithm"], "ES384");
    let old: Value = app
        .admin_get(&format!(
            "/v1/admin/keys/{}",
            created["kid"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(old["state"], "retired");
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/callers/svc-a/keys",
            json!({"name": key["kid"].as_str().unwrap().split('/').nth(1)}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn imported_keys_are_published_and_bad_ones_refused() {
    let app = spawn_app().await;
    app.create_caller(json!({"name": "svc-a"})).await;
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/callers/svc-a/keys/import",
            json!({"private_key": pem.as_str(), "name": "imported", "algorithm": "ES256"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let key: Value = res.json().await.unwrap();
    assert!(key.get("private_key").is_none());
    let served = pem_of(&app, "svc-a/imported").await.text().await.unwrap();
    let served = p256::PublicKey::from_public_key_pem(&served).unwrap();
    assert_eq!(served, secret.public_key());

    for (body, field) in [
        (json!({"private_key": "not a key"}), "private_key"),
        (
            json!({"private_key": pem.as_str(), "algorithm": "RS256"}),
            "private_key",
        ),
        (
            json!({"private_key": pem.as_str(), "algorithm": "HS256"}),
            "algorithm",
        ),
    ] {
        let res = app
            .admin_json(Method::POST, "/v1/admin/callers/svc-a/keys/import", body)
            .await;
        let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["field"], field);
    }
}

#[tokio::test]
async fn keys_of_unknown_callers_and_kids_are_404() {
    let app = spawn_app().await;
    assert_problem(
        app.admin_get("/v1/admin/callers/ghost/keys").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.admin_get("/v1/admin/keys/ghost/k1").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.admin_get("/v1/admin/keys/not-a-kid").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let res = app
        .admin_json(Method::POST, "/v1/admin/callers/ghost/keys", json!({}))
        .await;
    assert_problem(res, StatusCode::NOT_FOUND).await;
}

/// An unexpected fault (here: a corrupt row) is an opaque 500: a generic
/// detail with the request id to find the logged cause, nothing internal.
#[tokio::test]
async fn an_unexpected_fault_is_an_opaque_500_with_the_request_id() {
    let app = crate::helpers::spawn_app().await;
    let created = app
        .create_caller(serde_json::json!({"name": "svc-a"}))
        .await;
    let kid = created["kid"].as_str().unwrap();
    {
        let mut conn = app.state.store.acquire().await.unwrap();
        sqlx::query("UPDATE keys SET algorithm = $1 WHERE kid = $2")
            .bind("XY999-corrupt")
            .bind(kid)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let res = app
        .admin(reqwest::Method::GET, &format!("/v1/admin/keys/{kid}"))
        .header("x-request-id", "req-opaque-500")
        .send()
        .await
        .unwrap();
    let body =
        crate::helpers::assert_problem(res, reqwest::StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_eq!(body["request_id"], "req-opaque-500");
    assert_eq!(body["type"], "urn:asapd:problem:internal");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("request id"), "{detail}");
    assert!(
        !detail.contains("XY999") && !detail.contains("corrupt"),
        "{detail}"
    );
    // The rest of the service is unaffected.
    assert!(app
        .admin_get("/v1/admin/callers")
        .await
        .status()
        .is_success());
}

/// PKCS#1 RSA keys (`BEGIN RSA PRIVATE KEY`, `openssl genrsa -traditional`)
/// import as PEM and as base64 DER, like PKCS#8 ones, and the imported key
/// signs tokens that verify against the PEM asapd publishes for it.
#[tokio::test]
async fn pkcs1_and_pkcs8_rsa_keys_import_and_sign_verifiable_tokens() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePublicKey;

    let app = spawn_app().await;
    let caller = app.caller_granted("svc-a", &["svc-b"]).await;
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let pkcs1_pem = key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string();
    assert!(pkcs1_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let pkcs1_der = STANDARD.encode(key.to_pkcs1_der().unwrap().as_bytes());
    let pkcs8_der = STANDARD.encode(key.to_pkcs8_der().unwrap().as_bytes());
    let forms = [
        ("pkcs1-pem", pkcs1_pem),
        ("pkcs1-der", pkcs1_der),
        ("pkcs8-der", pkcs8_der),
    ];
    for (name, text) in forms {
        let res = app
            .admin_json(
                Method::POST,
                "/v1/admin/callers/svc-a/keys/import",
                json!({"private_key": text, "name": name, "algorithm": "RS256"}),
            )
            .await;
        let status = res.status();
        let imported: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{name}: {imported}");
        assert_eq!(
            imported["state"], "pending",
            "{name}: pending until rotated"
        );
        let kid = format!("svc-a/{name}");
        let served = pem_of(&app, &kid).await.text().await.unwrap();
        let served = rsa::RsaPublicKey::from_public_key_pem(&served).unwrap();
        assert_eq!(served, key.to_public_key(), "{name}");

        // Rotation activates the oldest pending key: this one.
        let res = app
            .admin(Method::POST, "/v1/admin/callers/svc-a/keys/rotate")
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{name}: rotate {}", res.status());
        let token = app.token(&caller, "svc-b").await;
        let (header, claims) = app.verify(&token, "svc-b").await;
        assert_eq!(header.kid.as_deref(), Some(kid.as_str()), "{name}");
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        assert_eq!(claims["iss"], "svc-a");
    }
}

/// An RSA key for an ES256 caller, without `algorithm`: the answer says
/// that `algorithm` picks the family, and which values do.
#[tokio::test]
async fn an_rsa_key_without_algorithm_is_told_that_algorithm_picks_the_family() {
    use rsa::pkcs1::EncodeRsaPrivateKey;

    let app = spawn_app().await;
    app.create_caller(json!({"name": "svc-a", "algorithm": "ES256"}))
        .await;
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    for text in [
        key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string(),
        key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
    ] {
        let res = app
            .admin_json(
                Method::POST,
                "/v1/admin/callers/svc-a/keys/import",
                json!({"private_key": text}),
            )
            .await;
        let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["field"], "algorithm");
        let detail = problem["detail"].as_str().unwrap();
        for part in [
            "an RSA key",
            "signs with ES256",
            "\"algorithm\": \"RS256\"",
            "PS256",
        ] {
            assert!(detail.contains(part), "{part:?} in {detail}");
        }
    }
    // Named explicitly, the mismatch is the key's fault, and says so.
    let ec = p256::SecretKey::random(&mut rand::rngs::OsRng)
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap();
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/callers/svc-a/keys/import",
            json!({"private_key": ec.as_str(), "algorithm": "RS256"}),
        )
        .await;
    let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["field"], "private_key");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("a P-256 EC key but RS256 needs an RSA key"),
        "{detail}"
    );
}

/// A background job that fails says why: the cause survives to the log
/// line (`{:#}`), not only "internal error".
#[tokio::test]
async fn a_failing_rotation_pass_keeps_its_cause() {
    let start = 1_900_000_000;
    let app =
        crate::helpers::spawn_app_with_clock(asapd::clock::Clock::manual(start), |_| {}).await;
    app.create_caller(json!({"name": "svc-a"})).await;
    {
        let mut conn = app.state.store.acquire().await.unwrap();
        sqlx::query("UPDATE callers SET algorithm = $1 WHERE name = $2")
            .bind("XY999-corrupt")
            .bind("svc-a")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    // Past the 30-day rotation period: the pass must generate a key.
    app.state.clock.advance(31 * 86_400);
    let err = asapd::jobs::key_rotation::run_once(&app.state)
        .await
        .expect_err("a corrupt algorithm fails the pass");
    let logged = format!("{err:#}");
    assert!(logged.contains("XY999-corrupt"), "{logged}");
}
