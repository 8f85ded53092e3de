//! The `issuers` and `federated_bindings` tables (workload identity
//! federation).

use serde_json::{Map, Value};

use super::{from_json_list, to_json_list, Conn, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq)]
pub struct IssuerRow {
    pub name: String,
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub ca_pem: Option<String>,
    pub audiences: Vec<String>,
    pub max_token_age_secs: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct RawIssuer {
    name: String,
    issuer: String,
    jwks_uri: Option<String>,
    ca_pem: Option<String>,
    audiences: String,
    max_token_age_secs: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<RawIssuer> for IssuerRow {
    type Error = StoreError;
    fn try_from(raw: RawIssuer) -> StoreResult<Self> {
        Ok(Self {
            audiences: from_json_list(&raw.audiences)?,
            name: raw.name,
            issuer: raw.issuer,
            jwks_uri: raw.jwks_uri,
            ca_pem: raw.ca_pem,
            max_token_age_secs: raw.max_token_age_secs,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        })
    }
}

/// One caller's binding to a federated identity.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingRow {
    pub caller: String,
    pub issuer: String,
    pub subject: String,
    pub claims: Map<String, Value>,
}

#[derive(sqlx::FromRow)]
struct RawBinding {
    caller: String,
    issuer: String,
    subject: String,
    claims: String,
}

impl TryFrom<RawBinding> for BindingRow {
    type Error = StoreError;
    fn try_from(raw: RawBinding) -> StoreResult<Self> {
        Ok(Self {
            claims: serde_json::from_str(&raw.claims)
                .map_err(|e| StoreError::Corrupt(format!("binding claims: {e}")))?,
            caller: raw.caller,
            issuer: raw.issuer,
            subject: raw.subject,
        })
    }
}

macro_rules! issuer_columns {
    () => {
        "name, issuer, jwks_uri, ca_pem, audiences, max_token_age_secs, created_at, updated_at"
    };
}

pub async fn insert_issuer(conn: &mut Conn, row: &IssuerRow) -> StoreResult<()> {
    sqlx::query(concat!(
        "INSERT INTO issuers (",
        issuer_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&row.name)
    .bind(&row.issuer)
    .bind(&row.jwks_uri)
    .bind(&row.ca_pem)
    .bind(to_json_list(&row.audiences))
    .bind(row.max_token_age_secs)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn update_issuer(conn: &mut Conn, row: &IssuerRow) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE issuers SET issuer = $2, jwks_uri = $3, ca_pem = $4, audiences = $5, \
         max_token_age_secs = $6, updated_at = $7 WHERE name = $1",
    )
    .bind(&row.name)
    .bind(&row.issuer)
    .bind(&row.jwks_uri)
    .bind(&row.ca_pem)
    .bind(to_json_list(&row.audiences))
    .bind(row.max_token_age_secs)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub async fn get_issuer(conn: &mut Conn, name: &str) -> StoreResult<Option<IssuerRow>> {
    sqlx::query_as::<_, RawIssuer>(concat!(
        "SELECT ",
        issuer_columns!(),
        " FROM issuers WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await?
    .map(IssuerRow::try_from)
    .transpose()
}

pub async fn list_issuers(conn: &mut Conn) -> StoreResult<Vec<IssuerRow>> {
    sqlx::query_as::<_, RawIssuer>(concat!(
        "SELECT ",
        issuer_columns!(),
        " FROM issuers ORDER BY name"
    ))
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(IssuerRow::try_from)
    .collect()
}

pub async fn delete_issuer(conn: &mut Conn, name: &str) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM issuers WHERE name = $1")
        .bind(name)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Callers with a binding to `issuer`, by name.
pub async fn callers_bound_to(conn: &mut Conn, issuer: &str) -> StoreResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT caller FROM federated_bindings WHERE issuer = $1 ORDER BY caller",
    )
    .bind(issuer)
    .fetch_all(conn)
    .await?)
}

/// Replaces a caller's bindings with `bindings`, in order.
pub async fn set_bindings(
    conn: &mut Conn,
    caller: &str,
    bindings: &[BindingRow],
) -> StoreResult<()> {
    sqlx::query("DELETE FROM federated_bindings WHERE caller = $1")
        .bind(caller)
        .execute(&mut *conn)
        .await?;
    for (position, binding) in bindings.iter().enumerate() {
        sqlx::query(
            "INSERT INTO federated_bindings (caller, position, issuer, subject, claims) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(caller)
        .bind(position as i64)
        .bind(&binding.issuer)
        .bind(&binding.subject)
        .bind(Value::Object(binding.claims.clone()).to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn bindings_of(conn: &mut Conn, caller: &str) -> StoreResult<Vec<BindingRow>> {
    sqlx::query_as::<_, RawBinding>(
        "SELECT caller, issuer, subject, claims FROM federated_bindings WHERE caller = $1 \
         ORDER BY position",
    )
    .bind(caller)
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(BindingRow::try_from)
    .collect()
}

/// Every binding, for a replica's in-memory index.
pub async fn all_bindings(conn: &mut Conn) -> StoreResult<Vec<BindingRow>> {
    sqlx::query_as::<_, RawBinding>(
        "SELECT caller, issuer, subject, claims FROM federated_bindings \
         ORDER BY caller, position",
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(BindingRow::try_from)
    .collect()
}

/// The names among `names` that are not issuers, in the order given.
pub async fn missing_issuers(conn: &mut Conn, names: &[&str]) -> StoreResult<Vec<String>> {
    let mut missing = Vec::new();
    for name in names {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM issuers WHERE name = $1")
            .bind(*name)
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_none() {
            missing.push((*name).to_owned());
        }
    }
    Ok(missing)
}
