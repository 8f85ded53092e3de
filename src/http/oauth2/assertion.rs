//! Client authentication by assertion (RFC 7523 §2.2): the form's
//! `client_assertion_type` and `client_assertion`, in place of a secret.

use super::error::OAuth2Error;
use super::form::Form;
use crate::service::caller_auth::{
    ClientCredentials, Credentials, Peeked, PresentedAs, PresentedJwt,
};

/// The one assertion type asapd takes (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The request's credentials: its secret (Basic or form), or its
/// assertion, never both. A `client_id` next to an assertion must be the
/// assertion's `iss`.
pub(super) fn credentials(
    secret: Option<ClientCredentials>,
    form: &mut Form,
) -> Result<Option<Credentials>, OAuth2Error> {
    let assertion = match (
        form.client_assertion_type.take(),
        form.client_assertion.take(),
    ) {
        (None, None) => return Ok(secret.map(Credentials::Secret)),
        (Some(kind), Some(token)) if kind == JWT_BEARER && !token.is_empty() => token,
        (Some(kind), Some(_)) if kind != JWT_BEARER => {
            return Err(OAuth2Error::invalid_request(format!(
                "client_assertion_type must be {JWT_BEARER}"
            )))
        }
        (None, _) => {
            return Err(OAuth2Error::invalid_request(format!(
                "client_assertion needs client_assertion_type={JWT_BEARER}"
            )))
        }
        (Some(_), _) => {
            return Err(OAuth2Error::invalid_request(
                "client_assertion_type needs a client_assertion",
            ))
        }
    };
    if secret.is_some() {
        return Err(OAuth2Error::invalid_request(
            "use one client authentication method: client_assertion, HTTP Basic or \
             client_id/client_secret",
        ));
    }
    if let Some(id) = form.client_id.take() {
        let iss = Peeked::of(&assertion).and_then(|p| p.iss);
        if iss.as_deref() != Some(id.as_str()) {
            return Err(OAuth2Error::invalid_request(
                "client_id differs from the client_assertion's iss",
            ));
        }
    }
    Ok(Some(Credentials::Jwt(PresentedJwt {
        token: assertion,
        presented_as: PresentedAs::ClientAssertion,
    })))
}
