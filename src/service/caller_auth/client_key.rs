//! Key-bound callers (RFC 7523 `private_key_jwt`): an assertion signed with
//! a key the caller registered. Not built yet: no caller has a client key.

use super::jwt::JwtError;
use super::{Authenticated, PresentedJwt};
use crate::state::AppState;

pub(super) async fn authenticate(
    _state: &AppState,
    _jwt: &PresentedJwt,
    iss: &str,
) -> Result<Authenticated, JwtError> {
    Err(JwtError::rejected(format!(
        "{iss} is neither a trusted issuer nor a caller with client keys"
    )))
}
