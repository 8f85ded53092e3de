//! Workload identity federation: what a trusted issuer and a caller's
//! binding to a federated identity may hold (docs/ARCHITECTURE.md,
//! "Federation"). Valid by construction; no I/O.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::group::check_audience;
use super::names::IssuerName;

/// Longest `iss`, subject or URL asapd keeps.
pub const MAX_TEXT_LEN: usize = 1024;
/// Audiences an issuer may list.
pub const MAX_ISSUER_AUDIENCES: usize = 16;
/// Claims one binding may require, and their size as compact JSON.
pub const MAX_BINDING_CLAIMS: usize = 16;
pub const MAX_BINDING_CLAIMS_BYTES: usize = 4096;
/// Bindings one caller may have.
pub const MAX_BINDINGS: usize = 32;

/// `issuer`: the tokens' exact `iss`. Without a `jwks_uri` it must be an
/// https URL, since OIDC Discovery reads `<issuer>/.well-known/…`; with one
/// it may be any name (an asapd caller's, whose ASAP tokens carry it).
pub fn check_issuer(value: &str, has_jwks_uri: bool) -> Result<(), String> {
    check_text(value, "issuer")?;
    if !has_jwks_uri {
        check_https_url(value).map_err(|m| {
            format!("{m}; without jwks_uri the issuer must be an https URL (OIDC Discovery)")
        })?;
    }
    Ok(())
}

/// An absolute `https://` URL with a host and no fragment or credentials.
pub fn check_https_url(value: &str) -> Result<(), String> {
    check_text(value, "URL")?;
    let url = url::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "https" {
        return Err("must be an https URL: keys are fetched over HTTPS only".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err("the URL may not carry a fragment or credentials".into());
    }
    Ok(())
}

fn check_text(value: &str, what: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.len() > MAX_TEXT_LEN {
        return Err(format!("{what} is longer than {MAX_TEXT_LEN} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} contains a control character"));
    }
    Ok(())
}

/// The audiences a token must name one of: required, never empty, so a
/// token minted for another service is never accepted here.
pub fn check_issuer_audiences(values: &[String]) -> Result<(), (Option<usize>, String)> {
    if values.is_empty() {
        return Err((
            None,
            "audiences must name at least one audience (such as asapd): tokens for other \
             services must not be accepted"
                .into(),
        ));
    }
    if values.len() > MAX_ISSUER_AUDIENCES {
        return Err((None, format!("at most {MAX_ISSUER_AUDIENCES} audiences")));
    }
    for (index, value) in values.iter().enumerate() {
        check_audience(value).map_err(|m| (Some(index), m))?;
    }
    Ok(())
}

/// The oldest a presented token may be (now − `iat`), in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "i64", into = "i64")]
#[schema(value_type = i64, minimum = 60, maximum = 86400, example = 3600)]
pub struct MaxTokenAge(i64);

impl MaxTokenAge {
    pub const MIN_SECS: i64 = 60;
    /// A day: Kubernetes refreshes projected tokens at 80 % of at most an
    /// hour unless told otherwise; older is a token lying around.
    pub const MAX_SECS: i64 = 86_400;

    pub fn secs(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for MaxTokenAge {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if (Self::MIN_SECS..=Self::MAX_SECS).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!(
                "max_token_age_secs must be between {} and {}, got {v}",
                Self::MIN_SECS,
                Self::MAX_SECS
            ))
        }
    }
}

impl From<MaxTokenAge> for i64 {
    fn from(v: MaxTokenAge) -> i64 {
        v.0
    }
}

/// A caller's binding to a federated identity: tokens of `issuer` whose
/// `sub` is `subject` and whose claims equal every entry of `claims`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "RawBinding")]
pub struct FederatedBinding {
    /// A trusted issuer's name (`/v1/admin/issuers`).
    #[schema(value_type = String)]
    pub issuer: IssuerName,
    /// The token's `sub`, matched exactly, e.g.
    /// `system:serviceaccount:payments:ledger`.
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub subject: String,
    /// Claims the token must carry with exactly these JSON values, e.g.
    /// `{"repository": "org/repo", "ref": "refs/heads/main"}`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Option<Object>)]
    pub claims: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    issuer: IssuerName,
    subject: String,
    #[serde(default)]
    claims: Option<Map<String, Value>>,
}

