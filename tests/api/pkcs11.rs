//! `keys.backend = "pkcs11"` on SoftHSM2: keys made in the token and never
//! out of it, every algorithm verifying, the lifecycle unchanged, and the
//! token's faults (README, "Keys in an HSM (PKCS#11)").

use std::time::{Duration, Instant};

use asapd::clock::Clock;
use asapd::config::{KeyBackendSetting, Redacted};
use asapd::jobs::key_rotation;
use asapd::store::{keys, Store};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{http, require_postgres, spawn_app_with_clock};
use crate::hsm::{
    access_of, list_private_keys_in, module, token, token_request, verify, Hsm, HsmApp, LABEL, PIN,
};
use crate::process::output_within;

const ALGORITHMS: [&str; 8] = [
    "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
];

/// The database row of `kid`, read directly.
async fn key_row(db: &str, kid: &str) -> keys::KeyRow {
    let store = Store::connect(db, 1).await.unwrap();
    let mut conn = store.acquire().await.unwrap();
    keys::get(&mut conn, kid).await.unwrap().expect("key row")
}

/// The key is in the token, sensitive and not extractable (and, made
/// there, never was: an imported key was extractable before it came in);
/// the database has its public half and object id only.
async fn assert_held_in_token(hsm: &Hsm, db: &str, kid: &str, generated: bool) {
    let listing = hsm.list_private_keys();
    let access = access_of(&listing, kid).unwrap_or_else(|| panic!("{kid} in token: {listing}"));
    assert!(access.iter().any(|a| a == "sensitive"), "{kid}: {access:?}");
    let never = access.iter().any(|a| a == "never extractable");
    assert_eq!(never, generated, "{kid}: {access:?}");
    assert!(
        !access.iter().any(|a| a == "extractable"),
        "{kid}: {access:?}"
    );
    let row = key_row(db, kid).await;
    assert_eq!(row.backend, "pkcs11");
    assert!(
        row.private_enc.is_empty(),
        "no private key material in the database"
    );
    assert_eq!(row.token_object_id.map(|id| id.len()), Some(16));
}

#[tokio::test]
async fn every_algorithm_signs_in_the_token_and_verifies() {
    let hsm = Hsm::new();
    let app = HsmApp::start(&hsm).await;
    for alg in ALGORITHMS {
        let name = format!("svc-{}", alg.to_lowercase());
        let (name, secret, kid) = app.caller(&name, alg).await;
        let jwt = token(&app.server, &name, &secret).await;
        let (signed_by, algorithm) = verify(&app.server, &jwt).await;
        assert_eq!(signed_by, kid);
        assert_eq!(format!("{algorithm:?}"), alg);
        assert_held_in_token(&hsm, &app.db, &kid, true).await;
        // asapd's own verifier, as a service using `asapd verify` would.
        let repository = app.url("/v1/keys/");
        let args = ["verify", "--repository", &repository, "--audience", "x"];
        let mut cmd = crate::process::asapd_bare(&args);
        cmd.args(["--issuer", &name, &jwt]);
        let out = output_within(cmd);
        assert!(out.status.success(), "asapd verify {alg}: {out:?}");
        let (status, listed) = app
            .admin(Method::GET, &format!("/v1/admin/callers/{name}/keys"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!listed.to_string().contains("private"), "{listed}");
    }
    // Many at once through a pool of two sessions: each waits its turn.
    let (name, secret, _) = app.caller("svc-busy", "ES256").await;
    let requests = (0..16).map(|_| token_request(&app.server, &name, &secret));
    for (status, body) in futures_util::future::join_all(requests).await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let metrics = http()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"asapd_signing_seconds_count{algorithm="PS512",backend="pkcs11"} 1"#),
        "{metrics}"
    );
}

async fn published(app: &HsmApp, kid: &str) -> StatusCode {
    let url = app.url(&format!("/v1/keys/{kid}"));
    http().get(url).send().await.unwrap().status()
}

