//! `/v1/admin/audit` and the retention settings.

use actix_web::web::Bytes;
use actix_web::{get, put, web, HttpResponse};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::audit::query::{self, DEFAULT_PAGE, MAX_PAGE};
use crate::clock::rfc3339_ms;
use crate::domain::InvalidField;
use crate::http::auth::AdminCaller;
use crate::http::context::RequestMeta;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::service::audit_retention::{self as retention, Retention};
use crate::state::AppState;
use crate::store::audit::{self as audit_store, AuditFilter, AuditRow};

/// Audit filters. Times are RFC 3339 (`2026-11-22T03:12:00Z`); `from` is
/// inclusive, `to` exclusive.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// e.g. `token.issued`, `caller.created`.
    pub action: Option<String>,
    /// `success`, `denied` or `failure`.
    pub outcome: Option<String>,
    /// Caller name, or `system`.
    pub actor: Option<String>,
    /// e.g. `caller:svc-a`, `key:svc-a/k1`.
    pub target: Option<String>,
    #[param(format = DateTime)]
    pub from: Option<String>,
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Follow the log: the events with an id greater than this one, oldest
    /// first, and no `next_cursor` (ask again with the last id). Not with
    /// `cursor`; not taken by the export.
    #[param(minimum = 0)]
    pub after_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventView {
    pub id: i64,
    pub time: String,
    pub action: String,
    pub outcome: String,
    pub actor: String,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub target: Option<String>,
    #[schema(value_type = Object)]
    pub detail: Value,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first; oldest first with `after_id`.
    pub events: Vec<AuditEventView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl From<AuditRow> for AuditEventView {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            time: rfc3339_ms(r.at_ms),
            action: r.action,
            outcome: r.outcome,
            actor: r.actor,
            source_ip: r.source_ip,
            request_id: r.request_id,
            target: r.target,
            detail: serde_json::from_str(&r.detail).unwrap_or(Value::Null),
        }
    }
}

fn parse_time(field: &str, value: &Option<String>) -> Result<Option<i64>, InvalidField> {
    value
        .as_deref()
        .map(|v| {
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|_| {
                    InvalidField::new(
                        field,
                        format!("{v:?} is not an RFC 3339 time like 2026-11-22T03:12:00Z"),
                    )
                })
        })
        .transpose()
}

fn filter_of(p: &AuditParams) -> Result<AuditFilter, InvalidField> {
    let filter = AuditFilter {
        action: p.action.clone(),
        outcome: p.outcome.clone(),
        actor: p.actor.clone(),
        target: p.target.clone(),
        from_ms: parse_time("from", &p.from)?,
        to_ms: parse_time("to", &p.to)?,
    };
    query::validate(&filter)?;
    Ok(filter)
}

/// `limit`, checked on the export too, where it is ignored: both
/// operations take the same parameters, as the spec says.
fn page_size(p: &AuditParams) -> Result<i64, InvalidField> {
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(InvalidField::new(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ))
    }
}

fn start_of(state: &AppState, p: &AuditParams) -> Result<Option<i64>, InvalidField> {
    p.cursor
        .as_deref()
        .map(|c| query::decode_cursor(state.keyring.master_key(), c))
        .transpose()
}

/// `after_id`, checked: a page is read either back from a cursor or
/// forward from an id.
fn following(p: &AuditParams) -> Result<Option<i64>, InvalidField> {
    match p.after_id {
        Some(_) if p.cursor.is_some() => Err(InvalidField::new(
            "after_id",
            "give either cursor (older pages) or after_id (newer events), not both",
        )),
        Some(id) if id < 0 => Err(InvalidField::new("after_id", "must be 0 or more")),
        other => Ok(other),
    }
}

/// Audit events, newest first, with keyset pagination; or, with
/// `after_id`, the events recorded after that one, oldest first, to follow
/// the log.
#[utoipa::path(tag = "audit", security(("basic" = [])), params(AuditParams), responses(
    (status = 200, body = AuditPage),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/audit")]
