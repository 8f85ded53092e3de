//! Shared by the token, OAuth2 and Bearer tests: callers with grants,
//! token requests, and decoding tokens the way a verifier would (the PEM
//! from the public key repository).

use asapd::store::audit::{self as audit_store, AuditFilter, AuditRow};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Header, Validation};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// A caller's credentials.
pub struct Caller {
    pub name: String,
    pub secret: String,
    pub kid: String,
}

impl TestApp {
    /// Creates group `name` from a full body (`audiences`, `cidrs`, …).
    pub async fn group(&self, body: Value) {
        let res = self
            .admin_json(Method::POST, "/v1/admin/groups", body.clone())
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "create group {body}");
    }

    /// Creates a caller; `extra` adds fields (`groups`, `cidrs`, …).
    pub async fn caller(&self, name: &str, extra: Value) -> Caller {
        let mut body = json!({ "name": name });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        let created = self.create_caller(body).await;
        Caller {
            name: name.to_owned(),
            secret: created["client_secret"].as_str().unwrap().to_owned(),
            kid: created["kid"].as_str().unwrap().to_owned(),
        }
    }

    /// A group `g-<name>` granting `audiences` (max 600 s) and a caller in it.
    pub async fn caller_granted(&self, name: &str, audiences: &[&str]) -> Caller {
        let group = format!("g-{name}");
        self.group(json!({"name": group, "audiences": audiences, "max_lifetime": 600}))
            .await;
        self.caller(name, json!({ "groups": [group] })).await
    }

    /// `POST /v1/tokens` as `caller`.
    pub async fn token_request(&self, caller: &Caller, body: Value) -> Response {
        self.request(Method::POST, "/v1/tokens")
            .basic_auth(&caller.name, Some(&caller.secret))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A token for `audience`, asserting success.
    pub async fn token(&self, caller: &Caller, audience: &str) -> String {
        let res = self
            .token_request(caller, json!({ "audience": audience }))
            .await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "token: {body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Verifies `token` as an ASAP verifier would: key by kid from the
    /// public repository, algorithm from the JWKS entry, audience checked.
    pub async fn verify(&self, token: &str, audience: &str) -> (Header, Value) {
        let header = decode_header(token).unwrap();
        let kid = header.kid.clone().expect("kid in header");
        let res = self
            .request(Method::GET, &format!("/v1/keys/{kid}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "key {kid} published");
        let pem = res.text().await.unwrap();
        let alg: Algorithm = self
            .jwks()
            .await
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .and_then(|k| k["alg"].as_str())
            .expect("kid in JWKS")
            .parse()
            .unwrap();
        let data = decode_as_verifier(token, &pem, alg, audience);
        (data.header, data.claims)
    }

    /// Audit rows with `action`, newest first.
    pub async fn audit_rows(&self, action: &str) -> Vec<AuditRow> {
        let mut conn = self.state.store.acquire().await.unwrap();
        let filter = AuditFilter {
            action: Some(action.to_owned()),
            ..AuditFilter::default()
        };
        audit_store::query(&mut conn, &filter, None, 1000)
            .await
            .unwrap()
    }

    /// The value of the Prometheus sample `name` whose labels include
    /// every one of `labels` (`caller="svc-a"`).
    pub fn metric(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let text = String::from_utf8(self.state.metrics.render()).unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| {
                let (series, _) = l.rsplit_once(' ').unwrap_or((l, ""));
                let metric = series.split('{').next().unwrap_or(series);
                metric == name && labels.iter().all(|want| series.contains(want))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// The detail of an audit row as JSON.
pub fn detail(row: &AuditRow) -> Value {
    serde_json::from_str(&row.detail).unwrap()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Decodes `token` as an ASAP verifier would with the SPKI `pem` and
/// `alg`: audience checked, no leeway, the claims ASAP requires present.
pub fn decode_as_verifier(
    token: &str,
    pem: &str,
    alg: Algorithm,
    audience: &str,
) -> jsonwebtoken::TokenData<Value> {
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
        _ => DecodingKey::from_rsa_pem(pem.as_bytes()),
    }
    .unwrap();
    let mut validation = Validation::new(alg);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 0;
    decode::<Value>(token, &key, &validation).expect("token verifies")
}
