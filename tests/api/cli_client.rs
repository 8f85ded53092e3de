//! `asapd token` and `asapd verify`: the client helpers, against a real
//! `serve --dev` over HTTPS.

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};

use crate::process::{asapd_bare, start_dev_server, Server};

/// `serve --dev` on a fresh data dir; the server and the admin's secret.
fn dev_server(data: &Path) -> (Server, String) {
    let server = start_dev_server(data);
    let secret = server
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("client_secret:"))
        .expect("the admin secret on stdout")
        .trim()
        .to_owned();
    (server, secret)
}

/// `asapd token` as svc-a for svc-b from `base`, the secret in the
/// environment, plus `extra` flags.
fn token_for_svc_a(base: &str, secret: &str, extra: &[&str]) -> std::process::Command {
    let mut args = vec![
        "token",
        "--url",
        base,
        "--client-id",
        "svc-a",
        "--audience",
        "svc-b",
    ];
    args.extend_from_slice(extra);
    let mut cmd = asapd_bare(&args);
    cmd.env("ASAPD_CLIENT_SECRET", secret);
    cmd
}

fn run(mut cmd: std::process::Command) -> Output {
    cmd.output().expect("run asapd")
}

#[tokio::test]
async fn token_and_verify_work_against_a_dev_server() {
    let dir = tempfile::tempdir().unwrap();
    let (server, admin_secret) = dev_server(dir.path());
    let cert = dir.path().join("dev-cert.pem");
    let cert_arg = cert.to_str().unwrap();
    let base = format!("https://127.0.0.1:{}", server.port);
    let repository = format!("{base}/v1/keys/");
    crate::helpers::install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();

    let admin_post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .basic_auth("admin", Some(&admin_secret))
            .json(&body)
            .send()
    };
    let res = admin_post(
        "/v1/admin/groups",
        json!({"name": "g", "audiences": ["svc-b"], "max_lifetime": 600}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    let caller: Value = admin_post(
        "/v1/admin/callers",
        json!({"name": "svc-a", "groups": ["g"], "algorithm": "PS256"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let secret = caller["client_secret"].as_str().unwrap().to_owned();
    let kid = caller["kid"].as_str().unwrap().to_owned();

    // asapd token: the secret from the environment, the token on stdout.
    let token_cmd = |secret: &str| {
        run(token_for_svc_a(
            &base,
            secret,
            &["--lifetime", "120", "--cacert", cert_arg],
        ))
    };
    let out = token_cmd(&secret);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");

    // asapd verify: the claims of a good token, exit 0.
    let verify = |token: &str, extra: &[&str]| {
        let mut args = vec!["verify", "--repository", &repository, "--cacert", cert_arg];
        args.extend_from_slice(extra);
        args.push(token);
        run(asapd_bare(&args))
    };
    let out = verify(&token, &["--audience", "svc-b", "--issuer", "svc-a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["iss"], "svc-a");
    assert_eq!(claims["aud"], "svc-b");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );

    // Refusals: exit 1 with the reason.
    for extra in [
        &["--audience", "svc-z"][..],
        &["--audience", "svc-b", "--issuer", "svc-x"][..],
    ] {
        let out = verify(&token, extra);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("invalid:"), "{stderr}");
    }
    let out = verify(&token, &["--audience", "svc-z"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not for svc-z"), "{stderr}");
    // One character inside the signature (the last one may hold only
    // padding bits): every bit of it counts.
    let at = token.rfind('.').unwrap() + 5;
    let mut tampered = token.clone();
    let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
    tampered.replace_range(at..=at, swapped);
    let out = verify(&tampered, &["--audience", "svc-b"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad signature"), "{stderr}");

    // A wrong secret: the server's refusal, never the secret, non-zero.
    let out = token_cmd("asapd_wrong");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("asapd_wrong"), "{stderr}");

    // Once the key is revoked, the repository answers 404 and verify says so.
    let res = http
        .post(format!("{base}/v1/admin/keys/{kid}/revoke"))
        .basic_auth("admin", Some(&admin_secret))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let out = verify(&token, &["--audience", "svc-b"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("404"), "{stderr}");
    server.stop();
}

/// Without `--cacert`, the dev server's self-signed certificate fails the
/// TLS handshake: `token` and `verify` say to pass `--cacert`.
#[test]
fn a_tls_failure_suggests_cacert() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = dev_server(dir.path());
    let base = format!("https://127.0.0.1:{}", server.port);

    let out = run(token_for_svc_a(&base, "asapd_whatever", &[]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--cacert"), "{stderr}");
    assert!(stderr.contains("not trusted"), "{stderr}");

    // Any well-formed token with a kid makes verify fetch the key.
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let forged = format!(
        "{}.{}.c2ln",
        b64(json!({"alg": "ES256", "kid": "svc-a/k1", "typ": "JWT"})),
        b64(json!({"iss": "svc-a"}))
    );
    let repository = format!("{base}/v1/keys/");
    let out = run(asapd_bare(&[
        "verify",
        "--repository",
        &repository,
        "--audience",
        "svc-b",
        &forged,
    ]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--cacert"), "{stderr}");
    server.stop();
}

/// A self-signed certificate that says CA:TRUE, as `openssl req -x509
/// -newkey ec …` writes it, for the names given: (certificate, key) PEM.
fn self_signed_ca_cert(names: &[&str]) -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let key = KeyPair::generate().unwrap();
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A server behind a CA:TRUE self-signed certificate: every client command
/// reaches it with `--cacert` of that file, as curl does; another
/// certificate, or a name the certificate does not hold, is still refused.
#[tokio::test]
async fn a_self_signed_ca_certificate_is_trusted_as_curl_does() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_ca_cert(&["127.0.0.1"]);
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, self_signed_ca_cert(&["127.0.0.1"]).0).unwrap();
    let (ca, other) = (cert_path.to_str().unwrap(), other_path.to_str().unwrap());

    let db = crate::helpers::fresh_database_url(dir.path()).await;
    let master = asapd::crypto::MasterKey::generate_base64();
    let admin = crate::process::init_admin(dir.path(), &db, &master);
    let port = crate::process::free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "serve",
        "--listen",
        &listen,
        "--tls-cert",
        cert_path.to_str().unwrap(),
    ];
    let mut cmd = crate::process::asapd(&args, dir.path(), &db, Some(&master));
    cmd.arg("--tls-key").arg(&key_path);
    let server = Server::spawn(cmd, port);
    server.wait_for_output("asapd listening");
    let base = format!("https://127.0.0.1:{port}");

    let admin_cli = |args: &[&str]| {
        let mut cmd = asapd_bare(args);
        cmd.args(["--url", &base])
            .env("ASAPD_CLIENT_ID", "admin")
            .env("ASAPD_CLIENT_SECRET", &admin);
        crate::process::output_within(cmd)
    };
    let ok = |out: Output| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(ok(admin_cli(&["callers", "list", "--cacert", ca])).contains("admin"));
    ok(admin_cli(&[
        "groups",
        "create",
        "g",
        "--set",
        r#"audiences=["svc-b"]"#,
        "--cacert",
        ca,
    ]));
    let created = ok(admin_cli(&[
        "callers",
        "create",
        "svc-a",
        "--set",
        r#"groups=["g"]"#,
        "--json",
        "--cacert",
        ca,
    ]));
    let created: Value = serde_json::from_str(&created).unwrap();
    let secret = created["client_secret"].as_str().unwrap();
    let token = ok(run(token_for_svc_a(&base, secret, &["--cacert", ca])));
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
    let health = format!("{base}/healthz");
    ok(run(asapd_bare(&[
        "healthcheck",
        "--url",
        &health,
        "--cacert",
        ca,
    ])));

    // Another self-signed certificate vouches for nothing else.
    let out = admin_cli(&["callers", "list", "--cacert", other]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not trusted"));
    let out = run(token_for_svc_a(&base, secret, &["--cacert", other]));
    assert!(!out.status.success());
    // The right certificate, but not for the name asked for.
    let by_name = format!("https://localhost:{port}");
    let out = run(token_for_svc_a(&by_name, secret, &["--cacert", ca]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not valid for name"), "{stderr}");
    server.stop();
}
