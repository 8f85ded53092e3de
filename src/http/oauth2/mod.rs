//! `POST /oauth2/token`: the RFC 6749 §4.4 client-credentials grant, so any
//! OAuth2 client (Postman included) can get an ASAP token. The decision is
//! the one `/v1/tokens` makes; only the wire format differs: a form in,
//! RFC 6749 §5.1 / §5.2 JSON out.

mod assertion;
mod error;
mod form;
mod introspect;
mod revoke;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

pub use self::error::OAuth2Error;
use self::error::{no_store, pragma};
use self::form::{form_decode, Form, JWT_TOKEN_TYPE};
pub use self::introspect::{oauth2_introspect, IntrospectionResponse};
pub use self::revoke::oauth2_revoke;
use crate::audit::Origin;
use crate::domain::denial::Rule;
use crate::http::auth::basic_credentials;
use crate::http::context::RequestMeta;
use crate::http::json::read_body;
use crate::service::caller_auth::Principal;
use crate::service::caller_auth::{
    self, ClientCredentials, Credentials, Endpoint, IssueError, PresentedAs, PresentedJwt,
};
use crate::service::tokens;
use crate::state::AppState;

/// The form fields asapd reads; others are ignored (RFC 6749 §3.2).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // documents the form for the OpenAPI document only
pub struct ClientCredentialsForm {
    /// Must be `client_credentials`.
    #[schema(pattern = "^client_credentials$")]
    grant_type: String,
    /// With `client_secret`, instead of HTTP Basic (never both). With a
    /// `client_assertion` it is optional and must equal the assertion's `iss`.
    client_id: Option<String>,
    client_secret: Option<String>,
    /// RFC 7523 §2.2: `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
    /// with `client_assertion`, instead of a secret (never with one).
    #[schema(pattern = "^urn:ietf:params:oauth:client-assertion-type:jwt-bearer$")]
    client_assertion_type: Option<String>,
    /// A JWT the caller signed with one of its registered client keys:
    /// `iss` = `sub` = its name, `aud` the token endpoint URL or the
    /// configured audience, `exp` at most `tokens.client_assertion_max_secs`
    /// (300 s) ahead, a `jti` accepted once.
    client_assertion: Option<String>,
    /// The token's audience (one; repeat for several). Or use `resource`.
    audience: Option<String>,
    /// RFC 8707 resource indicator, repeatable; each becomes an audience.
    resource: Option<Vec<String>>,
    /// Not supported: ASAP tokens carry audiences, not scopes. Any
    /// non-empty value gets `invalid_scope`.
    #[schema(max_length = 0)]
    scope: Option<String>,
}

/// A token exchange (RFC 8693 §2.1): a workload identity token from a
/// trusted issuer, bound to a caller, in place of client credentials.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // documents the form for the OpenAPI document only
pub struct TokenExchangeForm {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    #[schema(pattern = "^urn:ietf:params:oauth:grant-type:token-exchange$")]
    grant_type: String,
    /// The workload's JWT: a Kubernetes service-account token, a GitHub
    /// Actions OIDC token, another asapd's ASAP token.
    subject_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt`.
    #[schema(pattern = "^urn:ietf:params:oauth:token-type:jwt$")]
    subject_token_type: String,
    /// If given, `urn:ietf:params:oauth:token-type:jwt`.
    requested_token_type: Option<String>,
    /// The token's audience (repeatable). Or use `resource`.
    audience: Option<String>,
    /// RFC 8707 resource indicator, repeatable.
    resource: Option<Vec<String>>,
}

/// Either grant's form.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the form for the OpenAPI document only
pub enum TokenRequestForm {
    ClientCredentials(ClientCredentialsForm),
    TokenExchange(TokenExchangeForm),
}

/// RFC 6749 §5.1.
#[derive(Serialize, ToSchema)]
pub struct AccessTokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    pub expires_in: u32,
    /// Token exchange only (RFC 8693 §2.2.1):
    /// `urn:ietf:params:oauth:token-type:jwt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

fn is_form(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// One half of Basic credentials. RFC 6749 §2.3.1 has clients form-encode
/// them, but many (curl -u, requests' `auth=`) send them raw. Caller names
/// and secrets never hold a space, so a `+` is only a space when the client
/// encoded: with no `%` escape in sight, it is taken literally (a caller
/// named `svc+a` works either way).
fn basic_part(raw: String) -> Option<String> {
    if raw.contains('%') {
        form_decode(&raw)
    } else {
        Some(raw)
    }
}

/// Client authentication: HTTP Basic or form fields, never both
/// (RFC 6749 §2.3).
fn client_credentials(
    req: &HttpRequest,
    form: &mut Form,
) -> Result<Option<ClientCredentials>, OAuth2Error> {
    let invalid_client = |m: &str| OAuth2Error::new("invalid_client", StatusCode::UNAUTHORIZED, m);
    let basic = basic_credentials(req)
        .map_err(|e| invalid_client(&e.to_string()))?
        .map(|(id, secret)| match (basic_part(id), basic_part(secret)) {
            (Some(name), Some(secret)) => Ok(ClientCredentials { name, secret }),
            _ => Err(invalid_client(
                "the Basic credentials are not form-urlencoded",
            )),
        })
        .transpose()?;
    match (basic, form.client_secret.take()) {
        (Some(_), Some(_)) => Err(OAuth2Error::invalid_request(
            "use one client authentication method: HTTP Basic or client_id/client_secret",
        )),
        (Some(basic), None) => match &form.client_id {
            Some(id) if *id != basic.name => Err(OAuth2Error::invalid_request(
                "client_id differs from the HTTP Basic user",
            )),
            _ => Ok(Some(basic)),
        },
        (None, Some(secret)) => match form.client_id.take() {
            Some(name) => Ok(Some(ClientCredentials { name, secret })),
            None => Err(OAuth2Error::invalid_request(
                "client_secret needs client_id",
            )),
        },
        (None, None) => Ok(None),
    }
}

/// OAuth2 client-credentials grant (RFC 6749 §4.4).
///
/// Send a form with
/// `grant_type=client_credentials` and the audience as `audience` or RFC 8707
/// `resource` (repeatable); authenticate with HTTP Basic (the id and secret
/// form-urlencoded, RFC 6749 §2.3.1), `client_id`/`client_secret` in the
/// form, or a `client_assertion` signed with one of the caller's client
/// keys (RFC 7523 §2.2), exactly one of them. `scope` is not supported (`invalid_scope`); the lifetime
/// is `tokens.default_lifetime_secs`, shortened to what the grants allow.
/// The token is exactly what `POST /v1/tokens` would issue, after the same
/// checks in the same order. Errors are RFC 6749 §5.2 JSON, with
/// `invalid_target` (RFC 8707) for audiences that are missing, malformed or
/// not granted; `invalid_client` answers 401 with a Basic challenge.
///
/// **Token exchange** (RFC 8693): `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`
/// with `subject_token` (a JWT of a trusted issuer, bound to a caller),
/// `subject_token_type=urn:ietf:params:oauth:token-type:jwt` and the
/// audience, without client credentials. The answer adds
/// `issued_token_type`; a subject token that is refused answers
/// `invalid_grant`.
#[utoipa::path(tag = "tokens", security(("basic" = []), ()),
    request_body(content = TokenRequestForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = AccessTokenResponse, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "invalid_request, invalid_grant, unauthorized_client, unsupported_grant_type, invalid_scope, invalid_target", body = OAuth2Error),
        (status = 401, description = "invalid_client", body = OAuth2Error,
            headers(("WWW-Authenticate" = String, description = "Basic challenge"))),
        (status = 429, description = "temporarily_unavailable; see Retry-After", body = OAuth2Error,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, description = "temporarily_unavailable: no token was issued", body = OAuth2Error),
    )
)]
#[post("/oauth2/token")]
pub async fn oauth2_token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    meta: RequestMeta,
) -> HttpResponse {
    match grant(&req, payload, &state, meta).await {
        Ok(res) => res,
        Err(e) => e.response(),
    }
}

