//! The `keys` table. Private keys arrive here already sealed.

use super::{Conn, StoreError, StoreResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub kid: String,
    pub caller: String,
    pub algorithm: String,
    pub state: String,
    pub public_der: Vec<u8>,
    /// Sealed private key; empty for a key held in a token.
    pub private_enc: Vec<u8>,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// `software` or `pkcs11` (migration 0008).
    pub backend: String,
    /// The `CKA_ID` of a key held in a PKCS#11 token.
    pub token_object_id: Option<Vec<u8>>,
}

macro_rules! key_columns {
    () => {
        "kid, caller, algorithm, state, public_der, private_enc, created_at, \
                       activated_at, retired_at, revoked_at, backend, token_object_id"
    };
}

pub async fn insert(conn: &mut Conn, row: &KeyRow) -> StoreResult<()> {
    sqlx::query(concat!(
        "INSERT INTO keys (",
        key_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(&row.kid)
    .bind(&row.caller)
    .bind(&row.algorithm)
    .bind(&row.state)
    .bind(&row.public_der)
    .bind(&row.private_enc)
    .bind(row.created_at)
    .bind(row.activated_at)
    .bind(row.retired_at)
    .bind(row.revoked_at)
    .bind(&row.backend)
    .bind(&row.token_object_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut Conn, kid: &str) -> StoreResult<Option<KeyRow>> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        key_columns!(),
        " FROM keys WHERE kid = $1"
    ))
    .bind(kid)
    .fetch_optional(conn)
    .await?)
}

pub async fn list_for_caller(conn: &mut Conn, caller: &str) -> StoreResult<Vec<KeyRow>> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        key_columns!(),
        " FROM keys WHERE caller = $1 ORDER BY created_at DESC, kid DESC"
    ))
    .bind(caller)
    .fetch_all(conn)
    .await?)
}

/// Keys verifiers may resolve: pending, active and retired.
pub async fn list_published(conn: &mut Conn) -> StoreResult<Vec<KeyRow>> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        key_columns!(),
        " FROM keys WHERE state IN ('pending', 'active', 'retired') ORDER BY kid"
    ))
    .fetch_all(conn)
    .await?)
}

/// One published key by kid, if it is.
pub async fn get_published(conn: &mut Conn, kid: &str) -> StoreResult<Option<KeyRow>> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        key_columns!(),
        " FROM keys WHERE kid = $1 AND state IN ('pending', 'active', 'retired')"
    ))
    .bind(kid)
    .fetch_optional(conn)
    .await?)
}

/// Retires the caller's active key, if any. Run before activating another:
/// the schema allows one active key per caller.
pub async fn retire_active(conn: &mut Conn, caller: &str, now: i64) -> StoreResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "UPDATE keys SET state = 'retired', retired_at = $2 \
         WHERE caller = $1 AND state = 'active' RETURNING kid",
    )
    .bind(caller)
    .bind(now)
    .fetch_optional(conn)
    .await?)
}

/// The kid of `caller`'s oldest pending key, if it has one.
pub async fn oldest_pending(conn: &mut Conn, caller: &str) -> StoreResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT kid FROM keys WHERE caller = $1 AND state = 'pending' \
         ORDER BY created_at, kid LIMIT 1",
    )
    .bind(caller)
    .fetch_optional(conn)
    .await?)
}

pub async fn activate(conn: &mut Conn, kid: &str, now: i64) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE keys SET state = 'active', activated_at = $2 WHERE kid = $1 AND state = 'pending'",
    )
    .bind(kid)
    .bind(now)
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("key {kid} is not pending")));
    }
    Ok(())
}

/// Revokes a key; returns its previous state, or `None` if no such kid.
pub async fn revoke(conn: &mut Conn, kid: &str, now: i64) -> StoreResult<Option<String>> {
    let previous: Option<String> = sqlx::query_scalar("SELECT state FROM keys WHERE kid = $1")
        .bind(kid)
        .fetch_optional(&mut *conn)
        .await?;
    if previous.is_some() {
        sqlx::query("UPDATE keys SET state = 'revoked', revoked_at = $2 WHERE kid = $1")
            .bind(kid)
            .bind(now)
            .execute(conn)
            .await?;
    }
    Ok(previous)
}

/// Key counts by state, for metrics.
pub async fn count_by_state(conn: &mut Conn) -> StoreResult<Vec<(String, i64)>> {
    Ok(
        sqlx::query_as("SELECT state, COUNT(*) FROM keys GROUP BY state")
            .fetch_all(conn)
            .await?,
    )
}

/// Each caller's active key activation time, for the key-age metric.
pub async fn active_since(conn: &mut Conn) -> StoreResult<Vec<(String, Option<i64>)>> {
    Ok(
        sqlx::query_as("SELECT caller, activated_at FROM keys WHERE state = 'active'")
            .fetch_all(conn)
            .await?,
    )
}

/// Marks a retired key expired: it is no longer published.
pub async fn expire(conn: &mut Conn, kid: &str) -> StoreResult<bool> {
    let done =
        sqlx::query("UPDATE keys SET state = 'expired' WHERE kid = $1 AND state = 'retired'")
            .bind(kid)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// A page of sealed private keys after `after_kid`, in kid order, for
/// `rekey`: (kid, sealed blob). Keys held in a token have nothing sealed.
pub async fn sealed_page(
    conn: &mut Conn,
    after_kid: &str,
    limit: i64,
) -> StoreResult<Vec<(String, Vec<u8>)>> {
    Ok(sqlx::query_as(
        "SELECT kid, private_enc FROM keys WHERE kid > $1 AND backend = 'software' \
             ORDER BY kid LIMIT $2",
    )
    .bind(after_kid)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// How many keys are held in a PKCS#11 token, for `rekey` to say it
/// leaves them alone.
pub async fn count_in_token(conn: &mut Conn) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM keys WHERE backend = 'pkcs11'")
            .fetch_one(conn)
            .await?,
    )
}

/// Replaces a sealed private key only if it still holds `old`, so a
/// concurrent rekey or change is never overwritten. Returns whether it did.
pub async fn reseal(conn: &mut Conn, kid: &str, old: &[u8], new: &[u8]) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE keys SET private_enc = $3 WHERE kid = $1 AND private_enc = $2")
        .bind(kid)
        .bind(old)
        .bind(new)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
