//! `POST /oauth2/token`: the RFC 6749 §4.4 client-credentials grant, so any
//! OAuth2 client (Postman included) can get an ASAP token. The decision is
//! the one `/v1/tokens` makes; only the wire format differs: a form in,
//! RFC 6749 §5.1 / §5.2 JSON out.

use actix_web::http::header::{self, CacheControl, CacheDirective, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::denial::{Denial, Rule};
use crate::domain::grants::parse_audiences;
use crate::error::ApiError;
use crate::http::auth::basic_credentials;
use crate::http::context::RequestMeta;
use crate::http::json::read_body;
use crate::ratelimit::retry_after_secs;
use crate::service::tokens::{self, ClientCredentials, Endpoint, IssueError, TokenRequest};
use crate::state::AppState;

/// The form fields asapd reads; others are ignored (RFC 6749 §3.2).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the form for the OpenAPI document only
pub struct ClientCredentialsForm {
    /// Must be `client_credentials`.
    grant_type: String,
    /// With `client_secret`, instead of HTTP Basic (never both).
    client_id: Option<String>,
    client_secret: Option<String>,
    /// The token's audience (one; repeat for several). Or use `resource`.
    audience: Option<String>,
    /// RFC 8707 resource indicator, repeatable; each becomes an audience.
    resource: Option<Vec<String>>,
    /// Not supported: ASAP tokens carry audiences, not scopes. Any
    /// non-empty value gets `invalid_scope`.
    scope: Option<String>,
}

/// RFC 6749 §5.1.
#[derive(Serialize, ToSchema)]
pub struct AccessTokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    pub expires_in: u32,
}

/// RFC 6749 §5.2 (plus RFC 8707 `invalid_target`).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuth2Error {
    /// `invalid_request`, `invalid_client`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `invalid_target`,
    /// `temporarily_unavailable` (429, 503) or `server_error`.
    pub error: &'static str,
    pub error_description: String,
    #[serde(skip)]
    status: StatusCode,
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl OAuth2Error {
    fn new(error: &'static str, status: StatusCode, description: impl AsRef<str>) -> Self {
        Self {
            error,
            error_description: description_chars(description.as_ref()),
            status,
            retry_after: None,
        }
    }

    fn invalid_request(description: impl AsRef<str>) -> Self {
        Self::new("invalid_request", StatusCode::BAD_REQUEST, description)
    }

    fn response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header(no_store()).insert_header(pragma());
        match self.status {
            StatusCode::UNAUTHORIZED => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="asapd", charset="UTF-8""#),
                ));
            }
            _ => {
                if let Some(secs) = self.retry_after {
                    res.insert_header((header::RETRY_AFTER, secs.to_string()));
                }
            }
        }
        res.json(self)
    }
}

