//! Issuing a token, step by step as docs/ARCHITECTURE.md ("The path of a
//! token request") numbers the steps, for both `/v1/tokens` and
//! `/oauth2/token` (they differ only in their wire format).
//!
//! Every refusal after the caller is known is audited as `token.denied`
//! and counted by rule; failed authentications are audited as
//! `auth.failed`. A token leaves only after its `token.issued` record is
//! committed.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Map, Value};

use self::audit::{record_issued, Denier};
use crate::audit::Origin;
use crate::crypto::keypair::KeyError;
use crate::crypto::signing_pool::{new_jti, sign};
use crate::crypto::JwsSigner;
use crate::domain::algorithm::Algorithm;
use crate::domain::claims::{self, AudienceClaim, TokenClaims};
use crate::domain::denial::{Denial, Rule};
use crate::domain::grants;
use crate::domain::policy::Policy;
use crate::domain::qsh::CanonicalRequest;
use crate::service::caller_auth::{
    allowance, authenticate, load_policy, Credentials, Endpoint, IssueError,
};
use crate::service::error::ServiceError;
use crate::state::AppState;

mod audit;

/// What the caller asks for, parsed from either wire format.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// Checked with [`grants::parse_audiences`]: non-empty, deduplicated.
    pub audiences: Vec<String>,
    pub lifetime: Option<u32>,
    pub subject: Option<String>,
    pub claims: Map<String, Value>,
    pub not_before: Option<i64>,
    /// The request the token is bound to (Connect's `qsh`), if any.
    pub bound_to: Option<CanonicalRequest>,
}

/// A signed token and the facts the responses need.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub kid: String,
    pub jti: String,
    pub algorithm: Algorithm,
    pub issued_at: i64,
    pub expires_at: i64,
    pub lifetime: u32,
    /// The `qsh` claim, when the token is bound to a request.
    pub qsh: Option<String>,
}

/// Runs steps 1 to 8 for one request. `request` reads and parses the body; it
/// runs only once the caller is authenticated, admitted and within its
/// rate limit, so nobody learns anything from a body before that.
pub async fn issue<F>(
    state: &AppState,
    origin: Origin,
    endpoint: Endpoint,
    credentials: Option<Credentials>,
    request: F,
) -> Result<IssuedToken, IssueError>
where
    F: Future<Output = Result<TokenRequest, IssueError>>,
{
    // Step 1 (the client IP of step 2 is already in `origin`: it is needed
    // to limit failed attempts).
    let ip = origin.source_ip;
    let caller = authenticate(state, &origin, endpoint, credentials).await?;
    let origin = origin.as_actor(&caller.principal.name);
    let denied = Denier {
        state,
        origin: &origin,
        endpoint,
    };

    // Step 3.
    let policy = load_policy(state, &caller.principal.name).await?;
    if !caller.enabled {
        return Err(denied
            .deny(Denial::new(
                Rule::CallerDisabled,
                format!("caller {} is disabled", caller.principal.name),
            ))
            .await);
    }
    if !policy.cidrs.is_empty() && !ip.is_some_and(|ip| policy.cidrs.iter().any(|c| c.contains(ip)))
    {
        return Err(denied
            .deny(Denial::new(
                Rule::CallerNetwork,
                format!(
                    "caller {} may request tokens only from its own networks (cidrs), and \
                     this request comes from {}",
                    caller.principal.name,
                    ip.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string())
                ),
            ))
            .await);
    }

    // Step 4.
    if let Err(refused) = allowance(state, &caller.principal.name, policy.rate_limit).await {
        return Err(denied.record(refused).await);
    }

    let request = match request.await {
        Ok(r) => r,
        Err(e) => return Err(denied.record(e).await),
    };
    match decide_and_sign(state, &caller.principal.name, ip, &policy, &request).await {
        Ok((issued, groups)) => {
            let auth = caller.audit();
            record_issued(state, &origin, endpoint, &request, &issued, groups, auth).await?;
            Ok(issued)
        }
        Err(e) => Err(denied.record(e).await),
    }
}

/// Steps 5 to 7.
async fn decide_and_sign(
    state: &AppState,
    caller: &str,
    ip: Option<IpAddr>,
    policy: &Policy,
    request: &TokenRequest,
) -> Result<(IssuedToken, Vec<String>), IssueError> {
    let settings = &state.settings.tokens;
    // Step 5.
    let allowance = grants::allow(
        &policy.grants,
        ip,
        &request.audiences,
        request.lifetime,
        settings.default_lifetime_secs,
    )
    .map_err(IssueError::denied)?;
    // Step 6.
    claims::check_extra(&request.claims, settings.max_claims_bytes).map_err(IssueError::denied)?;
    let qsh = request.bound_to.as_ref().map(CanonicalRequest::qsh);
    if qsh.is_some() {
        claims::check_no_qsh(&request.claims).map_err(IssueError::denied)?;
    }
    let subject = match request.subject.as_deref() {
        Some(s) if s != caller => {
            claims::check_subject(s).map_err(IssueError::denied)?;
            grants::allow_subject(&policy.grants, ip, &request.audiences, allowance.lifetime)
                .map_err(IssueError::denied)?;
            s
        }
        _ => caller,
    };
    // Step 7. `iat` is the current second rounded down: never in the future.
    let snapshot = state.keyring.snapshot();
    let signer = snapshot.signers.get(caller).cloned().ok_or_else(|| {
        IssueError::denied(Denial::new(
            Rule::NoActiveKey,
            format!("caller {caller} has no active signing key here yet; retry shortly"),
        ))
    })?;
    let iat = state.clock.now();
    let exp = iat + i64::from(allowance.lifetime);
    let nbf = request
        .not_before
        .map(|n| claims::check_not_before(n, exp))
        .transpose()
        .map_err(IssueError::denied)?;
    let jti = new_jti();
    let payload = serde_json::to_value(TokenClaims {
        iss: caller,
        sub: subject,
        aud: AudienceClaim::of(&request.audiences),
        jti: &jti,
        iat,
        exp,
        nbf,
        qsh: qsh.as_deref(),
        extra: &request.claims,
    })
    .map_err(|e| IssueError::Failed(ServiceError::internal(e)))?;
    let token = timed_sign(state, &signer, payload).await?;
    Ok((
        IssuedToken {
            token,
            kid: signer.kid.clone(),
            jti,
            algorithm: signer.key.algorithm(),
            issued_at: iat,
            expires_at: exp,
            lifetime: allowance.lifetime,
            qsh,
        },
        allowance.groups,
    ))
}

/// Signs, and counts the time it took in `asapd_signing_seconds` by key
/// backend and algorithm.
async fn timed_sign(
    state: &AppState,
    signer: &Arc<JwsSigner>,
    payload: Value,
) -> Result<String, IssueError> {
    let started = std::time::Instant::now();
    let token = sign(&state.signing, signer.clone(), payload)
        .await
        .map_err(|e| IssueError::Failed(signing_failed(e)))?;
    let labels = [
        signer.key.backend().as_str(),
        signer.key.algorithm().as_str(),
    ];
    state
        .metrics
        .signing_seconds
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    Ok(token)
}

/// A token (HSM) that cannot sign now is a 503 the client may retry; any
/// other signing failure is internal.
fn signing_failed(e: anyhow::Error) -> ServiceError {
    match e.downcast::<KeyError>() {
        Ok(KeyError::Unavailable(detail)) => ServiceError::Unavailable(detail),
        Ok(other) => ServiceError::internal(other),
        Err(e) => ServiceError::Internal(e),
    }
}
