//! Issuing a token: DESIGN §4, step by step, for both `/v1/tokens` and
//! `/oauth2/token` (they differ only in their wire format).
//!
//! Every refusal after the caller is known is audited as `token.denied`
//! and counted by rule; failed authentications are audited as
//! `auth.failed`. A token leaves only after its `token.issued` record is
//! committed.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::{json, Map, Value};

use crate::audit::{action, AuditEvent, Origin, Outcome};
use crate::clock::rfc3339;
use crate::domain::algorithm::{Algorithm, KeyType};
use crate::domain::caller::RateLimit;
use crate::domain::claims::{self, AudienceClaim, TokenClaims};
use crate::domain::denial::{Denial, Rule};
use crate::domain::grants::{self, Grant};
use crate::domain::group::{AudiencePattern, Cidr};
use crate::error::ApiError;
use crate::keyring::Signer;
use crate::ratelimit::retry_after_secs;
use crate::service::auth;
use crate::state::AppState;
use crate::store::{callers, groups, StoreError};

/// Where the request came in; recorded in audit details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Tokens,
    OAuth2,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Tokens => "/v1/tokens",
            Endpoint::OAuth2 => "/oauth2/token",
        }
    }
}

/// `client_id:client_secret` as presented. The secret never reaches a log.
pub struct ClientCredentials {
    pub name: String,
    pub secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What the caller asks for, parsed from either wire format.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// Checked with [`grants::parse_audiences`]: non-empty, deduplicated.
    pub audiences: Vec<String>,
    pub lifetime: Option<u32>,
    pub subject: Option<String>,
    pub claims: Map<String, Value>,
    pub not_before: Option<i64>,
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
}

#[derive(Debug)]
pub enum IssueError {
    /// A policy refusal, audited and counted.
    Denied {
        denial: Denial,
        retry_after: Option<Duration>,
    },
    /// The body could not be read (415, 413, bad JSON); audited as
    /// `invalid_request` and answered as is.
    Malformed(ApiError),
    /// asapd could not decide or could not audit (503, 500).
    Failed(ApiError),
}

impl IssueError {
    pub fn denied(denial: Denial) -> Self {
        IssueError::Denied {
            denial,
            retry_after: None,
        }
    }

    /// The rule, for the OAuth2 error mapping.
    pub fn rule(&self) -> Option<Rule> {
        match self {
            IssueError::Denied { denial, .. } => Some(denial.rule),
            IssueError::Malformed(_) => Some(Rule::InvalidRequest),
            IssueError::Failed(_) => None,
        }
    }
}

impl From<ApiError> for IssueError {
    fn from(e: ApiError) -> Self {
        IssueError::Failed(e)
    }
}

impl From<StoreError> for IssueError {
    fn from(e: StoreError) -> Self {
        IssueError::Failed(e.into())
    }
}

/// The problem+json answer of `/v1/tokens`.
impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        let (denial, retry_after) = match e {
            IssueError::Malformed(e) | IssueError::Failed(e) => return e,
            IssueError::Denied {
                denial,
                retry_after,
            } => (denial, retry_after),
        };
        let detail = denial.to_string();
        match denial.rule {
            Rule::InvalidCredentials => ApiError::Unauthorized(denial.message),
            Rule::AuthRateLimited | Rule::RateLimited => ApiError::TooManyRequests {
                detail,
                retry_after_secs: retry_after_secs(retry_after.unwrap_or_default()),
            },
            Rule::CallerDisabled
            | Rule::CallerNetwork
            | Rule::AudienceNotGranted
            | Rule::GrantNetwork
            | Rule::SubjectNotAllowed => ApiError::Forbidden(detail),
            Rule::NoActiveKey => ApiError::Unavailable(detail),
            Rule::InvalidRequest
            | Rule::UnsupportedGrantType
            | Rule::InvalidScope
            | Rule::InvalidTarget
            | Rule::LifetimeExceeded
            | Rule::ReservedClaim
            | Rule::ClaimsTooLarge => ApiError::BadRequest {
                field: denial.field,
                detail,
            },
        }
    }
}

