//! Workload identity federation: a token from a trusted issuer, bound to
//! a caller. Not built yet: no issuer is trusted.

use super::jwt::JwtError;
use super::{Authenticated, PresentedJwt};
use crate::state::AppState;

/// `Ok(None)`: `iss` is no trusted issuer, so the token is for another
/// method to check.
pub(super) async fn authenticate(
    _state: &AppState,
    _jwt: &PresentedJwt,
    _iss: &str,
) -> Result<Option<Authenticated>, JwtError> {
    Ok(None)
}
