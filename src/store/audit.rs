//! The `audit_events` table.

use sqlx::AssertSqlSafe;

use super::{Conn, StoreResult};
use crate::domain::audit_event::AuditEvent;

/// A stored event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at_ms: i64,
    pub action: String,
    pub outcome: String,
    pub actor: String,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub target: Option<String>,
    pub detail: String,
}

/// Filters of an audit query; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// Inserts a batch in one statement: the unit of group commit.
///
/// The SQL is assembled here (not with `QueryBuilder<Any>`, whose `?`
/// placeholders PostgreSQL rejects); only placeholders are interpolated,
/// every value is bound. SQLite gets anonymous `?` placeholders: it looks
/// numbered ones up by name, linearly, once per bound value, which made
/// binding a large batch quadratic (`benches/profile.sh tokens`).
pub async fn insert_batch(conn: &mut Conn, events: &[AuditEvent]) -> StoreResult<()> {
    use std::fmt::Write;
    if events.is_empty() {
        return Ok(());
    }
    const COLUMNS: usize = 10;
    let numbered = conn.backend_name() != "SQLite";
    let mut sql = String::with_capacity(110 + events.len() * COLUMNS * 6);
    sql.push_str(
        "INSERT INTO audit_events (at_ms, action, outcome, actor, source_ip, request_id, target, detail, jti, jti_expires_at) VALUES ",
    );
    for row in 0..events.len() {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..COLUMNS {
            if col > 0 {
                sql.push_str(", ");
            }
            if numbered {
                let _ = write!(sql, "${}", row * COLUMNS + col + 1);
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for e in events {
        q = q
            .bind(e.at_ms)
            .bind(e.action)
            .bind(e.outcome.as_str())
            // Borrowed: the Any driver copies each value once as it is
            // bound, so an owned copy here would be a second one.
            .bind(e.actor.as_str())
            .bind(e.source_ip.as_deref())
            .bind(e.request_id.as_deref())
            .bind(e.target.as_deref())
            // Not `Value::to_string`: Display escapes through the fmt
            // machinery, twice as dear on the writer's thread.
            .bind(serde_json::to_string(&e.detail).unwrap_or_default())
            .bind(e.issued.as_ref().map(|(jti, _)| jti.as_str()))
            .bind(e.issued.as_ref().map(|(_, exp)| *exp));
    }
    q.execute(conn).await?;
    Ok(())
}

/// Newest first, strictly older than `before_id` when given.
pub async fn query(
    conn: &mut Conn,
    filter: &AuditFilter,
    before_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<AuditRow>> {
    select(conn, filter, ("id <", before_id), "DESC", limit).await
}

/// Oldest first, strictly newer than `after_id`: what a follower of the
/// log (`asapd audit tail`) has not read yet.
pub async fn query_after(
    conn: &mut Conn,
    filter: &AuditFilter,
    after_id: i64,
    limit: i64,
) -> StoreResult<Vec<AuditRow>> {
    select(conn, filter, ("id >", Some(after_id)), "ASC", limit).await
}

/// `limit` rows matching `filter` and the id `bound`, in id `order`.
async fn select(
    conn: &mut Conn,
    filter: &AuditFilter,
    bound: (&str, Option<i64>),
    order: &str,
    limit: i64,
) -> StoreResult<Vec<AuditRow>> {
    let mut sql = String::from(
        "SELECT id, at_ms, action, outcome, actor, source_ip, request_id, target, detail \
         FROM audit_events WHERE 1 = 1",
    );
    let mut texts: Vec<String> = Vec::new();
    let mut numbers: Vec<i64> = Vec::new();
    for (column, value) in [
        ("action", &filter.action),
        ("outcome", &filter.outcome),
        ("actor", &filter.actor),
        ("target", &filter.target),
    ] {
        if let Some(v) = value {
            texts.push(v.clone());
            sql.push_str(&format!(" AND {column} = ${}", texts.len()));
        }
    }
    for (condition, value) in [
        ("at_ms >=", filter.from_ms),
        ("at_ms <", filter.to_ms),
        bound,
    ] {
        if let Some(v) = value {
            numbers.push(v);
            sql.push_str(&format!(
                " AND {condition} ${}",
                texts.len() + numbers.len()
            ));
        }
    }
    numbers.push(limit);
    sql.push_str(&format!(
        " ORDER BY id {order} LIMIT ${}",
        texts.len() + numbers.len()
    ));
    let mut q = sqlx::query_as::<_, AuditRow>(AssertSqlSafe(sql));
    for t in texts {
        q = q.bind(t);
    }
    for n in numbers {
        q = q.bind(n);
    }
    Ok(q.fetch_all(conn).await?)
}

/// What a pruning batch deletes: events older than a time, or events up
/// to an id.
#[derive(Debug, Clone, Copy)]
pub enum PruneBound {
    OlderThanMs(i64),
    UpToId(i64),
}

/// Deletes up to `batch` of the oldest events within `bound`; returns how
/// many. One autocommit statement: atomic alone, and a writer waits at
/// most one batch.
pub async fn prune_batch(conn: &mut Conn, bound: PruneBound, batch: i64) -> StoreResult<u64> {
    let (sql, value) = match bound {
        PruneBound::OlderThanMs(cutoff) => (
            "DELETE FROM audit_events WHERE id IN \
             (SELECT id FROM audit_events WHERE at_ms < $1 ORDER BY id LIMIT $2)",
            cutoff,
        ),
        PruneBound::UpToId(boundary) => (
            "DELETE FROM audit_events WHERE id IN \
             (SELECT id FROM audit_events WHERE id <= $1 ORDER BY id LIMIT $2)",
            boundary,
        ),
    };
    let done = sqlx::query(sql)
        .bind(value)
        .bind(batch)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// The id of the newest event beyond the newest `keep`, if there is one:
/// everything up to it goes. Found once per pruning pass, since finding it
/// walks `keep` index entries; later events only have larger ids.
pub async fn count_boundary(conn: &mut Conn, keep: i64) -> StoreResult<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM audit_events ORDER BY id DESC LIMIT 1 OFFSET $1")
            .bind(keep)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn count(conn: &mut Conn) -> StoreResult<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(conn)
        .await?)
}