pub async fn list_audit(
    _admin: AdminCaller,
    state: web::Data<AppState>,
    params: ApiQuery<AuditParams>,
) -> ApiResult<HttpResponse> {
    let p = params.0;
    let filter = filter_of(&p)?;
    let limit = page_size(&p)?;
    let before = start_of(&state, &p)?;
    if let Some(after) = following(&p)? {
        let mut conn = state.store.acquire().await?;
        let rows = audit_store::query_after(&mut conn, &filter, after, limit).await?;
        return Ok(HttpResponse::Ok().json(AuditPage {
            events: rows.into_iter().map(Into::into).collect(),
            next_cursor: None,
        }));
    }
    let rows = {
        let mut conn = state.store.acquire().await?;
        // One extra row tells whether another page exists.
        audit_store::query(&mut conn, &filter, before, limit + 1).await?
    };
    let more = rows.len() as i64 > limit;
    let events: Vec<AuditEventView> = rows
        .into_iter()
        .take(limit as usize)
        .map(Into::into)
        .collect();
    let next_cursor = more
        .then(|| {
            events
                .last()
                .map(|e| query::encode_cursor(state.keyring.master_key(), e.id))
        })
        .flatten();
    Ok(HttpResponse::Ok().json(AuditPage {
        events,
        next_cursor,
    }))
}

/// The same events as NDJSON, streamed oldest page last, for SIEM shipping.
/// Takes the filters of `/v1/admin/audit` (`limit` and `cursor` ignored;
/// `after_id` refused).
#[utoipa::path(tag = "audit", security(("basic" = [])), params(AuditParams), responses(
    (status = 200, description = "One JSON event per line, newest first", content_type = "application/x-ndjson", body = String),
    (status = 400, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/audit/export")]
pub async fn export_audit(
    _admin: AdminCaller,
    state: web::Data<AppState>,
    params: ApiQuery<AuditParams>,
) -> ApiResult<HttpResponse> {
    let filter = filter_of(&params.0)?;
    page_size(&params.0)?;
    if params.0.after_id.is_some() {
        return Err(InvalidField::new(
            "after_id",
            "the export streams every matching event; after_id is for GET /v1/admin/audit",
        )
        .into());
    }
    const CHUNK: i64 = 500;
    let body = stream::unfold(Some(None::<i64>), move |position| {
        let state = state.clone();
        let filter = filter.clone();
        async move {
            let before = position?;
            let rows = match state.store.acquire().await {
                Ok(mut conn) => audit_store::query(&mut conn, &filter, before, CHUNK).await,
                Err(e) => Err(e),
            };
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %crate::error_chain::Chain(&e), "audit export aborted");
                    return Some((
                        Err(actix_web::error::ErrorServiceUnavailable("database")),
                        None,
                    ));
                }
            };
            if rows.is_empty() {
                return None;
            }
            let next = (rows.len() as i64 == CHUNK).then(|| rows.last().map(|r| r.id));
            let mut out = Vec::new();
            for row in rows {
                serde_json::to_writer(&mut out, &AuditEventView::from(row)).expect("serialisable");
                out.push(b'\n');
            }
            Some((Ok::<_, actix_web::Error>(Bytes::from(out)), next))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(body))
}

/// The audit retention: maximum age in days and maximum number of events.
#[utoipa::path(tag = "audit", security(("basic" = [])), responses((status = 200, body = Retention)))]
#[get("/v1/admin/settings/audit-retention")]
pub async fn get_retention(
    _admin: AdminCaller,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(retention::get(&state).await?))
}

/// Changes the audit retention (admin only; audited). `null` disables a bound.
#[utoipa::path(tag = "audit", security(("basic" = [])), request_body = RetentionUpdate, responses(
    (status = 200, body = Retention),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
))]
#[put("/v1/admin/settings/audit-retention")]
pub async fn put_retention(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    body: ApiJson<RetentionUpdate>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    // PUT replaces both bounds: a forgotten field must not silently turn
    // a bound off, so each must be given (null to disable).
    let missing = |f: &str| ApiError::bad_field(f, "required (use null to disable this bound)");
    let new = Retention {
        max_age_days: body.0.max_age_days.ok_or_else(|| missing("max_age_days"))?,
        max_entries: body.0.max_entries.ok_or_else(|| missing("max_entries"))?,
    };
    Ok(HttpResponse::Ok().json(retention::put(&state, &origin, new).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionUpdate {
    /// Days (1..=3650), or null for no age bound.
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<i64>, required = true, minimum = 1, maximum = 3650)]
    pub max_age_days: Option<Option<i64>>,
    /// Events (100..=1000000000), or null for no count bound.
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<i64>, required = true, minimum = 100, maximum = 1000000000)]
    pub max_entries: Option<Option<i64>>,
}
