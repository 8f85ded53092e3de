//! The `audit_events` table.

use sqlx::QueryBuilder;

use super::{Any, Conn, StoreResult};
use crate::audit::event::AuditEvent;

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
pub async fn insert_batch(conn: &mut Conn, events: &[AuditEvent]) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Any>::new(
        "INSERT INTO audit_events (at_ms, action, outcome, actor, source_ip, request_id, target, detail) ",
    );
    q.push_values(events, |mut row, e| {
        row.push_bind(e.at_ms)
            .push_bind(e.action)
            .push_bind(e.outcome.as_str())
            .push_bind(e.actor.clone())
            .push_bind(e.source_ip.clone())
            .push_bind(e.request_id.clone())
            .push_bind(e.target.clone())
            .push_bind(e.detail.to_string());
    });
    q.build().execute(conn).await?;
    Ok(())
}

/// Newest first, strictly older than `before_id` when given.
pub async fn query(
    conn: &mut Conn,
    filter: &AuditFilter,
    before_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<AuditRow>> {
    let mut q = QueryBuilder::<Any>::new(
        "SELECT id, at_ms, action, outcome, actor, source_ip, request_id, target, detail \
         FROM audit_events WHERE 1 = 1",
    );
    for (column, value) in [
        (" AND action = ", &filter.action),
        (" AND outcome = ", &filter.outcome),
        (" AND actor = ", &filter.actor),
        (" AND target = ", &filter.target),
    ] {
        if let Some(v) = value {
            q.push(column).push_bind(v.clone());
        }
    }
    if let Some(from) = filter.from_ms {
        q.push(" AND at_ms >= ").push_bind(from);
    }
    if let Some(to) = filter.to_ms {
        q.push(" AND at_ms < ").push_bind(to);
    }
    if let Some(before) = before_id {
        q.push(" AND id < ").push_bind(before);
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
    Ok(q.build_query_as::<AuditRow>().fetch_all(conn).await?)
}

/// Deletes up to `batch` events older than `cutoff_ms`; returns how many.
pub async fn prune_older_than(conn: &mut Conn, cutoff_ms: i64, batch: i64) -> StoreResult<u64> {
    let done = sqlx::query(
        "DELETE FROM audit_events WHERE id IN \
         (SELECT id FROM audit_events WHERE at_ms < $1 ORDER BY id LIMIT $2)",
    )
    .bind(cutoff_ms)
    .bind(batch)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes up to `batch` of the oldest events beyond the newest `keep`.
pub async fn prune_beyond_count(conn: &mut Conn, keep: i64, batch: i64) -> StoreResult<u64> {
    let boundary: Option<i64> =
        sqlx::query_scalar("SELECT id FROM audit_events ORDER BY id DESC LIMIT 1 OFFSET $1")
            .bind(keep)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(boundary) = boundary else {
        return Ok(0);
    };
    let done = sqlx::query(
        "DELETE FROM audit_events WHERE id IN \
         (SELECT id FROM audit_events WHERE id <= $1 ORDER BY id LIMIT $2)",
    )
    .bind(boundary)
    .bind(batch)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

pub async fn count(conn: &mut Conn) -> StoreResult<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(conn)
        .await?)
}
