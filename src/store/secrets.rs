//! The `caller_secrets` table: hashes only, never plaintext.

use super::{Conn, StoreError, StoreResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecretRow {
    pub id: String,
    pub caller: String,
    pub created_at: i64,
}

pub async fn insert(
    conn: &mut Conn,
    id: &str,
    caller: &str,
    hash: &[u8],
    created_at: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO caller_secrets (id, caller, hash, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(caller)
    .bind(hash)
    .bind(created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn list(conn: &mut Conn, caller: &str) -> StoreResult<Vec<SecretRow>> {
    Ok(sqlx::query_as(
        "SELECT id, caller, created_at FROM caller_secrets WHERE caller = $1 \
         ORDER BY created_at, id",
    )
    .bind(caller)
    .fetch_all(conn)
    .await?)
}

pub async fn delete(conn: &mut Conn, caller: &str, id: &str) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM caller_secrets WHERE caller = $1 AND id = $2")
        .bind(caller)
        .bind(id)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// What authentication needs: whether the caller is enabled and the hashes
/// of its live secrets. `None` when there is no such caller.
pub struct Credentials {
    pub enabled: bool,
    pub hashes: Vec<Vec<u8>>,
    pub groups: Vec<String>,
}

pub async fn credentials(conn: &mut Conn, caller: &str) -> StoreResult<Option<Credentials>> {
    let enabled: Option<i64> = sqlx::query_scalar("SELECT enabled FROM callers WHERE name = $1")
        .bind(caller)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(enabled) = enabled else {
        return Ok(None);
    };
    let hashes = sqlx::query_scalar("SELECT hash FROM caller_secrets WHERE caller = $1")
        .bind(caller)
        .fetch_all(&mut *conn)
        .await?;
    let groups = sqlx::query_scalar("SELECT group_name FROM caller_groups WHERE caller = $1")
        .bind(caller)
        .fetch_all(&mut *conn)
        .await?;
    Ok(Some(Credentials {
        enabled: enabled != 0,
        hashes,
        groups,
    }))
}
