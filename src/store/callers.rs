//! The `callers` and `caller_groups` tables.

use std::collections::HashMap;

use super::{from_json_list, to_json_list, Conn, StoreError, StoreResult};

#[derive(Debug, Clone)]
pub struct CallerRow {
    pub name: String,
    pub algorithm: String,
    pub cidrs: Vec<String>,
    pub rate_limit: Option<(i64, i64)>,
    pub rotation_period_secs: i64,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub groups: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct RawCaller {
    name: String,
    algorithm: String,
    cidrs: String,
    rate_per_second: Option<i64>,
    rate_burst: Option<i64>,
    rotation_period_secs: i64,
    enabled: i64,
    created_at: i64,
    updated_at: i64,
}

impl RawCaller {
    fn into_row(self, groups: Vec<String>) -> StoreResult<CallerRow> {
        Ok(CallerRow {
            cidrs: from_json_list(&self.cidrs)?,
            rate_limit: self.rate_per_second.zip(self.rate_burst),
            name: self.name,
            algorithm: self.algorithm,
            rotation_period_secs: self.rotation_period_secs,
            enabled: self.enabled != 0,
            created_at: self.created_at,
            updated_at: self.updated_at,
            groups,
        })
    }
}

macro_rules! caller_columns {
    () => {
        "name, algorithm, cidrs, rate_per_second, rate_burst, \
                       rotation_period_secs, enabled, created_at, updated_at"
    };
}

pub async fn insert(conn: &mut Conn, row: &CallerRow) -> StoreResult<()> {
    sqlx::query(concat!(
        "INSERT INTO callers (",
        caller_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&row.name)
    .bind(&row.algorithm)
    .bind(to_json_list(&row.cidrs))
    .bind(row.rate_limit.map(|r| r.0))
    .bind(row.rate_limit.map(|r| r.1))
    .bind(row.rotation_period_secs)
    .bind(i64::from(row.enabled))
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(&mut *conn)
    .await?;
    set_groups(conn, &row.name, &row.groups).await
}

pub async fn update(conn: &mut Conn, row: &CallerRow) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE callers SET algorithm = $2, cidrs = $3, rate_per_second = $4, rate_burst = $5, \
         rotation_period_secs = $6, enabled = $7, updated_at = $8 WHERE name = $1",
    )
    .bind(&row.name)
    .bind(&row.algorithm)
    .bind(to_json_list(&row.cidrs))
    .bind(row.rate_limit.map(|r| r.0))
    .bind(row.rate_limit.map(|r| r.1))
    .bind(row.rotation_period_secs)
    .bind(i64::from(row.enabled))
    .bind(row.updated_at)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    set_groups(conn, &row.name, &row.groups).await
}

async fn set_groups(conn: &mut Conn, caller: &str, groups: &[String]) -> StoreResult<()> {
    sqlx::query("DELETE FROM caller_groups WHERE caller = $1")
        .bind(caller)
        .execute(&mut *conn)
        .await?;
    for group in groups {
        sqlx::query("INSERT INTO caller_groups (caller, group_name) VALUES ($1, $2)")
            .bind(caller)
            .bind(group)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub async fn get(conn: &mut Conn, name: &str) -> StoreResult<Option<CallerRow>> {
    let raw = sqlx::query_as::<_, RawCaller>(concat!(
        "SELECT ",
        caller_columns!(),
        " FROM callers WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(raw) = raw else { return Ok(None) };
    let groups = sqlx::query_scalar(
        "SELECT group_name FROM caller_groups WHERE caller = $1 ORDER BY group_name",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    raw.into_row(groups).map(Some)
}

pub async fn list(conn: &mut Conn) -> StoreResult<Vec<CallerRow>> {
    let raws = sqlx::query_as::<_, RawCaller>(concat!(
        "SELECT ",
        caller_columns!(),
        " FROM callers ORDER BY name"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let pairs: Vec<(String, String)> =
        sqlx::query_as("SELECT caller, group_name FROM caller_groups ORDER BY caller, group_name")
            .fetch_all(&mut *conn)
            .await?;
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for (caller, group) in pairs {
        groups.entry(caller).or_default().push(group);
    }
    raws.into_iter()
        .map(|raw| {
            let g = groups.remove(&raw.name).unwrap_or_default();
            raw.into_row(g)
        })
        .collect()
}

pub async fn delete(conn: &mut Conn, name: &str) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM callers WHERE name = $1")
        .bind(name)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Members of `group`, other than `except`, that can still authenticate:
/// enabled, with at least one live secret.
pub async fn count_usable_members(conn: &mut Conn, group: &str, except: &str) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM callers c JOIN caller_groups m ON m.caller = c.name \
         WHERE m.group_name = $1 AND c.enabled = 1 AND c.name <> $2 \
         AND EXISTS (SELECT 1 FROM caller_secrets s WHERE s.caller = c.name)",
    )
    .bind(group)
    .bind(except)
    .fetch_one(conn)
    .await?)
}