impl TryFrom<RawBinding> for FederatedBinding {
    type Error = String;
    fn try_from(raw: RawBinding) -> Result<Self, String> {
        check_text(&raw.subject, "subject")?;
        let claims = raw.claims.unwrap_or_default();
        check_binding_claims(&claims)?;
        Ok(Self {
            issuer: raw.issuer,
            subject: raw.subject,
            claims,
        })
    }
}

fn check_binding_claims(claims: &Map<String, Value>) -> Result<(), String> {
    if claims.len() > MAX_BINDING_CLAIMS {
        return Err(format!(
            "claims may hold at most {MAX_BINDING_CLAIMS} entries"
        ));
    }
    if let Some(name) = claims.keys().find(|k| k.is_empty() || k.len() > 255) {
        return Err(format!("claims: the name {name:?} must be 1 to 255 bytes"));
    }
    for reserved in ["iss", "sub"] {
        if claims.contains_key(reserved) {
            return Err(format!(
                "claims: {reserved} is matched by the binding's issuer and subject already"
            ));
        }
    }
    let size = serde_json::to_vec(claims).map_or(usize::MAX, |v| v.len());
    if size > MAX_BINDING_CLAIMS_BYTES {
        return Err(format!(
            "claims are {size} bytes of JSON; at most {MAX_BINDING_CLAIMS_BYTES}"
        ));
    }
    Ok(())
}

impl FederatedBinding {
    /// Whether a verified token's claims satisfy this binding. The subject
    /// is matched by the caller of this (an index lookup).
    pub fn admits(&self, claims: &Map<String, Value>) -> bool {
        self.claims
            .iter()
            .all(|(name, want)| claims.get(name) == Some(want))
    }
}

/// Bindings listed on one caller: each at most once, and a bounded count.
pub fn check_bindings(bindings: &[FederatedBinding]) -> Result<(), (Option<usize>, String)> {
    if bindings.len() > MAX_BINDINGS {
        return Err((None, format!("at most {MAX_BINDINGS} bindings per caller")));
    }
    for (index, binding) in bindings.iter().enumerate() {
        if bindings[..index].contains(binding) {
            return Err((Some(index), "this binding is listed twice".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn issuers_without_a_jwks_uri_must_be_https_urls() {
        assert!(check_issuer("https://kubernetes.default.svc", false).is_ok());
        assert!(check_issuer("http://k8s", false).is_err());
        assert!(check_issuer("svc-a", false).is_err());
        assert!(check_issuer("svc-a", true).is_ok());
        assert!(check_issuer("", true).is_err());
        assert!(check_https_url("https://user:pw@x/").is_err());
        assert!(check_https_url("https://x/#f").is_err());
    }

    #[test]
    fn audiences_are_required() {
        assert!(check_issuer_audiences(&[]).is_err());
        assert!(check_issuer_audiences(&["asapd".into()]).is_ok());
        assert_eq!(
            check_issuer_audiences(&["a".into(), "b c".into()])
                .unwrap_err()
                .0,
            Some(1)
        );
    }

    #[test]
    fn bindings_parse_and_admit_by_exact_json_value() {
        let b: FederatedBinding = serde_json::from_value(json!({
            "issuer": "k8s", "subject": "system:serviceaccount:payments:ledger",
            "claims": {"kubernetes.io": {"namespace": "payments"}}
        }))
        .unwrap();
        let mut claims = Map::new();
        claims.insert("kubernetes.io".into(), json!({"namespace": "payments"}));
        assert!(b.admits(&claims));
        claims.insert("kubernetes.io".into(), json!({"namespace": "other"}));
        assert!(!b.admits(&claims));
        let bad = serde_json::from_value::<FederatedBinding>(
            json!({"issuer": "k8s", "subject": "s", "claims": {"sub": "x"}}),
        );
        assert!(bad.is_err());
        let empty =
            serde_json::from_value::<FederatedBinding>(json!({"issuer": "k8s", "subject": ""}));
        assert!(empty.is_err());
    }
}