/// The caller's policy, read fresh per request so admin changes apply at
/// once on every replica.
struct Policy {
    cidrs: Vec<Cidr>,
    rate_limit: Option<RateLimit>,
    grants: Vec<Grant>,
}

/// Runs DESIGN §4 for one request. `request` reads and parses the body; it
/// runs only once the caller is authenticated, admitted and within its
/// rate limit, so nobody learns anything from a body before that.
pub async fn issue<F>(
    state: &AppState,
    origin: Origin,
    endpoint: Endpoint,
    credentials: Option<ClientCredentials>,
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
    if let Err(wait) = state
        .limits
        .check_caller(&caller.principal.name, policy.rate_limit)
    {
        state
            .metrics
            .rate_limited
            .with_label_values(&["caller"])
            .inc();
        let denial = Denial::new(
            Rule::RateLimited,
            format!(
                "caller {} exceeded its token rate limit; retry after {} s",
                caller.principal.name,
                retry_after_secs(wait)
            ),
        );
        return Err(denied.deny_after(denial, Some(wait)).await);
    }

    let request = match request.await {
        Ok(r) => r,
        Err(e) => return Err(denied.record(e).await),
    };
    match decide_and_sign(state, &caller.principal.name, ip, &policy, &request).await {
        Ok((issued, groups)) => {
            record_issued(state, &origin, endpoint, &request, &issued, groups).await?;
            Ok(issued)
        }
        Err(e) => Err(denied.record(e).await),
    }
}

/// Step 1: the failed-auth limit per source IP, then the secret.
async fn authenticate(
    state: &AppState,
    origin: &Origin,
    endpoint: Endpoint,
    credentials: Option<ClientCredentials>,
) -> Result<auth::CheckedSecret, IssueError> {
    let ip = origin
        .source_ip
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if let Some(wait) = state.limits.auth_blocked(ip) {
        // Not audited one by one: a flood of these would flood the log.
        // The failure that started the block was audited.
        state
            .metrics
            .rate_limited
            .with_label_values(&["failed_auth"])
            .inc();
        return Err(IssueError::Denied {
            denial: Denial::new(
                Rule::AuthRateLimited,
                format!(
                    "too many failed authentications from {ip}; retry after {} s",
                    retry_after_secs(wait)
                ),
            ),
            retry_after: Some(wait),
        });
    }
    let Some(credentials) = credentials else {
        return Err(IssueError::denied(Denial::new(
            Rule::InvalidCredentials,
            "authenticate with HTTP Basic client_id:client_secret",
        )));
    };
    match auth::check_secret(&state.store, &credentials.name, &credentials.secret).await {
        Ok(checked) => Ok(checked),
        Err(ApiError::Unauthorized(message)) => {
            state.metrics.auth_failures.inc();
            let blocked = state.limits.auth_failed(ip);
            let event = AuditEvent::new(
                &origin.as_actor("anonymous"),
                state.clock.now_ms(),
                action::AUTH_FAILED,
                Outcome::Denied,
            )
            .target(truncate(&credentials.name, 128))
            .detail(json!({
                "endpoint": endpoint.path(),
                "reason": "invalid_credentials",
                "ip_blocked_secs": blocked.map(retry_after_secs),
            }));
            if let Err(e) = state.audit.record(event).await {
                tracing::warn!(error = %e, "auth.failed could not be audited");
            }
            Err(IssueError::denied(Denial::new(
                Rule::InvalidCredentials,
                message,
            )))
        }
        Err(other) => Err(IssueError::Failed(other)),
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
        extra: &request.claims,
    })
    .map_err(|e| IssueError::Failed(ApiError::internal(e)))?;
    let token = sign(signer.clone(), payload).await?;
    Ok((
        IssuedToken {
            token,
            kid: signer.kid.clone(),
            jti,
            algorithm: signer.key.algorithm,
            issued_at: iat,
            expires_at: exp,
            lifetime: allowance.lifetime,
        },
        allowance.groups,
    ))
}

