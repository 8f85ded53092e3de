//! Configuration layers, later wins: defaults → TOML file (`--config` /
//! `ASAPD_CONFIG`) → `ASAPD_*` environment → command-line flags, shown on
//! the real binary by the port it listens on and the algorithm of a new
//! caller's key.

use std::path::Path;
use std::process::Command;

use asapd::crypto::MasterKey;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::fresh_database_url;
use crate::process::{asapd, free_port, init_admin, output_within, Server};

/// Creates caller `name` without an algorithm (so the configured default
/// applies) and returns the algorithm of its key as published in the JWKS.
async fn default_algorithm_of_a_new_caller(server: &Server, admin: &str, name: &str) -> String {
    let client = crate::helpers::http();
    let res = client
        .post(server.url("/v1/admin/callers"))
        .basic_auth("admin", Some(admin))
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let created: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let jwks: Value = crate::helpers::http()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let published = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == created["kid"])
        .unwrap_or_else(|| panic!("{} in the JWKS: {jwks}", created["kid"]));
    assert_eq!(published["alg"], created["algorithm"], "{created}");
    created["algorithm"].as_str().unwrap().to_owned()
}

/// Spawns `cmd` and waits until it answers on `port`.
async fn serve(cmd: Command, port: u16) -> Server {
    Server::spawn(cmd, port).healthy().await
}

fn listen(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn write_key_file(path: &Path, key: &str) {
    std::fs::write(path, format!("{key}\n")).unwrap();
}

#[tokio::test]
async fn file_then_environment_then_flags_each_win() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = MasterKey::generate_base64();
    let admin = init_admin(dir.path(), &db, &key);
    let key_file = dir.path().join("master.key.b64");
    write_key_file(&key_file, &key);

    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let config = dir.path().join("asapd.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{}\"\nmaster_key_file = \"{}\"\n\n[keys]\ndefault_algorithm = \"RS256\"\n",
            listen(file_port),
            key_file.display()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();

    // The file over the defaults (127.0.0.1:8080, ES256, no master key):
    // its port, its algorithm, and the master key from its master_key_file.
    let cmd = asapd(&["serve", "--config", config_arg], dir.path(), &db, None);
    let server = serve(cmd, file_port).await;
    assert_eq!(
        default_algorithm_of_a_new_caller(&server, &admin, "from-file").await,
        "RS256"
    );
    server.stop();

    // The environment over the file (named by ASAPD_CONFIG this time); an
    // unknown ASAPD_* variable is warned about and does not stop the start.
    let with_env = || {
        let mut cmd = asapd(&["serve"], dir.path(), &db, None);
        cmd.env("ASAPD_CONFIG", &config)
            .env("ASAPD_LISTEN", listen(env_port))
            .env("ASAPD_KEYS__DEFAULT_ALGORITHM", "ES384")
            .env("ASAPD_FOO", "1");
        cmd
    };
    let server = serve(with_env(), env_port).await;
    assert_eq!(
        default_algorithm_of_a_new_caller(&server, &admin, "from-env").await,
        "ES384"
    );
    let output = server.stop();
    assert!(
        output.contains("unknown environment variable ASAPD_FOO"),
        "{output}"
    );

    // The flag over the environment and the file; the environment still
    // over the file for what no flag sets.
    let mut cmd = with_env();
    cmd.args(["--listen", &listen(flag_port)]);
    let server = serve(cmd, flag_port).await;
    assert_eq!(
        default_algorithm_of_a_new_caller(&server, &admin, "from-flag").await,
        "ES384"
    );
    server.stop();
}

#[tokio::test]
async fn master_key_file_from_the_environment_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = MasterKey::generate_base64();
    let admin = init_admin(dir.path(), &db, &key);
    let right = dir.path().join("right.key");
    let wrong = dir.path().join("wrong.key");
    write_key_file(&right, &key);
    write_key_file(&wrong, &MasterKey::generate_base64());
    let config = dir.path().join("asapd.toml");
    std::fs::write(
        &config,
        format!("master_key_file = \"{}\"\n", right.display()),
    )
    .unwrap();

    // ASAPD_MASTER_KEY_FILE alone.
    let port = free_port();
    let mut cmd = asapd(&["serve", "--listen", &listen(port)], dir.path(), &db, None);
    cmd.env("ASAPD_MASTER_KEY_FILE", &right);
    let server = serve(cmd, port).await;
    let res = crate::helpers::http()
        .get(server.url("/v1/admin/callers"))
        .basic_auth("admin", Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    server.stop();

    // ASAPD_MASTER_KEY_FILE over the file's master_key_file: the key it
    // names is the one read, and being the wrong one, stops the start.
    let mut cmd = asapd(&["serve", "--listen", "127.0.0.1:0"], dir.path(), &db, None);
    cmd.env("ASAPD_CONFIG", &config)
        .env("ASAPD_MASTER_KEY_FILE", &wrong);
    let out = output_within(cmd);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("master key does not match"), "{stderr}");
}
