//! Small named values: the master-key check, settings.

use super::{Conn, StoreResult};

pub async fn get(conn: &mut Conn, name: &str) -> StoreResult<Option<String>> {
    Ok(sqlx::query_scalar("SELECT value FROM meta WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?)
}

pub async fn put(conn: &mut Conn, name: &str, value: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO meta (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(name)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts only if absent; returns whether this call inserted it.
pub async fn put_if_absent(conn: &mut Conn, name: &str, value: &str) -> StoreResult<bool> {
    let done =
        sqlx::query("INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces `name`'s value only if it is still `expected`; returns whether
/// it did.
pub async fn compare_and_set(
    conn: &mut Conn,
    name: &str,
    expected: &str,
    value: &str,
) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE meta SET value = $3 WHERE name = $1 AND value = $2")
        .bind(name)
        .bind(expected)
        .bind(value)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