/// Signs with the cached, parsed key pair (DESIGN §8). RSA signatures take
/// long enough to stall an async worker, so they run on the blocking pool;
/// ECDSA is cheaper than the hop.
async fn sign(signer: Arc<Signer>, payload: Value) -> Result<String, IssueError> {
    let algorithm = signer.key.algorithm;
    let run = move || {
        let mut header = jsonwebtoken::Header::new(signer.key.algorithm.to_jwt());
        header.kid = Some(signer.kid.clone());
        jsonwebtoken::encode(&header, &payload, &signer.key.encoding_key)
    };
    let signed = match algorithm.key_type() {
        KeyType::Rsa { .. } => tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| IssueError::Failed(ApiError::internal(e)))?,
        KeyType::P256 | KeyType::P384 => run(),
    };
    signed.map_err(|e| IssueError::Failed(ApiError::internal(e)))
}

/// 144 random bits, URL-safe: unique without coordination between replicas.
fn new_jti() -> String {
    let mut bytes = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Step 8: the token is returned only if this commit succeeds.
async fn record_issued(
    state: &AppState,
    origin: &Origin,
    endpoint: Endpoint,
    request: &TokenRequest,
    issued: &IssuedToken,
    groups: Vec<String>,
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
    .target(caller)
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
    }));
    state
        .audit
        .record(event)
        .await
        .map_err(|e| IssueError::Failed(e.into()))?;
    state
        .metrics
        .tokens_issued
        .with_label_values(&[caller, issued.algorithm.as_str()])
        .inc();
    Ok(())
}

/// Audits and counts refusals of an authenticated caller.
struct Denier<'a> {
    state: &'a AppState,
    origin: &'a Origin,
    endpoint: Endpoint,
}

impl Denier<'_> {
    async fn deny(&self, denial: Denial) -> IssueError {
        self.deny_after(denial, None).await
    }

    async fn deny_after(&self, denial: Denial, retry_after: Option<Duration>) -> IssueError {
        self.record(IssueError::Denied {
            denial,
            retry_after,
        })
        .await
    }

    /// Audits `error` when it is a refusal; passes it through either way.
    async fn record(&self, error: IssueError) -> IssueError {
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
        .target(self.origin.actor.as_str())
        .detail(json!({
            "endpoint": self.endpoint.path(),
            "rule": rule.as_str(),
            "message": truncate(&message, 512),
        }));
        // The refusal stands whether or not its record could be written.
        if let Err(e) = self.state.audit.record(event).await {
            tracing::warn!(error = %e, rule = rule.as_str(), "token.denied could not be audited");
        }
        error
    }
}

async fn load_policy(state: &AppState, caller: &str) -> Result<Policy, IssueError> {
    let mut conn = state.store.acquire().await?;
    let row = callers::get(&mut conn, caller).await?.ok_or_else(|| {
        IssueError::denied(Denial::new(
            Rule::InvalidCredentials,
            "invalid client credentials",
        ))
    })?;
    let groups = groups::list_for_caller(&mut conn, caller).await?;
    let corrupt = |m: String| IssueError::Failed(ApiError::internal(StoreError::Corrupt(m)));
    let cidrs = parse_all::<Cidr>(row.cidrs).map_err(corrupt)?;
    let grants = groups
        .into_iter()
        .map(|g| {
            Ok(Grant {
                audiences: parse_all::<AudiencePattern>(g.audiences)?,
                cidrs: parse_all::<Cidr>(g.cidrs)?,
                max_lifetime: u32::try_from(g.max_lifetime)
                    .map_err(|_| format!("group {}: max_lifetime", g.name))?,
                allow_subject: g.allow_subject,
                group: g.name,
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(corrupt)?;
    Ok(Policy {
        cidrs,
        rate_limit: row.rate_limit.map(|(per_second, burst)| RateLimit {
            per_second: u32::try_from(per_second).unwrap_or(u32::MAX),
            burst: u32::try_from(burst).unwrap_or(u32::MAX),
        }),
        grants,
    })
}

fn parse_all<T: TryFrom<String, Error = String>>(items: Vec<String>) -> Result<Vec<T>, String> {
    items.into_iter().map(T::try_from).collect()
}

/// Caps untrusted text put into audit records.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
