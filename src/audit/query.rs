//! Audit queries: filters, opaque tamper-proof cursors, bounded pages.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::crypto::master_key::Purpose;
use crate::crypto::MasterKey;
use crate::domain::InvalidField;
use crate::store::audit::AuditFilter;

pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;

const CURSOR_AAD: &[u8] = b"asapd:audit-cursor:v1";

/// Seals the position after the last event of a page. Sealed (not just
/// encoded) so a client cannot forge positions, and opaque so the format
/// can change. Its own subkey: a cursor a client holds is never a
/// ciphertext under the key that encrypts private keys.
pub fn encode_cursor(key: &MasterKey, last_id: i64) -> String {
    URL_SAFE_NO_PAD.encode(key.seal_for(Purpose::AuditCursor, &last_id.to_be_bytes(), CURSOR_AAD))
}

pub fn decode_cursor(key: &MasterKey, cursor: &str) -> Result<i64, InvalidField> {
    let bad = || {
        InvalidField::new(
            "cursor",
            "not a cursor from this asapd; use next_cursor as given",
        )
    };
    let sealed = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let plain = key
        .open_for(Purpose::AuditCursor, &sealed, CURSOR_AAD)
        .map_err(|_| bad())?;
    let bytes: [u8; 8] = plain.as_slice().try_into().map_err(|_| bad())?;
    Ok(i64::from_be_bytes(bytes))
}

/// Checks a filter for contradictions.
pub fn validate(filter: &AuditFilter) -> Result<(), InvalidField> {
    for (field, value) in [("actor", &filter.actor), ("target", &filter.target)] {
        if value
            .as_deref()
            .is_some_and(|v| v.chars().any(char::is_control))
        {
            return Err(InvalidField::new(
                field,
                "must not contain control characters",
            ));
        }
    }
    if let (Some(from), Some(to)) = (filter.from_ms, filter.to_ms) {
        if from >= to {
            return Err(InvalidField::new(
                "from",
                "the time range is empty or inverted: from must be before to",
            ));
        }
    }
    if let Some(action) = &filter.action {
        if !super::action::ALL.contains(&action.as_str()) {
            return Err(InvalidField::new(
                "action",
                format!(
                    "unknown action {action:?}; known: {}",
                    super::action::ALL.join(", ")
                ),
            ));
        }
    }
    if let Some(outcome) = &filter.outcome {
        if super::Outcome::parse(outcome).is_none() {
            return Err(InvalidField::new(
                "outcome",
                "outcome is one of success, denied, failure",
            ));
        }
    }
    Ok(())
}
