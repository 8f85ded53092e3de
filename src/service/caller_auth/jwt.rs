//! Authentication by a signed JWT instead of a secret: a workload identity
//! token from a trusted issuer (`federated`), or an assertion a caller
//! signs with a key only it holds (`client_key`, RFC 7523). The token is
//! read unverified only to choose which of the two checks it; everything
//! it claims is trusted only once that check has passed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{client_key, federated, AuthMethod, Authenticated, PresentedJwt};
use crate::audit::event::truncate;
use crate::service::error::ServiceError;
use crate::state::AppState;

/// What a presented token says about itself, before any check: for routing
/// and for the audit of a refusal (never the token itself).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Peeked {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub jti: Option<String>,
}

impl Peeked {
    /// Reads the payload of a compact JWS without verifying it. Claims of
    /// the wrong type read as absent; the checks that follow refuse them.
    pub fn of(token: &str) -> Option<Self> {
        let mut parts = token.split('.');
        let (_header, payload) = (parts.next()?, parts.next()?);
        parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let value: Value = serde_json::from_slice(&bytes).ok()?;
        let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            iss: text("iss"),
            sub: text("sub"),
            jti: text("jti"),
        })
    }

    /// The audit detail of a presented token: what it claims, bounded.
    pub fn audit(&self) -> Value {
        let bounded = |s: &Option<String>| s.as_deref().map(|s| truncate(s, 256));
        json!({ "iss": bounded(&self.iss), "sub": bounded(&self.sub), "jti": bounded(&self.jti) })
    }
}

/// Why a presented token was refused. `Rejected` is a failed
/// authentication (audited as `auth.failed`, counted toward the source's
/// failed-attempt limit); `Failed` is asapd's own trouble (an issuer's keys
/// that could not be fetched: 503).
#[derive(Debug)]
pub enum JwtError {
    Rejected { reason: String },
    Failed(ServiceError),
}

impl JwtError {
    pub fn rejected(reason: impl Into<String>) -> Self {
        JwtError::Rejected {
            reason: reason.into(),
        }
    }
}

impl From<ServiceError> for JwtError {
    fn from(e: ServiceError) -> Self {
        JwtError::Failed(e)
    }
}

/// Checks `jwt` with the method its `iss` selects: a trusted issuer's, or
/// else the key-bound caller's of that name.
pub(super) async fn authenticate(
    state: &AppState,
    jwt: &PresentedJwt,
    peeked: &Peeked,
) -> Result<Authenticated, JwtError> {
    let Some(iss) = peeked.iss.as_deref() else {
        return Err(JwtError::rejected(
            "the presented token is not a JWT with an iss claim",
        ));
    };
    if let Some(found) = federated::authenticate(state, jwt, iss).await? {
        return Ok(found);
    }
    client_key::authenticate(state, jwt, iss).await
}

/// The method an audit record names.
impl AuthMethod {
    pub fn audit_name(&self) -> String {
        match self {
            AuthMethod::Secret => "secret".to_owned(),
            AuthMethod::Federated { issuer } => format!("federated:{issuer}"),
            AuthMethod::ClientKey { id } => format!("client_key:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn peeks_the_claims_that_route_and_audit_a_token() {
        let p = Peeked::of(&jwt(
            r#"{"iss":"https://k8s","sub":"s","jti":"j","aud":"x"}"#,
        ));
        let p = p.expect("a compact JWS");
        assert_eq!(p.iss.as_deref(), Some("https://k8s"));
        assert_eq!(p.sub.as_deref(), Some("s"));
        assert_eq!(p.jti.as_deref(), Some("j"));
    }

    #[test]
    fn claims_of_the_wrong_type_read_as_absent_and_junk_as_none() {
        let p = Peeked::of(&jwt(r#"{"iss":7,"sub":["a"]}"#)).expect("JSON payload");
        assert!(p.iss.is_none() && p.sub.is_none() && p.jti.is_none());
        assert!(Peeked::of("not a token").is_none());
        assert!(Peeked::of("a.b").is_none());
        let four = format!("{}.d", jwt(r#"{"iss":"i"}"#));
        assert!(Peeked::of(&four).is_none());
        assert!(Peeked::of(&jwt("[1]")).is_some_and(|p| p.iss.is_none()));
        assert!(Peeked::of("a.%%%.c").is_none());
    }

    #[test]
    fn the_audit_detail_is_bounded() {
        let long = "x".repeat(10_000);
        let p = Peeked {
            iss: Some(long),
            ..Peeked::default()
        };
        let detail = p.audit();
        assert!(detail["iss"].as_str().unwrap().chars().count() <= 257);
    }
}
