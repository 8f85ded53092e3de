//! The claims of an issued token, and the rules for what a caller may add
//! (steps 6 and 7 of docs/ARCHITECTURE.md, "The path of a token request").

use serde::Serialize;
use serde_json::{Map, Value};

use super::denial::{Denial, Rule};

/// Registered claims asapd sets itself; a request may not set them through
/// `claims` (`sub` goes through `subject`, which needs a grant's permission).
pub const RESERVED: [&str; 7] = ["iss", "sub", "aud", "jti", "iat", "nbf", "exp"];

/// Clock skew tolerated between replicas when a token asapd issued is
/// checked, in seconds: it stays valid this long past its `exp`, so a
/// revoked jti is kept as long.
pub const LEEWAY_SECS: i64 = 5;

/// Longest `subject`, like an audience.
const MAX_SUBJECT_LEN: usize = 255;

/// Step 6: extra claims may not set a reserved claim and must fit in
/// `max_bytes` of compact JSON.
pub fn check_extra(claims: &Map<String, Value>, max_bytes: usize) -> Result<(), Denial> {
    if let Some(name) = claims.keys().find(|k| RESERVED.contains(&k.as_str())) {
        let hint = if name == "sub" {
            "; request another subject with the subject field"
        } else {
            ""
        };
        return Err(Denial::on_field(
            Rule::ReservedClaim,
            format!("claims.{name}"),
            format!("claims.{name}: {name} is a registered claim asapd sets itself{hint}"),
        ));
    }
    let size = serde_json::to_vec(claims).map_or(usize::MAX, |v| v.len());
    if size > max_bytes {
        return Err(Denial::on_field(
            Rule::ClaimsTooLarge,
            "claims",
            format!("claims: {size} bytes of JSON is more than the {max_bytes} allowed"),
        ));
    }
    Ok(())
}

/// With `request`, asapd sets `qsh` itself, so `claims` may not.
pub fn check_no_qsh(claims: &Map<String, Value>) -> Result<(), Denial> {
    if claims.contains_key("qsh") {
        return Err(Denial::on_field(
            Rule::ReservedClaim,
            "claims.qsh",
            "claims.qsh: asapd computes qsh from request; send one or the other",
        ));
    }
    Ok(())
}

/// A requested subject: printable, 1..=255 characters.
pub fn check_subject(subject: &str) -> Result<(), Denial> {
    if subject.is_empty() || subject.chars().count() > MAX_SUBJECT_LEN {
        return Err(Denial::on_field(
            Rule::InvalidRequest,
            "subject",
            format!("subject: must be 1 to {MAX_SUBJECT_LEN} characters"),
        ));
    }
    if subject.chars().any(char::is_control) {
        return Err(Denial::on_field(
            Rule::InvalidRequest,
            "subject",
            "subject: must not contain control characters",
        ));
    }
    Ok(())
}

/// A requested `not_before` (Unix seconds) becomes `nbf` as asked: it must
/// leave the token some validity, so it has to be before `exp`.
pub fn check_not_before(not_before: i64, exp: i64) -> Result<i64, Denial> {
    if not_before < 0 || not_before >= exp {
        return Err(Denial::on_field(
            Rule::InvalidRequest,
            "not_before",
            format!(
                "not_before: must be a Unix time (seconds) before the token expires at {exp}, \
                 got {not_before}"
            ),
        ));
    }
    Ok(not_before)
}

/// `aud` is a string for one audience and a list for several, as
/// atlassian-jwt-auth and most verifiers expect.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum AudienceClaim<'a> {
    One(&'a str),
    Many(&'a [String]),
}

impl<'a> AudienceClaim<'a> {
    pub fn of(audiences: &'a [String]) -> Self {
        match audiences {
            [one] => AudienceClaim::One(one),
            many => AudienceClaim::Many(many),
        }
    }
}

/// The JWT payload. Registered claims come first; `extra` cannot collide
/// with them because [`check_extra`] ran.
#[derive(Debug, Serialize)]
pub struct TokenClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: AudienceClaim<'a>,
    pub jti: &'a str,
    pub iat: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Connect's query string hash of the request the token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qsh: Option<&'a str>,
    #[serde(flatten)]
    pub extra: &'a Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn every_reserved_claim_is_refused_by_name() {
        for name in RESERVED {
            let d = check_extra(&map(json!({ "ok": 1, name: "x" })), 4096).unwrap_err();
            assert_eq!(d.rule, Rule::ReservedClaim);
            assert_eq!(d.field, Some(format!("claims.{name}")));
        }
        assert!(check_extra(&map(json!({"ISS": 1, "scope": "read"})), 4096).is_ok());
    }

    #[test]
    fn claims_have_a_size_bound() {
        let claims = map(json!({"blob": "x".repeat(100)}));
        assert!(check_extra(&claims, 200).is_ok());
        let d = check_extra(&claims, 50).unwrap_err();
        assert_eq!(d.rule, Rule::ClaimsTooLarge);
    }

    #[test]
    fn subject_and_not_before_bounds() {
        assert!(check_subject("user:42").is_ok());
        assert!(check_subject("").is_err());
        assert!(check_subject("a\nb").is_err());
        assert!(check_subject(&"x".repeat(256)).is_err());
        assert_eq!(check_not_before(100, 200).unwrap(), 100);
        assert!(check_not_before(200, 200).is_err());
        assert!(check_not_before(-1, 200).is_err());
    }

    #[test]
    fn aud_is_a_string_for_one_and_a_list_for_several() {
        let extra = map(json!({"scope": "read"}));
        let one = vec!["svc-b".to_string()];
        let claims = TokenClaims {
            iss: "svc-a",
            sub: "svc-a",
            aud: AudienceClaim::of(&one),
            jti: "j",
            iat: 1,
            exp: 61,
            nbf: None,
            qsh: None,
            extra: &extra,
        };
        let v = serde_json::to_value(&claims).unwrap();
        assert_eq!(v["aud"], "svc-b");
        assert_eq!(v["scope"], "read");
        assert!(v.get("nbf").is_none());
        let two = vec!["a".to_string(), "b".to_string()];
        let v = serde_json::to_value(TokenClaims {
            aud: AudienceClaim::of(&two),
            nbf: Some(1),
            ..claims
        })
        .unwrap();
        assert_eq!(v["aud"], json!(["a", "b"]));
        assert_eq!(v["nbf"], 1);
    }
}
