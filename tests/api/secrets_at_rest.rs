//! No private key and no caller secret in the clear: not in the database,
//! not in any response, not in the log.

use asapd::crypto::MasterKey;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{json, Value};
use sqlx::{Connection, Row};

use crate::helpers::{fresh_database_url, is_postgres};
use crate::process::{init_admin, Server};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything the database holds, as bytes: the SQLite files, or every
/// PostgreSQL row as JSON (bytea shows as hex there).
async fn database_dump(dir: &std::path::Path, url: &str) -> Vec<u8> {
    if is_postgres() {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let mut dump = String::new();
        for table in tables {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT row_to_json(t)::text AS j FROM {table} t"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            for row in rows {
                dump.push_str(&row.get::<String, _>("j"));
                dump.push('\n');
            }
        }
        dump.into_bytes()
    } else {
        let mut dump = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("asapd.db")
            {
                dump.extend(std::fs::read(path).unwrap());
            }
        }
        assert!(!dump.is_empty());
        dump
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts none of `needles` (raw or hex) occurs in `haystack`.
fn assert_absent(what: &str, haystack: &[u8], needles: &[(String, Vec<u8>)]) {
    let lower = String::from_utf8_lossy(haystack)
        .to_lowercase()
        .into_bytes();
    for (name, needle) in needles {
        assert!(!contains(haystack, needle), "{what} contains {name}");
        assert!(
            !contains(&lower, hex(needle).as_bytes()),
            "{what} contains {name} (hex)"
        );
    }
    assert!(
        !contains(haystack, b"PRIVATE KEY"),
        "{what} contains a private key PEM"
    );
    // PKCS#8 PrivateKeyInfo headers: version 0 then the RSA / EC algorithm.
    for (name, prefix) in [
        ("PKCS#8 RSA", "020100300d06092a864886f70d0101010500"),
        ("PKCS#8 EC", "020100301306072a8648ce3d0201"),
    ] {
        let raw: Vec<u8> = (0..prefix.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&prefix[i..i + 2], 16).unwrap())
            .collect();
        assert!(
            !contains(haystack, &raw),
            "{what} contains a {name} private key"
        );
        assert!(
            !contains(&lower, prefix.as_bytes()),
            "{what} contains a {name} private key (hex)"
        );
    }
}

#[tokio::test]
async fn no_secret_or_private_key_in_database_responses_or_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = MasterKey::generate_base64();
    let admin = init_admin(dir.path(), &db, &key);
    let server = Server::start(dir.path(), &db, &key).await;
    let client = crate::helpers::http();
    let mut responses = Vec::<u8>::new();
    let mut needles = vec![("admin secret".to_owned(), admin.clone().into_bytes())];

    let mut call = async |method: reqwest::Method, path: &str, body: Value| -> Value {
        let res = client
            .request(method, server.url(path))
            .basic_auth("admin", Some(&admin))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        let bytes = res.bytes().await.unwrap();
        responses.extend_from_slice(&bytes);
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };

    call(
        reqwest::Method::POST,
        "/v1/admin/groups",
        json!({"name": "g", "audiences": ["x"]}),
    )
    .await;
    let mut secrets = Vec::new();
    for (name, alg) in [
        ("svc-ec", "ES256"),
        ("svc-rsa", "RS256"),
        ("svc-p384", "ES384"),
    ] {
        let c = call(
            reqwest::Method::POST,
            "/v1/admin/callers",
            json!({"name": name, "groups": ["g"], "algorithm": alg}),
        )
        .await;
        secrets.push(c["client_secret"].as_str().unwrap().to_owned());
        let s = call(
            reqwest::Method::POST,
            &format!("/v1/admin/callers/{name}/secrets"),
            json!({}),
        )
        .await;
        secrets.push(s["client_secret"].as_str().unwrap().to_owned());
        call(
            reqwest::Method::POST,
            &format!("/v1/admin/callers/{name}/keys"),
            json!({}),
        )
        .await;
    }
    // An imported key is one whose private half we know: look for it.
    let imported = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let der = imported.to_pkcs8_der().unwrap();
    let pem = imported.to_pkcs8_pem(LineEnding::LF).unwrap();
    call(
        reqwest::Method::POST,
        "/v1/admin/callers/svc-ec/keys/import",
        json!({"private_key": pem.as_str(), "name": "imported", "activate": true}),
    )
    .await;
    call(
        reqwest::Method::GET,
        "/v1/admin/callers/svc-ec/keys",
        Value::Null,
    )
    .await;
    call(reqwest::Method::GET, "/v1/admin/callers", Value::Null).await;

    let scalar = imported.to_bytes();
    needles.push(("imported key DER".into(), der.as_bytes().to_vec()));
    needles.push(("imported key scalar".into(), scalar.to_vec()));
    needles.push((
        "imported key base64".into(),
        STANDARD.encode(der.as_bytes()).into_bytes(),
    ));
    for (i, s) in secrets.iter().enumerate() {
        needles.push((format!("caller secret {i}"), s.clone().into_bytes()));
    }

    let log = server.stop();
    assert!(
        log.contains("asapd listening"),
        "the log was captured: {log}"
    );
    assert_absent("the log", log.as_bytes(), &needles);
    // Secrets are shown once, in the response that created them; private
    // keys never.
    let key_needles: Vec<_> = needles
        .iter()
        .filter(|(n, _)| n.starts_with("imported"))
        .cloned()
        .collect();
    assert_absent("the responses", &responses, &key_needles);
    assert_absent(
        "the database",
        &database_dump(dir.path(), &db).await,
        &needles,
    );
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.permissions().mode() & 0o777
}

/// Under umask 022, `asapd init` and `serve --dev` still make the data dir
/// the owner's only (0700) and the database and its WAL files 0600: they
/// hold sealed private keys, secret hashes and the audit log. SQLite only:
/// PostgreSQL keeps no file here.
#[test]
fn data_dir_and_database_files_are_owner_only_under_umask_022() {
    use crate::process::{
        asapd_bare, free_port, output_within, under_umask_022, wait_for_dev_server,
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("init-data");
    let mut init = asapd_bare(&["init", "--json", "--data-dir", data.to_str().unwrap()]);
    init.env("ASAPD_MASTER_KEY", MasterKey::generate_base64());
    let out = output_within(under_umask_022(&init));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&data), 0o700, "data dir made by init");
    assert_eq!(mode(&data.join("asapd.db")), 0o600, "asapd.db made by init");

    let data = tmp.path().join("dev-data");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let serve = asapd_bare(&[
        "serve",
        "--dev",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        &listen,
    ]);
    let server = wait_for_dev_server(Server::spawn(under_umask_022(&serve), port), &data);
    assert_eq!(mode(&data), 0o700, "data dir made by serve --dev");
    for file in ["asapd.db", "asapd.db-wal", "asapd.db-shm", "master.key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file} made by serve --dev");
    }
    server.stop();
}
