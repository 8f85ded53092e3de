//! The `client_keys` table (public keys callers sign their own client
//! assertions with) and `used_assertions` (the jtis of assertions already
//! accepted, so the fleet accepts each one once).

use super::{Conn, StoreError, StoreResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientKeyRow {
    pub id: String,
    pub caller: String,
    pub family: String,
    pub spki_der: Vec<u8>,
    pub created_at: i64,
}

/// Stores a key; `StoreError::Conflict` when the caller has it already.
pub async fn insert(conn: &mut Conn, row: &ClientKeyRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO client_keys (id, caller, family, spki_der, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&row.id)
    .bind(&row.caller)
    .bind(&row.family)
    .bind(&row.spki_der)
    .bind(row.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A caller's keys, oldest first.
pub async fn list(conn: &mut Conn, caller: &str) -> StoreResult<Vec<ClientKeyRow>> {
    Ok(sqlx::query_as(
        "SELECT id, caller, family, spki_der, created_at FROM client_keys \
         WHERE caller = $1 ORDER BY created_at, id",
    )
    .bind(caller)
    .fetch_all(conn)
    .await?)
}

pub async fn delete(conn: &mut Conn, caller: &str, id: &str) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM client_keys WHERE caller = $1 AND id = $2")
        .bind(caller)
        .bind(id)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Records the assertion `jti` of `caller` as used until `expires_at`
/// (Unix seconds). `false`: it was used already and has not expired, so
/// this presentation is a replay. One statement, so on PostgreSQL exactly
/// one of two replicas racing with the same jti wins. A row whose
/// assertion has expired (not pruned yet) is taken over.
pub async fn use_jti(
    conn: &mut Conn,
    caller: &str,
    jti: &str,
    expires_at: i64,
    now: i64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO used_assertions (caller, jti, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (caller, jti) DO UPDATE SET expires_at = excluded.expires_at \
         WHERE used_assertions.expires_at < $4",
    )
    .bind(caller)
    .bind(jti)
    .bind(expires_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the used jtis whose assertions expired before `now`.
pub async fn prune_used(conn: &mut Conn, now: i64) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM used_assertions WHERE expires_at < $1")
        .bind(now)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
