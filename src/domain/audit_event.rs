//! Audit events: what happened, to what, decided for whom, from where.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Who is acting and from where: carried from the request into every
/// event it causes.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Caller name, or `system` for jobs, or `anonymous` before auth.
    pub actor: String,
    pub source_ip: Option<IpAddr>,
    pub request_id: Option<String>,
}

impl Origin {
    pub fn system() -> Self {
        Self {
            actor: "system".into(),
            ..Self::default()
        }
    }

    /// The same request, attributed to an authenticated caller.
    pub fn as_actor(&self, actor: &str) -> Self {
        Self {
            actor: actor.to_owned(),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Outcome::Success),
            "denied" => Some(Outcome::Denied),
            "failure" => Some(Outcome::Failure),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Action names. Stable: SIEM rules match on them.
pub mod action {
    pub const TOKEN_ISSUED: &str = "token.issued";
    pub const TOKEN_DENIED: &str = "token.denied";
    /// An RFC 7662 introspection: the jti (when the token verified) and
    /// whether it was active, never the token.
    pub const TOKEN_INTROSPECTED: &str = "token.introspected";
    /// A jti revoked (RFC 7009 or the admin API); target `jti:<jti>`.
    pub const TOKEN_REVOKED: &str = "token.revoked";
    pub const AUTH_FAILED: &str = "auth.failed";
    pub const CALLER_CREATED: &str = "caller.created";
    pub const CALLER_UPDATED: &str = "caller.updated";
    pub const CALLER_DISABLED: &str = "caller.disabled";
    pub const CALLER_DELETED: &str = "caller.deleted";
    pub const SECRET_CREATED: &str = "secret.created";
    pub const SECRET_REVOKED: &str = "secret.revoked";
    /// Offline recovery (`asapd admin reset-secret`): every secret of the
    /// caller replaced by one new one.
    pub const SECRET_RESET: &str = "secret.reset";
    pub const GROUP_CREATED: &str = "group.created";
    pub const GROUP_UPDATED: &str = "group.updated";
    pub const GROUP_DELETED: &str = "group.deleted";
    /// A public key registered for a caller's client assertions; target
    /// `caller:<name>`, detail its id (thumbprint) and family.
    pub const CLIENT_KEY_ADDED: &str = "client_key.added";
    pub const CLIENT_KEY_DELETED: &str = "client_key.deleted";
    pub const KEY_CREATED: &str = "key.created";
    pub const KEY_IMPORTED: &str = "key.imported";
    pub const KEY_ROTATED: &str = "key.rotated";
    pub const KEY_REVOKED: &str = "key.revoked";
    pub const KEY_EXPIRED: &str = "key.expired";
    /// A key held in a PKCS#11 token destroyed there when its grace ended.
    pub const KEY_DESTROYED: &str = "key.destroyed";
    pub const SETTINGS_CHANGED: &str = "settings.changed";
    pub const AUDIT_PRUNED: &str = "audit.pruned";
    /// `asapd rekey`: everything sealed re-encrypted under the current
    /// master key.
    pub const MASTER_KEY_ROTATED: &str = "master_key.rotated";
    /// A trusted issuer of workload identity tokens.
    pub const ISSUER_CREATED: &str = "issuer.created";
    pub const ISSUER_UPDATED: &str = "issuer.updated";
    pub const ISSUER_DELETED: &str = "issuer.deleted";

    pub const ALL: &[&str] = &[
        TOKEN_ISSUED,
        TOKEN_DENIED,
        TOKEN_INTROSPECTED,
        TOKEN_REVOKED,
        AUTH_FAILED,
        CALLER_CREATED,
        CALLER_UPDATED,
        CALLER_DISABLED,
        CALLER_DELETED,
        SECRET_CREATED,
        SECRET_REVOKED,
        SECRET_RESET,
        GROUP_CREATED,
        GROUP_UPDATED,
        GROUP_DELETED,
        CLIENT_KEY_ADDED,
        CLIENT_KEY_DELETED,
        KEY_CREATED,
        KEY_IMPORTED,
        KEY_ROTATED,
        KEY_REVOKED,
        KEY_EXPIRED,
        KEY_DESTROYED,
        SETTINGS_CHANGED,
        AUDIT_PRUNED,
        MASTER_KEY_ROTATED,
        ISSUER_CREATED,
        ISSUER_UPDATED,
        ISSUER_DELETED,
    ];
}

/// One audit record, before it is stored.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at_ms: i64,
    pub action: &'static str,
    pub outcome: Outcome,
    pub actor: String,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub target: Option<String>,
    /// Structured facts; never a secret, private key or whole token.
    pub detail: Value,
    /// A `token.issued` record's jti and `exp` (Unix seconds), stored in
    /// columns of their own so that a revocation finds the expiry by index.
    pub issued: Option<(String, i64)>,
}

impl AuditEvent {
    pub fn new(origin: &Origin, at_ms: i64, action: &'static str, outcome: Outcome) -> Self {
        Self {
            at_ms,
            action,
            outcome,
            actor: origin.actor.clone(),
            source_ip: origin.source_ip.map(|ip| ip.to_string()),
            request_id: origin.request_id.clone(),
            target: None,
            detail: Value::Object(Default::default()),
            issued: None,
        }
    }

    /// Targets can carry what a client sent (a presented caller name):
    /// control characters are escaped, so one NUL (which PostgreSQL refuses
    /// in text) cannot fail the batch its record is committed with.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        let target = target.into();
        self.target = Some(if target.chars().any(char::is_control) {
            target
                .chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        } else {
            target
        });
        self
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    /// Whether identical records of this kind, nobody waiting for their
    /// commit, may be stored as one row with a count (`audit::fold`): the
    /// reads a verifier repeats for every request it serves. A resource
    /// server introspecting its callers' tokens asks about the same token
    /// many times a second; one row per ask would fill the log (and any
    /// retention by count) with copies.
    pub fn folds(&self) -> bool {
        self.action == action::TOKEN_INTROSPECTED
    }

    /// Whether `other` records the same fact: everything but the time and
    /// the request it came in.
    pub fn same_fact(&self, other: &AuditEvent) -> bool {
        self.action == other.action
            && self.outcome == other.outcome
            && self.actor == other.actor
            && self.source_ip == other.source_ip
            && self.target == other.target
            && self.issued == other.issued
            && self.detail == other.detail
    }

    /// The token a `token.issued` record is about: its jti and `exp`.
    pub fn issued(mut self, jti: &str, expires_at: i64) -> Self {
        self.issued = Some((jti.to_owned(), expires_at));
        self
    }
}

/// Caps untrusted text put into audit records.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