/// The form of any OAuth2 endpoint, and the client credentials it or the
/// `Authorization` header carries.
async fn read_form(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(Form, Option<Credentials>), OAuth2Error> {
    if !is_form(req) {
        return Err(OAuth2Error::invalid_request(
            "send the request as application/x-www-form-urlencoded",
        ));
    }
    let limit = state.settings.http.max_body_bytes;
    let body = read_body(&mut payload.into_inner(), limit, None)
        .await
        .map_err(|e| OAuth2Error::invalid_request(e.to_string()))?;
    let mut form = Form::parse(&body)?;
    let secret = client_credentials(req, &mut form)?;
    let credentials = assertion::credentials(secret, &mut form)?;
    Ok((form, credentials))
}

/// An introspection or revocation request: the caller, admitted as
/// `endpoint` (authenticated, enabled, within its rate limit), the origin
/// attributed to it, and the token it presents.
async fn presented_token(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    meta: RequestMeta,
    endpoint: Endpoint,
) -> Result<(Principal, Origin, String), OAuth2Error> {
    let (mut form, credentials) = read_form(req, payload, state).await?;
    let origin = meta.origin("anonymous");
    let caller = caller_auth::admit(state, &origin, endpoint, credentials).await?;
    let token = form.take_token()?;
    let origin = origin.as_actor(&caller.name);
    Ok((caller, origin, token))
}

async fn grant(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    meta: RequestMeta,
) -> Result<HttpResponse, OAuth2Error> {
    let (mut form, credentials) = read_form(req, payload, state).await?;
    let exchange = form.is_token_exchange();
    let credentials = if exchange {
        if credentials.is_some() {
            return Err(OAuth2Error::invalid_request(
                "a token exchange authenticates with its subject_token: send no client secret or client assertion",
            ));
        }
        Some(Credentials::Jwt(PresentedJwt {
            token: form.take_subject_token()?,
            presented_as: PresentedAs::SubjectToken,
        }))
    } else {
        credentials
    };
    let request = async move { form.into_request().map_err(IssueError::denied) };
    let issued = tokens::issue(
        state,
        meta.origin("anonymous"),
        Endpoint::OAuth2,
        credentials,
        request,
    )
    .await
    .map_err(|e| match e.rule() {
        // RFC 8693 §2.2.2: the subject token is the grant, not a client.
        Some(Rule::InvalidCredentials) if exchange => {
            let mut out = OAuth2Error::from(e);
            out.refuse_grant();
            out
        }
        _ => OAuth2Error::from(e),
    })?;
    Ok(HttpResponse::Ok()
        .insert_header(no_store())
        .insert_header(pragma())
        .json(AccessTokenResponse {
            access_token: issued.token,
            token_type: "Bearer",
            expires_in: issued.lifetime,
            issued_token_type: exchange.then_some(JWT_TOKEN_TYPE),
        }))
}