#[tokio::test]
async fn rotation_revocation_import_and_restart_keep_keys_in_the_token() {
    let hsm = Hsm::new();
    let app = HsmApp::start(&hsm).await;
    let (name, secret, first) = app.caller("svc", "ES256").await;
    let (status, rotated) = app
        .admin(
            Method::POST,
            &format!("/v1/admin/callers/{name}/keys/rotate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second = rotated["kid"].as_str().unwrap().to_owned();
    let (kid, _) = verify(&app.server, &token(&app.server, &name, &secret).await).await;
    assert_eq!(kid, second);

    assert_eq!(
        published(&app, &first).await,
        StatusCode::OK,
        "retired, still published"
    );

    let (status, revoked) = app
        .admin(
            Method::POST,
            &format!("/v1/admin/keys/{second}/revoke"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    let third = revoked["replacement"]["kid"].as_str().unwrap().to_owned();
    assert_eq!(published(&app, &second).await, StatusCode::NOT_FOUND);
    let (kid, _) = verify(&app.server, &token(&app.server, &name, &secret).await).await;
    assert_eq!(kid, third);

    let pair =
        asapd::crypto::KeyPair::generate(asapd::domain::algorithm::Algorithm::ES256).unwrap();
    let body = json!({"private_key": STANDARD.encode(pair.pkcs8_der()), "activate": true});
    let (status, imported) = app
        .admin(
            Method::POST,
            &format!("/v1/admin/callers/{name}/keys/import"),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    let fourth = imported["kid"].as_str().unwrap().to_owned();
    for kid in [&first, &third] {
        assert_held_in_token(&hsm, &app.db, kid, true).await;
    }
    assert_held_in_token(&hsm, &app.db, &fourth, false).await;

    // The mirror needs no token (nor master key): it copies public keys.
    let mirror = tempfile::tempdir().unwrap();
    let to = mirror.path().join("out");
    let args = [
        "mirror",
        "--to",
        to.to_str().unwrap(),
        "--database-url",
        &app.db,
    ];
    let out = output_within(crate::process::asapd_bare(&args));
    assert!(out.status.success(), "{out:?}");
    let pem = std::fs::read_to_string(to.join(&fourth)).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");

    let app = app.restart(&hsm).await;
    let (kid, _) = verify(&app.server, &token(&app.server, &name, &secret).await).await;
    assert_eq!(kid, fourth, "the imported key signs after a restart");
    let url = app.url(&format!("/v1/keys/{first}"));
    assert_eq!(
        http().get(url).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_existing_kid_is_refused_before_the_token_makes_a_twin() {
    let hsm = Hsm::new();
    let app = HsmApp::start(&hsm).await;
    let (name, _, first) = app.caller("svc", "ES256").await;
    let first_name = first.split_once('/').unwrap().1;
    let path = format!("/v1/admin/callers/{name}/keys");
    let (status, problem) = app
        .admin(Method::POST, &path, Some(json!({"name": first_name})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let pair =
        asapd::crypto::KeyPair::generate(asapd::domain::algorithm::Algorithm::ES256).unwrap();
    let body = json!({"private_key": STANDARD.encode(pair.pkcs8_der()), "kid": first});
    let (status, problem) = app
        .admin(Method::POST, &format!("{path}/import"), Some(body))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let listing = hsm.list_private_keys();
    let label = format!("label:      {first}\n");
    assert_eq!(listing.matches(&label).count(), 1, "{listing}");
}

#[tokio::test]
async fn a_wrong_pin_stops_the_start_naming_the_setting_never_the_pin() {
    let hsm = Hsm::new();
    let data = tempfile::tempdir().unwrap();
    let db = crate::helpers::fresh_database_url(data.path()).await;
    let master_key = asapd::crypto::MasterKey::generate_base64();
    crate::process::init_admin(data.path(), &db, &master_key);
    let listen = format!("127.0.0.1:{}", crate::process::free_port());
    let args = ["serve", "--listen", &listen];
    let out = output_within(hsm.asapd(&args, data.path(), &db, &master_key, "98765432"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("pkcs11.pin"), "{text}");
    assert!(
        !text.contains("98765432"),
        "the PIN is never printed: {text}"
    );

    let mut cmd = hsm.asapd(&args, data.path(), &db, &master_key, PIN);
    cmd.env("ASAPD_PKCS11__TOKEN_LABEL", "no-such-token");
    let out = output_within(cmd);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("pkcs11.token_label") && text.contains(LABEL),
        "{text}"
    );
    assert!(!text.contains(PIN), "{text}");

    let mut cmd = hsm.asapd(&args, data.path(), &db, &master_key, PIN);
    cmd.env("ASAPD_PKCS11__MODULE", "/nonexistent/libpkcs11.so");
    let out = output_within(cmd);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pkcs11.module"));
}

/// Polls `check` every 50 ms until it holds or 15 s pass.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

#[tokio::test]
async fn a_token_removed_while_serving_answers_503_then_recovers() {
    let hsm = Hsm::new();
    let app = HsmApp::start(&hsm).await;
    let (name, secret, _) = app.caller("svc", "ES256").await;
    token(&app.server, &name, &secret).await;
    let ready = || async {
        http()
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
    };

    let away = hsm.remove();
    let (status, problem) = token_request(&app.server, &name, &secret).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("HSM"),
        "{problem}"
    );
    assert_eq!(ready().await, StatusCode::SERVICE_UNAVAILABLE);
    // No key can be made either: nothing is changed, and the answer says so.
    let rotate = format!("/v1/admin/callers/{name}/keys/rotate");
    let (status, problem) = app.admin(Method::POST, &rotate, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");

    hsm.restore(&away);
    eventually("readyz recovers", || async {
        ready().await == StatusCode::OK
    })
    .await;
    eventually("tokens again", || async {
        token_request(&app.server, &name, &secret).await.0 == StatusCode::OK
    })
    .await;
    verify(&app.server, &token(&app.server, &name, &secret).await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (make test-postgres)"]
async fn two_replicas_sharing_one_token_verify_each_others_tokens() {
    require_postgres();
    let hsm = Hsm::new();
    let app = HsmApp::start(&hsm).await;
    let other = app.replica(&hsm).await;
    let (name, secret, kid) = app.caller("svc", "RS256").await;
    eventually("the replica signs with the new key", || async {
        token_request(&other, &name, &secret).await.0 == StatusCode::OK
    })
    .await;
    let from_other = token(&other, &name, &secret).await;
    let from_first = token(&app.server, &name, &secret).await;
    assert_eq!(verify(&app.server, &from_other).await.0, kid);
    assert_eq!(verify(&other, &from_first).await.0, kid);
}

/// Set in the child process that runs the destruction test in-process.
const CHILD: &str = "ASAPD_TEST_PKCS11_CHILD";

/// The grace of a retired key ends under a driven clock, so this runs the
/// app in-process; SoftHSM2 reads `SOFTHSM2_CONF` once per process, so it
/// runs in a child process of this test binary that has it from the start.
#[tokio::test]
async fn a_retired_key_is_destroyed_in_the_token_when_its_grace_ends() {
    if std::env::var(CHILD).is_err() {
        let hsm = Hsm::new();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pkcs11::a_retired_key_is_destroyed_in_the_token_when_its_grace_ends",
            ])
            .args(["--nocapture", "--test-threads", "1"])
            .env(CHILD, "1")
            .env("SOFTHSM2_CONF", &hsm.conf)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        return;
    }
    let clock = Clock::manual(1_900_000_000);
    let app = spawn_app_with_clock(clock.clone(), |s| {
        s.keys.backend = KeyBackendSetting::Pkcs11;
        s.pkcs11.module = Some(module());
        s.pkcs11.token_label = Some(LABEL.into());
        s.pkcs11.pin = Some(Redacted(PIN.into()));
    })
    .await;
    let caller = app.caller_granted("svc", &["x"]).await;
    let res = app
        .admin_json(Method::POST, "/v1/admin/callers/svc/keys/rotate", json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    clock.advance(3600 + 60 + 10 + 1);
    key_rotation::run_once(&app.state).await.unwrap();
    let destroyed = app.audit_rows("key.destroyed").await;
    assert_eq!(destroyed.len(), 1);
    assert_eq!(
        destroyed[0].target.as_deref(),
        Some(format!("key:{}", caller.kid).as_str())
    );
    let detail: Value = serde_json::from_str(&destroyed[0].detail).unwrap();
    assert_eq!(detail["backend"], "pkcs11");
    assert_eq!(detail["objects"], 2, "the private and the public key");
    let listing = list_private_keys_in(std::path::Path::new(
        &std::env::var("SOFTHSM2_CONF").unwrap(),
    ));
    assert!(!listing.contains(&caller.kid), "destroyed: {listing}");
    let active = app.state.keyring.snapshot().signers["svc"].kid.clone();
    assert!(listing.contains(&active), "the active key stays: {listing}");
}

#[tokio::test]
async fn sealed_keys_from_before_keep_signing_and_rekey_leaves_the_token_alone() {
    let hsm = Hsm::new();
    let data = tempfile::tempdir().unwrap();
    let db = crate::helpers::fresh_database_url(data.path()).await;
    let master_key = asapd::crypto::MasterKey::generate_base64();
    let admin = crate::process::init_admin(data.path(), &db, &master_key);
    let software = crate::process::Server::start(data.path(), &db, &master_key).await;
    let app = HsmApp {
        server: software,
        data,
        db,
        master_key,
        admin,
    };
    let (soft, soft_secret, soft_kid) = app.caller("soft", "ES256").await;
    assert_eq!(key_row(&app.db, &soft_kid).await.backend, "software");

    let app = app.restart(&hsm).await;
    let (kid, _) = verify(&app.server, &token(&app.server, &soft, &soft_secret).await).await;
    assert_eq!(
        kid, soft_kid,
        "a sealed key keeps signing on the pkcs11 backend"
    );
    let (_, _, hard_kid) = app.caller("hard", "ES256").await;
    assert_held_in_token(&hsm, &app.db, &hard_kid, true).await;

    let cmd = hsm.asapd(&["rekey"], app.data.path(), &app.db, &app.master_key, PIN);
    let out = output_within(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The sealed ones: the admin's and soft's; hard's is in the token.
    assert!(stdout.contains("asapd rekey: 2 private keys"), "{stdout}");
    assert!(
        stdout.contains("1 key(s) held in the PKCS#11 token are not part of a rekey"),
        "{stdout}"
    );
}
