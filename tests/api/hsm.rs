//! A fresh SoftHSM2 token per test, and the real `asapd` binary serving
//! with `keys.backend = "pkcs11"` on it.
//!
//! SoftHSM2 reads its configuration (`SOFTHSM2_CONF`) once per process,
//! at `C_Initialize`, so each asapd under test is its own process with the
//! variable set for it alone; the test process never loads the module.

use std::path::{Path, PathBuf};
use std::process::Command;

use asapd::crypto::MasterKey;
use jsonwebtoken::{decode_header, Algorithm};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{fresh_database_url, http};
use crate::process::{asapd, free_port, init_admin, Server};

pub const LABEL: &str = "asapd-test";
pub const PIN: &str = "0123456";
const SO_PIN: &str = "87654321";

/// The PKCS#11 module: `ASAPD_TEST_PKCS11_MODULE`, or SoftHSM2 where
/// Debian puts it.
pub fn module() -> PathBuf {
    if let Ok(path) = std::env::var("ASAPD_TEST_PKCS11_MODULE") {
        return path.into();
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .unwrap_or_else(|| "/usr/lib/softhsm/libsofthsm2.so".into())
}

/// Fails (never passes having checked nothing) where SoftHSM2 is missing.
pub fn require_softhsm() {
    let found = Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        found && module().exists(),
        "this test needs SoftHSM2 and OpenSC (Debian softhsm2, opensc; `make test` installs \
         them through scripts/prereqs.sh)"
    );
}

/// A token in its own directory.
pub struct Hsm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub tokens: PathBuf,
}

impl Hsm {
    pub fn new() -> Hsm {
        require_softhsm();
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let hsm = Hsm { dir, conf, tokens };
        let out = hsm
            .command("softhsm2-util")
            .args(["--init-token", "--free", "--label", LABEL])
            .args(["--so-pin", SO_PIN, "--pin", PIN])
            .output()
            .unwrap();
        assert!(out.status.success(), "init token: {out:?}");
        hsm
    }

    /// `program` with `SOFTHSM2_CONF` pointing at this token.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SOFTHSM2_CONF", &self.conf);
        cmd
    }

    /// `asapd args…` on this token with `pin`.
    pub fn asapd(
        &self,
        args: &[&str],
        data: &Path,
        db: &str,
        master_key: &str,
        pin: &str,
    ) -> Command {
        let mut cmd = asapd(args, data, db, Some(master_key));
        cmd.env("SOFTHSM2_CONF", &self.conf)
            .env("ASAPD_KEYS__BACKEND", "pkcs11")
            .env("ASAPD_PKCS11__MODULE", module())
            .env("ASAPD_PKCS11__TOKEN_LABEL", LABEL)
            .env("ASAPD_PKCS11__PIN", pin)
            .env("ASAPD_PKCS11__SESSIONS", "2");
        cmd
    }

    /// `pkcs11-tool --list-objects --type privkey`: its output.
    pub fn list_private_keys(&self) -> String {
        list_private_keys_in(&self.conf)
    }

    /// Takes the token away (its directory moved aside), as a pulled HSM.
    pub fn remove(&self) -> PathBuf {
        let away = self.dir.path().join("tokens.away");
        std::fs::rename(&self.tokens, &away).unwrap();
        std::fs::create_dir(&self.tokens).unwrap();
        away
    }

    /// Puts the token back.
    pub fn restore(&self, away: &Path) {
        std::fs::remove_dir(&self.tokens).unwrap();
        std::fs::rename(away, &self.tokens).unwrap();
    }
}

