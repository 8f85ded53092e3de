//! The revoked jtis every replica keeps in memory, so checking a token
//! costs no database read. The `revoked_tokens` table is the source of
//! truth; this set follows it through change notifications, which carry
//! the jti and its `exp` ([`notification`]), and the periodic pass of
//! `jobs::revoked_tokens`.
//!
//! Revocations are never undone, so the set only grows between prunes: a
//! reload merges what the database holds into what is here, and an entry
//! leaves only once its token has expired. A jti added here after its
//! commit cannot be lost to a reload that read the table just before.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::domain::claims::LEEWAY_SECS;
use crate::store::{revoked_tokens, Store, StoreResult};

/// The oldest `exp` still worth keeping at `now`: a token is accepted for
/// [`LEEWAY_SECS`] past its `exp`, so its revocation must last as long.
pub fn keep_from(now: i64) -> i64 {
    now - LEEWAY_SECS
}

/// What the other replicas hear of a committed revocation:
/// `token:<jti> exp=<exp>`, all they need to add it to their sets. The
/// space cannot be part of an old-style `token:<jti>` of an admin's
/// revocation (its jti is printable ASCII without spaces), so a payload
/// without ` exp=` comes from an older replica during a rolling deploy.
pub fn notification(jti: &str, exp: i64) -> String {
    format!("token:{jti} exp={exp}")
}

/// The jti and `exp` of a notification's name (what follows `token:`);
/// `None` for an older replica's `token:<jti>`, which says only that
/// something was revoked.
pub fn parse_notification(name: &str) -> Option<(&str, i64)> {
    let (jti, exp) = name.rsplit_once(" exp=")?;
    Some((jti, exp.parse().ok()?))
}

#[derive(Default)]
pub struct RevokedTokens {
    /// jti → the token's `exp` (Unix seconds).
    jtis: RwLock<HashMap<String, i64>>,
}

impl RevokedTokens {
    pub fn contains(&self, jti: &str) -> bool {
        self.jtis
            .read()
            .expect("revoked set lock poisoned")
            .contains_key(jti)
    }

    /// Adds a jti whose revocation has committed.
    pub fn insert(&self, jti: &str, expires_at: i64) {
        let mut jtis = self.jtis.write().expect("revoked set lock poisoned");
        let entry = jtis.entry(jti.to_owned()).or_insert(expires_at);
        *entry = (*entry).max(expires_at);
    }

    /// Merges the live rows of the database in, and forgets jtis whose
    /// tokens can no longer be accepted at `now`.
    pub async fn reload(&self, store: &Store, now: i64) -> StoreResult<()> {
        let keep = keep_from(now);
        let rows = {
            let mut conn = store.acquire().await?;
            revoked_tokens::list_live(&mut conn, keep).await?
        };
        let mut jtis = self.jtis.write().expect("revoked set lock poisoned");
        jtis.retain(|_, exp| *exp >= keep);
        for (jti, exp) in rows {
            let entry = jtis.entry(jti).or_insert(exp);
            *entry = (*entry).max(exp);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.jtis.read().expect("revoked set lock poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_carries_the_jti_and_its_exp() {
        let sent = notification("kJ3:x_Q9", 1_900_000_060);
        let name = sent.strip_prefix("token:").unwrap();
        assert_eq!(parse_notification(name), Some(("kJ3:x_Q9", 1_900_000_060)));
        // An older replica's form: no exp, reload instead.
        assert_eq!(parse_notification("kJ3-x_Q9"), None);
        assert_eq!(parse_notification("kJ3 exp=soon"), None);
    }
}
