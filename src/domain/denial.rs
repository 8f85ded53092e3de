//! Why a token request is refused. The rule names are stable: they appear
//! in problem details, `token.denied` audit records and the
//! `token_denials_total{reason}` metric, and map to OAuth2 error codes.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Unknown caller or wrong secret (§4 step 1).
    InvalidCredentials,
    /// Too many failed authentications from this source IP (step 1).
    AuthRateLimited,
    /// The caller is disabled (step 3).
    CallerDisabled,
    /// The client IP is outside the caller's own allow-list (step 3).
    CallerNetwork,
    /// The caller's token rate limit is exhausted (step 4).
    RateLimited,
    /// The request body or form is malformed.
    InvalidRequest,
    /// OAuth2: a `grant_type` other than `client_credentials`.
    UnsupportedGrantType,
    /// OAuth2: a `scope` was sent; asapd tokens carry audiences, not scopes.
    InvalidScope,
    /// OAuth2: no usable `audience`/`resource`.
    InvalidTarget,
    /// No group of the caller grants a requested audience (step 5).
    AudienceNotGranted,
    /// A group grants the audience, but not from this client IP (step 5).
    GrantNetwork,
    /// The requested lifetime is above what the grants allow (step 5).
    LifetimeExceeded,
    /// Extra claims try to set a registered claim asapd owns (step 6).
    ReservedClaim,
    /// Extra claims are larger than `tokens.max_claims_bytes` (step 6).
    ClaimsTooLarge,
    /// A `subject` other than the caller without a grant that allows it (step 6).
    SubjectNotAllowed,
    /// The caller has no active signing key on this replica (step 7).
    NoActiveKey,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::InvalidCredentials => "invalid_credentials",
            Rule::AuthRateLimited => "auth_rate_limited",
            Rule::CallerDisabled => "caller_disabled",
            Rule::CallerNetwork => "caller_network",
            Rule::RateLimited => "rate_limited",
            Rule::InvalidRequest => "invalid_request",
            Rule::UnsupportedGrantType => "unsupported_grant_type",
            Rule::InvalidScope => "invalid_scope",
            Rule::InvalidTarget => "invalid_target",
            Rule::AudienceNotGranted => "audience_not_granted",
            Rule::GrantNetwork => "grant_network",
            Rule::LifetimeExceeded => "lifetime_exceeded",
            Rule::ReservedClaim => "reserved_claim",
            Rule::ClaimsTooLarge => "claims_too_large",
            Rule::SubjectNotAllowed => "subject_not_allowed",
            Rule::NoActiveKey => "no_active_key",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the rule, the request field at fault (if any), and a message
/// that tells the caller what to change. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub rule: Rule,
    pub field: Option<String>,
    pub message: String,
}

impl Denial {
    pub fn new(rule: Rule, message: impl Into<String>) -> Self {
        Self {
            rule,
            field: None,
            message: redact_opaque(&message.into()),
        }
    }

    pub fn on_field(rule: Rule, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            rule,
            field: Some(redact_opaque(&field.into())),
            message: redact_opaque(&message.into()),
        }
    }
}

/// Runs this long or longer are checked for looking opaque.
const OPAQUE_LEN: usize = 24;

/// Every denial message and field passes here, since they quote what the
/// request said (an audience, a subject, a claim name, a parser's error)
/// and end up in the `token.denied` audit record, the metrics' logs and
/// the answer. A secret pasted into any field must not be kept there: a
/// long run that looks opaque (a digit, both cases, or `+/=_` in it)
/// becomes its first 4 characters and its length. Words and URLs keep
/// their pieces: in a URL each path or query piece is judged alone.
pub fn redact_opaque(text: &str) -> String {
    redact_runs(text, false)
}

/// Redacts each run between delimiters: words and punctuation, or, within
/// a URL, its pieces.
fn redact_runs(text: &str, in_url: bool) -> String {
    let split = |c: char| {
        if in_url {
            "/?&=#:@".contains(c)
        } else {
            c.is_whitespace() || "\"'`,;()[]{}<>".contains(c)
        }
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(split).unwrap_or(rest.len());
        let (run, after) = rest.split_at(end);
        if !in_url && run.contains("://") {
            out.push_str(&redact_runs(run, true));
        } else {
            out.push_str(&redact_run(run));
        }
        let delimiter = after.chars().next().map_or(0, char::len_utf8);
        out.push_str(&after[..delimiter]);
        rest = &after[delimiter..];
    }
    out
}

fn redact_run(run: &str) -> std::borrow::Cow<'_, str> {
    let len = run.chars().count();
    let opaque = len >= OPAQUE_LEN
        && (run.chars().any(|c| c.is_ascii_digit())
            || (run.chars().any(char::is_uppercase) && run.chars().any(char::is_lowercase))
            || run.contains(['+', '/', '=', '_']));
    if !opaque {
        return run.into();
    }
    let head: String = run.chars().take(4).collect();
    format!("{head}…({len} characters, redacted)").into()
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rule: {})", self.message, self.rule)
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn long_opaque_runs_are_redacted_words_and_urls_kept() {
        let secret = "asapd_Q2hhbmdlIG1lIQ_x9Vv3kLmN0pQrStUvWxYz";
        let d = Denial::on_field(
            Rule::AudienceNotGranted,
            format!("claims.{secret}"),
            format!("no group of this caller grants audience \"{secret}\""),
        );
        assert!(!d.message.contains(secret), "{}", d.message);
        assert!(!d.field.as_deref().unwrap().contains(secret));
        assert!(
            d.message.contains("\"asap…(42 characters, redacted)\""),
            "{}",
            d.message
        );
        let url = "https://billing.internal.example.com/api/reconciliation-service";
        let kept = format!("no group of this caller grants audience {url}");
        assert_eq!(
            Denial::new(Rule::AudienceNotGranted, kept.clone()).message,
            kept
        );
        let in_url = format!("https://x.example/cb?token={secret}");
        let d = Denial::new(Rule::AudienceNotGranted, in_url);
        assert_eq!(
            d.message,
            "https://x.example/cb?token=asap…(42 characters, redacted)"
        );
        let words = "claims.sub: sub is a registered claim asapd sets itself";
        assert_eq!(Denial::new(Rule::ReservedClaim, words).message, words);
    }
}
