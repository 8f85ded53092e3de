//! Step 8 and the audit trail of refusals.

use std::time::Duration;

use serde_json::json;

use super::{IssuedToken, TokenRequest};
use crate::audit::event::truncate;
use crate::audit::{action, AuditEvent, Origin, Outcome};
use crate::clock::rfc3339;
use crate::domain::denial::{redact_opaque, Denial, Rule};
use crate::error_chain::Chain;
use crate::service::caller_auth::{Endpoint, IssueError};
use crate::state::AppState;

/// Step 8: the token is returned only if this commit succeeds.
pub(super) async fn record_issued(
    state: &AppState,
    origin: &Origin,
    endpoint: Endpoint,
    request: &TokenRequest,
    issued: &IssuedToken,
    groups: Vec<String>,
    auth: serde_json::Value,
) -> Result<(), IssueError> {
    let caller = origin.actor.as_str();
    let subject = request.subject.as_deref().filter(|s| *s != caller);
    let claim_names: Vec<&String> = request.claims.keys().collect();
    let event = AuditEvent::new(
        origin,
        state.clock.now_ms(),
        action::TOKEN_ISSUED,
        Outcome::Success,
    )
    .target(format!("caller:{caller}"))
    .issued(&issued.jti, issued.expires_at)
    .detail(json!({
        "endpoint": endpoint.path(),
        "jti": issued.jti,
        "audiences": request.audiences,
        "kid": issued.kid,
        "algorithm": issued.algorithm.as_str(),
        "lifetime": issued.lifetime,
        "expires_at": rfc3339(issued.expires_at),
        "subject": subject,
        "not_before": request.not_before,
        "claims": claim_names,
        "groups": groups,
        "auth": auth,
        // The hash, not the URL: a query string may carry secrets.
        "qsh": issued.qsh,
    }));
    state.audit.record(event).await.map_err(IssueError::from)?;
    state
        .metrics
        .tokens_issued
        .with_label_values(&[caller, issued.algorithm.as_str()])
        .inc();
    Ok(())
}

/// Audits and counts refusals of an authenticated caller.
pub(super) struct Denier<'a> {
    pub state: &'a AppState,
    pub origin: &'a Origin,
    pub endpoint: Endpoint,
}

impl Denier<'_> {
    pub async fn deny(&self, denial: Denial) -> IssueError {
        self.deny_after(denial, None).await
    }

    pub async fn deny_after(&self, denial: Denial, retry_after: Option<Duration>) -> IssueError {
        self.record(IssueError::Denied {
            denial,
            retry_after,
        })
        .await
    }

    /// Audits `error` when it is a refusal; passes it through either way.
    pub async fn record(&self, error: IssueError) -> IssueError {
        let (rule, message) = match &error {
            IssueError::Denied { denial, .. } => (denial.rule, denial.message.clone()),
            IssueError::Malformed(e) => (Rule::InvalidRequest, e.to_string()),
            IssueError::Failed(_) => return error,
        };
        self.state
            .metrics
            .token_denials
            .with_label_values(&[rule.as_str()])
            .inc();
        let event = AuditEvent::new(
            self.origin,
            self.state.clock.now_ms(),
            action::TOKEN_DENIED,
            Outcome::Denied,
        )
        .target(format!("caller:{}", self.origin.actor))
        .detail(json!({
            "endpoint": self.endpoint.path(),
            "rule": rule.as_str(),
            // A malformed body's parser error quotes the request too.
            "message": truncate(&redact_opaque(&message), 512),
        }));
        // The refusal stands whether or not its record could be written.
        if let Err(e) = self.state.audit.record(event).await {
            tracing::warn!(
                error = %Chain(&e),
                rule = rule.as_str(),
                "token.denied could not be audited"
            );
        }
        error
    }
}
