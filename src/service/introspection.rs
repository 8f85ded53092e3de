//! Token introspection (RFC 7662; README, "Introspection and revocation"): whether a token asapd issued
//! is active, for a caller among its audiences. The happy path reads the
//! key ring, the caller cache and the revoked-jti set: no database.
//!
//! Its audit record is handed to the group-commit writer and not awaited:
//! nothing leaves asapd that must be accounted for, so a crash may lose the
//! last records, and when the writer's queue is short of room the record
//! is dropped and counted instead (the README says so).

use serde_json::json;

use crate::audit::event::truncate;
use crate::audit::{action, AuditEvent, Origin, Outcome};
use crate::service::token_check::{self, Checked, Rejection};
use crate::state::AppState;

/// What introspection found: `None` is `{"active": false}`.
pub async fn introspect(
    state: &AppState,
    origin: &Origin,
    caller: &str,
    token: &str,
) -> Option<Checked> {
    let (kid, found) = token_check::check_naming_kid(state, token).await;
    let found = found.and_then(|checked| {
        if checked.claims.aud.contains(caller) {
            Ok(checked)
        } else {
            Err(Rejection {
                reason: "the introspecting caller is not among its audiences",
                jti: Some(checked.claims.jti),
            })
        }
    });
    let (jti, reason) = match &found {
        Ok(checked) => (Some(checked.claims.jti.clone()), None),
        Err(r) => (r.jti.clone(), Some(r.reason)),
    };
    // The HTTP layer attributes the origin to the caller already: no copy
    // of it per request then.
    let attributed;
    let origin = if origin.actor == caller {
        origin
    } else {
        attributed = origin.as_actor(caller);
        &attributed
    };
    let mut event = AuditEvent::new(
        origin,
        state.clock.now_ms(),
        action::TOKEN_INTROSPECTED,
        Outcome::Success,
    )
    .detail(json!({
        "jti": jti,
        "active": found.is_ok(),
        "reason": reason,
        // Unverified when inactive: recorded as sent, shortened.
        "kid": kid.map(|k| if k.len() <= 128 { k } else { truncate(&k, 128) }),
    }));
    if let Some(jti) = &jti {
        event = event.target(format!("jti:{jti}"));
    }
    state.audit.record_or_drop(event);
    found.ok()
}
