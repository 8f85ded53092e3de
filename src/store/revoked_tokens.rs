//! The `revoked_tokens` table, and the `token.issued` audit lookup that
//! tells how long a revoked jti must be kept.

use super::{Conn, StoreResult};

/// Stores a revoked jti until `expires_at` (Unix seconds). Revoking it
/// again keeps the later of the two expiries: a revocation never shortens.
pub async fn insert(conn: &mut Conn, jti: &str, expires_at: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) \
         ON CONFLICT (jti) DO UPDATE SET expires_at = CASE \
           WHEN excluded.expires_at > revoked_tokens.expires_at THEN excluded.expires_at \
           ELSE revoked_tokens.expires_at END",
    )
    .bind(jti)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every revoked jti whose `exp` is `keep_from` or later, with its `exp`.
pub async fn list_live(conn: &mut Conn, keep_from: i64) -> StoreResult<Vec<(String, i64)>> {
    Ok(
        sqlx::query_as("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at >= $1")
            .bind(keep_from)
            .fetch_all(conn)
            .await?,
    )
}

/// Deletes the jtis whose `exp` is before `keep_from`; returns how many.
pub async fn prune(conn: &mut Conn, keep_from: i64) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
        .bind(keep_from)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

pub async fn count(conn: &mut Conn) -> StoreResult<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens")
        .fetch_one(conn)
        .await?)
}

/// The `exp` (Unix seconds) of the token `jti` from its `token.issued`
/// record, if one since `since_ms` has it. Bounded by time (a token issued
/// earlier has expired), so it reads at most the last hour's records
/// through `audit_events_at`. No index on `jti` on purpose: jtis are
/// random, and an index on them dirties one B-tree page per token in every
/// audit commit, which cost 40 % of ES256 issuance on SQLite
/// (`benches/quick.sh ES256`: 28.5k/s without it, 17.1k/s with it), for
/// a lookup that only an admin revocation without `expires_at` makes.
pub async fn issued_expiry(conn: &mut Conn, jti: &str, since_ms: i64) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT MAX(jti_expires_at) FROM audit_events \
         WHERE jti = $1 AND at_ms >= $2 AND action = 'token.issued'",
    )
    .bind(jti)
    .bind(since_ms)
    .fetch_one(conn)
    .await?)
}
