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
            message: message.into(),
        }
    }

    pub fn on_field(rule: Rule, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            rule,
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rule: {})", self.message, self.rule)
    }
}
