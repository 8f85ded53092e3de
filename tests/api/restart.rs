//! Restarts keep every key; a wrong or missing master key stops the start.

use std::path::Path;

use asapd::crypto::MasterKey;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::fresh_database_url;
use crate::process::{asapd, init_admin, Server};

pub(crate) async fn pem(server: &Server, kid: &str) -> (StatusCode, String) {
    let res = crate::helpers::http()
        .get(server.url(&format!("/v1/keys/{kid}")))
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

/// A token for audience "b" from `POST /v1/tokens` as `name`.
pub(crate) async fn token(server: &Server, name: &str, secret: &str) -> String {
    let res = crate::helpers::http()
        .post(server.url("/v1/tokens"))
        .basic_auth(name, Some(secret))
        .json(&json!({"audience": "b"}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "token for {name}: {body}");
    body["token"].as_str().unwrap().to_owned()
}

/// Verifies `token` against `pem` with `alg` (never the token's own), as
/// an ASAP verifier holding a cached public key would.
pub(crate) fn verify_with(token: &str, pem: &str, alg: Algorithm) -> Value {
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
        _ => DecodingKey::from_rsa_pem(pem.as_bytes()),
    }
    .unwrap();
    let mut validation = Validation::new(alg);
    validation.set_audience(&["b"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 0;
    decode::<Value>(token, &key, &validation)
        .expect("token verifies with the key published before the restart")
        .claims
}

/// A caller and what a verifier cached of its key before a restart.
pub(crate) struct Signer {
    pub(crate) name: &'static str,
    pub(crate) alg: Algorithm,
    pub(crate) secret: String,
    pub(crate) kid: String,
    pub(crate) pem: String,
}

/// Sets up a database under `key`: an admin, a group for audience "b" and
/// an EC and an RSA caller, each with an active key.
pub(crate) async fn callers_under(dir: &Path, db: &str, key: &str) -> (String, Vec<Signer>) {
    let admin = init_admin(dir, db, key);
    let server = Server::start(dir, db, key).await;
    let client = crate::helpers::http();
    let res = client
        .post(server.url("/v1/admin/groups"))
        .basic_auth("admin", Some(&admin))
        .json(&json!({"name": "g-b", "audiences": ["b"], "max_lifetime": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let mut signers = Vec::new();
    for (name, alg) in [("svc-ec", "ES256"), ("svc-rsa", "RS256")] {
        let res = client
            .post(server.url("/v1/admin/callers"))
            .basic_auth("admin", Some(&admin))
            .json(&json!({"name": name, "algorithm": alg, "groups": ["g-b"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        let kid = body["kid"].as_str().unwrap().to_owned();
        let (status, pem) = pem(&server, &kid).await;
        assert_eq!(status, StatusCode::OK);
        signers.push(Signer {
            name,
            alg: alg.parse().unwrap(),
            secret: body["client_secret"].as_str().unwrap().to_owned(),
            kid,
            pem,
        });
    }
    server.stop();
    (admin, signers)
}

/// Every caller's token is signed with its old key (kid and alg) and
/// verifies against the PEM a verifier cached before the restart.
pub(crate) async fn assert_old_keys_sign(server: &Server, signers: &[Signer]) {
    for s in signers {
        let token = token(server, s.name, &s.secret).await;
        let header = decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(s.kid.as_str()), "{}", s.name);
        assert_eq!(header.alg, s.alg, "{}", s.name);
        assert_eq!(verify_with(&token, &s.pem, s.alg)["iss"], s.name);
        assert_eq!(pem(server, &s.kid).await.1, s.pem, "the PEM is unchanged");
    }
}

#[tokio::test]
async fn same_master_key_keeps_keys_wrong_one_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = MasterKey::generate_base64();
    let (secret, signers) = callers_under(dir.path(), &db, &key).await;
    let client = crate::helpers::http();

    // Same key: every key is still served, unchanged, and the ring (which
    // decrypts every active private key at start) loaded: tokens are
    // signed with the same key, verifiable with the PEM a verifier cached
    // before the restart.
    let server = Server::start(dir.path(), &db, &key).await;
    assert_old_keys_sign(&server, &signers).await;
    let res = client
        .post(server.url("/v1/admin/callers/svc-rsa/keys/rotate"))
        .basic_auth("admin", Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    server.stop();

    // Wrong key: refuses to start, and says why.
    let wrong = MasterKey::generate_base64();
    let out = asapd(
        &["serve", "--listen", "127.0.0.1:0"],
        dir.path(),
        &db,
        Some(&wrong),
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("master key does not match"), "{stderr}");
}

#[tokio::test]
async fn missing_or_malformed_master_key_stops_the_start_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("x.db").display());
    let out = asapd(&["serve", "--listen", "127.0.0.1:0"], dir.path(), &db, None)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no master key") && stderr.contains("ASAPD_MASTER_KEY="),
        "{stderr}"
    );

    let out = asapd(
        &["serve", "--listen", "127.0.0.1:0"],
        dir.path(),
        &db,
        Some("c2hvcnQ="),
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("32 bytes"), "{stderr}");
}

#[tokio::test]
async fn bad_configuration_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("x.db").display());
    let key = MasterKey::generate_base64();
    let out = asapd(&["serve"], dir.path(), &db, Some(&key))
        .env("ASAPD_KEYS__DEFAULT_ALGORITHM", "HS256")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.to_lowercase().contains("default_algorithm") && stderr.contains("HS256"),
        "{stderr}"
    );

    let out = asapd(
        &["serve", "--listen", "not-an-address"],
        dir.path(),
        &db,
        Some(&key),
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));

    let out = asapd(&["migrate"], dir.path(), &db, Some(&key))
        .env("ASAPD_LISTN", "x")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ASAPD_LISTN") && stderr.contains("ASAPD_LISTEN"),
        "{stderr}"
    );
}

#[tokio::test]
async fn init_refuses_when_an_admin_exists() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = MasterKey::generate_base64();
    init_admin(dir.path(), &db, &key);
    let out = asapd(&["init", "--json"], dir.path(), &db, Some(&key))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no second secret printed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}
