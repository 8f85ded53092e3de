//! A stand-in OIDC issuer on loopback, for the federation tests: HTTPS with
//! its own self-signed certificate (handed to asapd as `ca_pem`), OIDC
//! Discovery and a JWKS with `Cache-Control`, RS256 keys it can rotate,
//! and tokens with exactly the claims Kubernetes and GitHub Actions put in
//! theirs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use asapd::crypto::{JwsSigner, KeyPair};
use asapd::domain::algorithm::Algorithm;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Keys {
    /// The signing key first; older ones stay published until rotated out.
    signers: Vec<Arc<JwsSigner>>,
    generation: usize,
}

pub struct OidcIssuer {
    /// `https://localhost:<port>`: the `iss` of its tokens.
    pub url: String,
    /// Its certificate, to trust as `ca_pem`.
    pub ca_pem: String,
    pub jwks_fetches: Arc<AtomicUsize>,
    pub discovery_fetches: Arc<AtomicUsize>,
    keys: Arc<RwLock<Keys>>,
    server: tokio::task::JoinHandle<()>,
    _certs: tempfile::TempDir,
}

impl Drop for OidcIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn new_signer(generation: usize) -> Arc<JwsSigner> {
    let pair = KeyPair::generate(Algorithm::RS256).expect("RSA key");
    Arc::new(JwsSigner::new(format!("key-{generation}"), pair))
}

impl OidcIssuer {
    pub async fn start() -> Self {
        crate::helpers::install_crypto_provider();
        let certs = tempfile::tempdir().unwrap();
        let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
        asapd::crypto::tls::ensure_dev_certificate(&cert, &key).unwrap();
        let tls = asapd::crypto::tls::server_config(&cert, &key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let keys = Arc::new(RwLock::new(Keys {
            signers: vec![new_signer(1)],
            generation: 1,
        }));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let discovery_fetches = Arc::new(AtomicUsize::new(0));
        let site = Site {
            url: url.clone(),
            keys: keys.clone(),
            jwks_fetches: jwks_fetches.clone(),
            discovery_fetches: discovery_fetches.clone(),
        };
        let server = tokio::spawn(async move {
            let site = Arc::new(site);
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, site) = (acceptor.clone(), site.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        site.serve(tls).await;
                    }
                });
            }
        });
        Self {
            url,
            ca_pem: std::fs::read_to_string(&cert).unwrap(),
            jwks_fetches,
            discovery_fetches,
            keys,
            server,
            _certs: certs,
        }
    }

    /// Replaces its key with a new one under a new kid: tokens signed from
    /// now on carry a kid asapd has not seen.
    pub fn rotate(&self) {
        let mut keys = self.keys.write().unwrap();
        keys.generation += 1;
        keys.signers = vec![new_signer(keys.generation)];
    }

    fn signer(&self) -> Arc<JwsSigner> {
        self.keys.read().unwrap().signers[0].clone()
    }

    /// A token over `claims`, RS256 with the current key.
    pub fn sign(&self, claims: &Value) -> String {
        self.signer().sign(claims).unwrap()
    }

    /// A token signed by the current key but with another header.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.signer().key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The current key's kid.
    pub fn kid(&self) -> String {
        self.signer().kid.clone()
    }

    /// The current public key as SPKI PEM (what an attacker can read).
    pub fn public_pem(&self) -> String {
        self.signer().key.public().pem.clone()
    }

    /// The claims of a Kubernetes projected service-account token for
    /// `namespace`/`account`, issued now for `aud`, valid an hour.
    pub fn kubernetes_claims(&self, namespace: &str, account: &str, aud: &str) -> Value {
        let now = now();
        json!({
            "aud": [aud],
            "exp": now + 3600,
            "iat": now,
            "iss": self.url,
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": format!("{account}-7c9d8f6b5-x2x4q"), "uid": "1f6a2f6e-8c1d-4a9e-9d8a-3c0b5e0f7a11"},
                "serviceaccount": {"name": account, "uid": "5d3e8b1c-2f4a-4c6d-8e9f-0a1b2c3d4e5f"}
            },
            "nbf": now,
            "sub": format!("system:serviceaccount:{namespace}:{account}"),
        })
    }

    /// The claims of a GitHub Actions OIDC token of a job of `repository`
    /// on `git_ref`, for `aud`.
    pub fn github_claims(&self, repository: &str, git_ref: &str, aud: &str) -> Value {
        let now = now();
        let owner = repository.split('/').next().unwrap();
        json!({
            "jti": format!("gh-{now}-{}", rand::random::<u32>()),
            "sub": format!("repo:{repository}:ref:{git_ref}"),
            "aud": aud,
            "ref": git_ref,
            "sha": "2f4c8e1a9b3d5f7c6e0a1b2c3d4e5f60718293a4",
            "repository": repository,
            "repository_owner": owner,
            "run_id": "6453890213",
            "workflow": "deploy",
            "job_workflow_ref": format!("{repository}/.github/workflows/deploy.yml@{git_ref}"),
            "environment": "production",
            "iss": self.url,
            "nbf": now - 5,
            "iat": now,
            "exp": now + 300,
        })
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Site {
    url: String,
    keys: Arc<RwLock<Keys>>,
    jwks_fetches: Arc<AtomicUsize>,
    discovery_fetches: Arc<AtomicUsize>,
}

impl Site {
    /// One request per connection: read the head, answer, close.
    async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(&self, mut io: S) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head);
        let path = head.split_whitespace().nth(1).unwrap_or("/");
        let (status, body) = match path {
            "/.well-known/openid-configuration" => {
                self.discovery_fetches.fetch_add(1, Ordering::SeqCst);
                let jwks_uri = format!("{}/openid/v1/jwks", self.url);
                ("200 OK", json!({"issuer": self.url, "jwks_uri": jwks_uri}))
            }
            "/openid/v1/jwks" => {
                self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                let keys = self.keys.read().unwrap();
                let jwks: Vec<Value> = keys
                    .signers
                    .iter()
                    .map(|s| s.key.public().jwk(&s.kid, Algorithm::RS256))
                    .collect();
                ("200 OK", json!({ "keys": jwks }))
            }
            _ => ("404 Not Found", json!({})),
        };
        let body = body.to_string();
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncache-control: public, max-age=300\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = io.write_all(response.as_bytes()).await;
        let _ = io.shutdown().await;
    }
}
