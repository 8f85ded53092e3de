//! The `groups` table.

use super::{from_json_list, to_json_list, Conn, StoreError, StoreResult};

#[derive(Debug, Clone)]
pub struct GroupRow {
    pub name: String,
    pub audiences: Vec<String>,
    pub max_lifetime: i64,
    pub cidrs: Vec<String>,
    pub allow_subject: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct RawGroup {
    name: String,
    audiences: String,
    max_lifetime: i64,
    cidrs: String,
    allow_subject: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<RawGroup> for GroupRow {
    type Error = StoreError;
    fn try_from(raw: RawGroup) -> StoreResult<Self> {
        Ok(Self {
            audiences: from_json_list(&raw.audiences)?,
            cidrs: from_json_list(&raw.cidrs)?,
            name: raw.name,
            max_lifetime: raw.max_lifetime,
            allow_subject: raw.allow_subject != 0,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        })
    }
}

macro_rules! group_columns {
    () => {
        "name, audiences, max_lifetime, cidrs, allow_subject, created_at, updated_at"
    };
}

pub async fn insert(conn: &mut Conn, row: &GroupRow) -> StoreResult<()> {
    sqlx::query(concat!(
        "INSERT INTO groups (",
        group_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(&row.name)
    .bind(to_json_list(&row.audiences))
    .bind(row.max_lifetime)
    .bind(to_json_list(&row.cidrs))
    .bind(i64::from(row.allow_subject))
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn update(conn: &mut Conn, row: &GroupRow) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE groups SET audiences = $2, max_lifetime = $3, cidrs = $4, allow_subject = $5, \
         updated_at = $6 WHERE name = $1",
    )
    .bind(&row.name)
    .bind(to_json_list(&row.audiences))
    .bind(row.max_lifetime)
    .bind(to_json_list(&row.cidrs))
    .bind(i64::from(row.allow_subject))
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub async fn get(conn: &mut Conn, name: &str) -> StoreResult<Option<GroupRow>> {
    sqlx::query_as::<_, RawGroup>(concat!(
        "SELECT ",
        group_columns!(),
        " FROM groups WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await?
    .map(GroupRow::try_from)
    .transpose()
}

pub async fn list(conn: &mut Conn) -> StoreResult<Vec<GroupRow>> {
    sqlx::query_as::<_, RawGroup>(concat!(
        "SELECT ",
        group_columns!(),
        " FROM groups ORDER BY name"
    ))
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(GroupRow::try_from)
    .collect()
}

/// Groups a caller belongs to, with their grants.
pub async fn list_for_caller(conn: &mut Conn, caller: &str) -> StoreResult<Vec<GroupRow>> {
    sqlx::query_as::<_, RawGroup>(
        "SELECT g.name, g.audiences, g.max_lifetime, g.cidrs, g.allow_subject, g.created_at, \
         g.updated_at FROM groups g JOIN caller_groups m ON m.group_name = g.name \
         WHERE m.caller = $1 ORDER BY g.name",
    )
    .bind(caller)
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(GroupRow::try_from)
    .collect()
}

pub async fn member_count(conn: &mut Conn, name: &str) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM caller_groups WHERE group_name = $1")
            .bind(name)
            .fetch_one(conn)
            .await?,
    )
}

pub async fn delete(conn: &mut Conn, name: &str) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM groups WHERE name = $1")
        .bind(name)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The names among `names` that are not groups, in the order given.
pub async fn missing(conn: &mut Conn, names: &[String]) -> StoreResult<Vec<String>> {
    let mut missing = Vec::new();
    for name in names {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_none() {
            missing.push(name.clone());
        }
    }
    Ok(missing)
}