/// `pkcs11-tool --list-objects --type privkey` on the token of the
/// SoftHSM2 configuration `conf`: its output.
pub fn list_private_keys_in(conf: &Path) -> String {
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", conf)
        .arg("--module")
        .arg(module())
        .args(["--token-label", LABEL, "--login", "--pin", PIN])
        .args(["--list-objects", "--type", "privkey"])
        .output()
        .expect("run pkcs11-tool (Debian opensc)");
    assert!(out.status.success(), "pkcs11-tool: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The `Access:` items pkcs11-tool prints for the private key labelled
/// `kid`, if it lists one.
pub fn access_of(listing: &str, kid: &str) -> Option<Vec<String>> {
    let start = listing.find(&format!("label:      {kid}\n"))?;
    let rest = &listing[start..];
    let line = rest
        .lines()
        .find(|l| l.trim_start().starts_with("Access:"))?;
    Some(
        line.trim_start()["Access:".len()..]
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect(),
    )
}

/// asapd on a token, with its database, master key and admin.
pub struct HsmApp {
    pub server: Server,
    pub data: tempfile::TempDir,
    pub db: String,
    pub master_key: String,
    pub admin: String,
}

impl HsmApp {
    /// A fresh database; `serve` on `hsm`.
    pub async fn start(hsm: &Hsm) -> HsmApp {
        let data = tempfile::tempdir().unwrap();
        let db = fresh_database_url(data.path()).await;
        let master_key = MasterKey::generate_base64();
        let admin = init_admin(data.path(), &db, &master_key);
        Self::serving(hsm, data, db, master_key, admin).await
    }

    async fn serving(
        hsm: &Hsm,
        data: tempfile::TempDir,
        db: String,
        master_key: String,
        admin: String,
    ) -> HsmApp {
        let server = serve(hsm, data.path(), &db, &master_key).await;
        HsmApp {
            server,
            data,
            db,
            master_key,
            admin,
        }
    }

    /// Another replica (or a restart) on the same database and token.
    pub async fn replica(&self, hsm: &Hsm) -> Server {
        serve(hsm, self.data.path(), &self.db, &self.master_key).await
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// Stops `serve` and starts it again on the same database and token.
    pub async fn restart(self, hsm: &Hsm) -> HsmApp {
        let HsmApp {
            server,
            data,
            db,
            master_key,
            admin,
        } = self;
        server.stop();
        Self::serving(hsm, data, db, master_key, admin).await
    }

    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = http()
            .request(method, self.url(path))
            .basic_auth("admin", Some(&self.admin));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A group granting audience `x` and a caller in it signing with
    /// `algorithm`: (name, secret, kid).
    pub async fn caller(&self, name: &str, algorithm: &str) -> (String, String, String) {
        let group = format!("g-{name}");
        let body = json!({"name": group, "audiences": ["x"], "max_lifetime": 600});
        let (status, _) = self
            .admin(Method::POST, "/v1/admin/groups", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let body = json!({"name": name, "groups": [group], "algorithm": algorithm});
        let (status, created) = self
            .admin(Method::POST, "/v1/admin/callers", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let secret = created["client_secret"].as_str().unwrap().to_owned();
        (
            name.to_owned(),
            secret,
            created["kid"].as_str().unwrap().to_owned(),
        )
    }
}

async fn serve(hsm: &Hsm, data: &Path, db: &str, master_key: &str) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let cmd = hsm.asapd(&["serve", "--listen", &listen], data, db, master_key, PIN);
    Server::spawn(cmd, port).healthy().await
}

/// `POST /v1/tokens` on `server` as (name, secret): status and body.
pub async fn token_request(server: &Server, name: &str, secret: &str) -> (StatusCode, Value) {
    let res = http()
        .post(server.url("/v1/tokens"))
        .basic_auth(name, Some(secret))
        .json(&json!({"audience": "x"}))
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

/// A token, asserting success.
pub async fn token(server: &Server, name: &str, secret: &str) -> String {
    let (status, body) = token_request(server, name, secret).await;
    assert_eq!(status, StatusCode::OK, "token: {body}");
    body["token"].as_str().unwrap().to_owned()
}

/// Verifies `token` as an ASAP verifier would against `server`: the PEM of
/// its kid from the key repository, the algorithm from the JWKS. Returns
/// the kid and the algorithm.
pub async fn verify(server: &Server, token: &str) -> (String, Algorithm) {
    let kid = decode_header(token).unwrap().kid.expect("kid");
    let res = http()
        .get(server.url(&format!("/v1/keys/{kid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "key {kid} published");
    let pem = res.text().await.unwrap();
    let jwks: Value = http()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alg: Algorithm = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .and_then(|k| k["alg"].as_str())
        .expect("kid in JWKS")
        .parse()
        .unwrap();
    crate::token_support::decode_as_verifier(token, &pem, alg, "x");
    (kid, alg)
}