/// RFC 6749 §5.2 allows only printable ASCII without `"` and `\`.
fn description_chars(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

fn no_store() -> CacheControl {
    CacheControl(vec![CacheDirective::NoStore])
}

fn pragma() -> (header::HeaderName, HeaderValue) {
    (header::PRAGMA, HeaderValue::from_static("no-cache"))
}

impl From<IssueError> for OAuth2Error {
    fn from(e: IssueError) -> Self {
        let (denial, retry_after) = match e {
            IssueError::Denied {
                denial,
                retry_after,
            } => (denial, retry_after),
            IssueError::Malformed(api) | IssueError::Failed(api) => return from_api_error(&api),
        };
        let description = denial.to_string();
        let (error, status) = match denial.rule {
            Rule::InvalidCredentials => ("invalid_client", StatusCode::UNAUTHORIZED),
            Rule::AuthRateLimited | Rule::RateLimited => {
                ("temporarily_unavailable", StatusCode::TOO_MANY_REQUESTS)
            }
            Rule::CallerDisabled | Rule::CallerNetwork | Rule::SubjectNotAllowed => {
                ("unauthorized_client", StatusCode::BAD_REQUEST)
            }
            Rule::UnsupportedGrantType => ("unsupported_grant_type", StatusCode::BAD_REQUEST),
            Rule::InvalidScope => ("invalid_scope", StatusCode::BAD_REQUEST),
            Rule::InvalidTarget | Rule::AudienceNotGranted | Rule::GrantNetwork => {
                ("invalid_target", StatusCode::BAD_REQUEST)
            }
            Rule::InvalidRequest
            | Rule::LifetimeExceeded
            | Rule::ReservedClaim
            | Rule::ClaimsTooLarge => ("invalid_request", StatusCode::BAD_REQUEST),
            Rule::NoActiveKey => ("temporarily_unavailable", StatusCode::SERVICE_UNAVAILABLE),
        };
        let mut out = OAuth2Error::new(error, status, description);
        out.retry_after = retry_after.map(retry_after_secs);
        out
    }
}

fn from_api_error(api: &ApiError) -> OAuth2Error {
    match api {
        ApiError::Unavailable(m) => OAuth2Error::new(
            "temporarily_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            m,
        ),
        ApiError::Internal(e) => {
            tracing::error!(error = format!("{e:#}"), "token request failed");
            OAuth2Error::new(
                "server_error",
                StatusCode::INTERNAL_SERVER_ERROR,
                "an unexpected error occurred; it has been logged",
            )
        }
        other => OAuth2Error::invalid_request(other.to_string()),
    }
}

/// The parsed form. Single-valued parameters may appear once (RFC 6749
/// §3.2); `audience` and `resource` repeat.
#[derive(Default)]
struct Form {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    audience: Vec<String>,
    resource: Vec<String>,
}

impl Form {
    fn parse(body: &[u8]) -> Result<Self, OAuth2Error> {
        let mut form = Form::default();
        for (name, value) in url::form_urlencoded::parse(body) {
            let slot = match name.as_ref() {
                "grant_type" => &mut form.grant_type,
                "client_id" => &mut form.client_id,
                "client_secret" => &mut form.client_secret,
                "scope" => &mut form.scope,
                "audience" => {
                    form.audience.push(value.into_owned());
                    continue;
                }
                "resource" => {
                    form.resource.push(value.into_owned());
                    continue;
                }
                _ => continue,
            };
            if slot.is_some() {
                return Err(OAuth2Error::invalid_request(format!(
                    "{name} appears more than once"
                )));
            }
            *slot = Some(value.into_owned());
        }
        Ok(form)
    }

    /// The grant, scope and audience checks, run after authentication.
    fn into_request(self) -> Result<TokenRequest, Denial> {
        match self.grant_type.as_deref() {
            None | Some("") => {
                return Err(Denial::on_field(
                    Rule::InvalidRequest,
                    "grant_type",
                    "grant_type is required: client_credentials",
                ))
            }
            Some("client_credentials") => {}
            Some(other) => {
                return Err(Denial::on_field(
                    Rule::UnsupportedGrantType,
                    "grant_type",
                    format!("grant_type {other} is not supported; use client_credentials"),
                ))
            }
        }
        if self.scope.as_deref().is_some_and(|s| !s.trim().is_empty()) {
            return Err(Denial::on_field(
                Rule::InvalidScope,
                "scope",
                "asapd tokens carry audiences, not scopes: leave scope out and name the \
                 audience with audience or resource",
            ));
        }
        let (values, field) = match (self.audience.is_empty(), self.resource.is_empty()) {
            (false, false) => {
                return Err(Denial::on_field(
                    Rule::InvalidRequest,
                    "resource",
                    "send audience or resource, not both",
                ))
            }
            (false, true) => (self.audience, "audience"),
            (true, false) => (self.resource, "resource"),
            (true, true) => {
                return Err(Denial::on_field(
                    Rule::InvalidTarget,
                    "audience",
                    "name the token's audience with audience or resource",
                ))
            }
        };
        // RFC 8707 §2: a resource indicator has no fragment.
        if field == "resource" && values.iter().any(|v| v.contains('#')) {
            return Err(Denial::on_field(
                Rule::InvalidTarget,
                "resource",
                "resource must not contain a fragment (#)",
            ));
        }
        let audiences = parse_audiences(values, field).map_err(|d| Denial {
            rule: Rule::InvalidTarget,
            ..d
        })?;
        Ok(TokenRequest {
            audiences,
            ..TokenRequest::default()
        })
    }
}

/// Decodes `application/x-www-form-urlencoded` text: RFC 6749 §2.3.1 has
/// clients encode the id and secret this way before HTTP Basic.
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
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

/// Client authentication: HTTP Basic or form fields, never both
/// (RFC 6749 §2.3).
fn client_credentials(
    req: &HttpRequest,
    form: &mut Form,
) -> Result<Option<ClientCredentials>, OAuth2Error> {
    let invalid_client = |m: &str| OAuth2Error::new("invalid_client", StatusCode::UNAUTHORIZED, m);
    let basic = basic_credentials(req)
        .map_err(|e| invalid_client(&e.to_string()))?
        .map(
            |(id, secret)| match (form_decode(&id), form_decode(&secret)) {
                (Some(name), Some(secret)) => Ok(ClientCredentials { name, secret }),
                _ => Err(invalid_client(
                    "the Basic credentials are not form-urlencoded",
                )),
            },
        )
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
/// form-urlencoded, RFC 6749 §2.3.1) or `client_id`/`client_secret` in the
/// form, not both. `scope` is not supported (`invalid_scope`); the lifetime
/// is `tokens.default_lifetime_secs`, shortened to what the grants allow.
/// The token is exactly what `POST /v1/tokens` would issue, after the same
/// checks in the same order. Errors are RFC 6749 §5.2 JSON, with
/// `invalid_target` (RFC 8707) for audiences that are missing, malformed or
/// not granted; `invalid_client` answers 401 with a Basic challenge.
#[utoipa::path(tag = "tokens", security(("basic" = []), ()),
    request_body(content = ClientCredentialsForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = AccessTokenResponse, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "invalid_request, unauthorized_client, unsupported_grant_type, invalid_scope, invalid_target", body = OAuth2Error),
        (status = 401, description = "invalid_client", body = OAuth2Error),
        (status = 429, description = "temporarily_unavailable; see Retry-After", body = OAuth2Error),
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

async fn grant(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    meta: RequestMeta,
) -> Result<HttpResponse, OAuth2Error> {
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
    let credentials = client_credentials(req, &mut form)?;
    let request = async move { form.into_request().map_err(IssueError::denied) };
    let issued = tokens::issue(
        state,
        meta.origin("anonymous"),
        Endpoint::OAuth2,
        credentials,
        request,
    )
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header(no_store())
        .insert_header(pragma())
        .json(AccessTokenResponse {
            access_token: issued.token,
            token_type: "Bearer",
            expires_in: issued.lifetime,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_of_basic_credentials() {
        assert_eq!(form_decode("a%2Bb+c").as_deref(), Some("a+b c"));
        assert_eq!(form_decode("asapd_x-Y_z").as_deref(), Some("asapd_x-Y_z"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
    }

    #[test]
    fn repeated_single_parameters_are_refused() {
        assert!(Form::parse(b"grant_type=a&grant_type=b").is_err());
        let f = Form::parse(b"resource=a&resource=b&other=1&other=2").unwrap();
        assert_eq!(f.resource, vec!["a", "b"]);
    }

    #[test]
    fn grant_scope_and_target_rules() {
        let rule = |body: &[u8]| Form::parse(body).unwrap().into_request().unwrap_err().rule;
        assert_eq!(rule(b"audience=a"), Rule::InvalidRequest);
        assert_eq!(
            rule(b"grant_type=password&audience=a"),
            Rule::UnsupportedGrantType
        );
        assert_eq!(
            rule(b"grant_type=client_credentials&audience=a&scope=read"),
            Rule::InvalidScope
        );
        assert_eq!(rule(b"grant_type=client_credentials"), Rule::InvalidTarget);
        assert_eq!(
            rule(b"grant_type=client_credentials&resource=https://a/#x"),
            Rule::InvalidTarget
        );
        assert_eq!(
            rule(b"grant_type=client_credentials&audience=a&resource=b"),
            Rule::InvalidRequest
        );
        let ok = Form::parse(b"grant_type=client_credentials&resource=a&resource=b&scope=")
            .unwrap()
            .into_request()
            .unwrap();
        assert_eq!(ok.audiences, vec!["a", "b"]);
    }

    #[test]
    fn descriptions_stay_within_the_rfc_charset() {
        assert_eq!(description_chars("a \"b\" \\ é"), "a 'b' / ?");
    }
}
