//! `GET /metrics` and the middleware that counts HTTP requests.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{get, web, HttpMessage, HttpResponse};

use crate::error_chain::Chain;
use crate::http::methods::AnsweredAsGet;
use crate::state::AppState;
use crate::store::{callers, keys, StoreResult};

/// Label for requests no route matched: a scanner probing a thousand paths
/// must not create a thousand time series.
const UNMATCHED: &str = "unmatched";

fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The route label of a handler that actix routes by prefix (a scope's
/// default service), where `match_pattern` would only name the prefix.
#[derive(Clone, Copy)]
pub struct RouteLabel(pub &'static str);

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    // An uptime checker's HEAD is a HEAD in the series, not a GET, though
    // `head_as_get` (outside this middleware) hands it to the GET route.
    let method = if req.extensions().contains::<AnsweredAsGet>() {
        "HEAD"
    } else {
        method_label(req.method())
    };
    let res = next.call(req).await?;
    if let Some(state) = state {
        let labelled = res.request().extensions().get::<RouteLabel>().copied();
        let pattern = labelled.is_none().then(|| res.request().match_pattern());
        let route = match (labelled, &pattern) {
            (Some(RouteLabel(label)), _) => label,
            (None, Some(Some(pattern))) => pattern.as_str(),
            _ => UNMATCHED,
        };
        let status = res.status().as_u16().to_string();
        let m = &state.metrics;
        m.http_requests
            .with_label_values(&[route, method, &status])
            .inc();
        m.http_duration
            .with_label_values(&[route, method])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}

/// Prometheus metrics, text format.
///
/// Answers during a database outage too (when the counters matter most):
/// the key gauges keep their last values and `asapd_database_up` drops
/// to 0.
#[utoipa::path(tag = "health", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    match refresh_key_gauges(&state).await {
        Ok(()) => m.db_up.set(1),
        Err(e) => {
            tracing::warn!(
                error = %Chain(&e),
                "metrics: cannot read key gauges from the database"
            );
            m.db_up.set(0);
        }
    }
    let (size, idle) = state.store.pool_stats();
    m.db_connections
        .with_label_values(&["idle"])
        .set(idle as i64);
    m.db_connections
        .with_label_values(&["in_use"])
        .set(i64::from(size) - idle as i64);
    m.audit_queue_depth.set(state.audit.queued() as i64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(m.render())
}

/// Gauges that describe the database are read at scrape time, so every
/// replica reports the shared truth.
async fn refresh_key_gauges(state: &AppState) -> StoreResult<()> {
    let m = &state.metrics;
    let mut conn = state.store.acquire().await?;
    let by_state = keys::count_by_state(&mut conn).await?;
    let active = keys::active_since(&mut conn).await?;
    m.keys.reset();
    for (st, n) in by_state {
        m.keys.with_label_values(&[&st]).set(n);
    }
    let enabled = callers::list(&mut conn).await?;
    m.active_key_age.reset();
    let now = state.clock.now();
    for (caller, since) in &active {
        m.active_key_age
            .with_label_values(&[caller])
            .set(now - since.unwrap_or(now));
    }
    m.caller_active_key.reset();
    m.caller_rotation_period.reset();
    for caller in enabled.iter().filter(|c| c.enabled) {
        let has_key = active.iter().any(|(name, _)| *name == caller.name);
        m.caller_active_key
            .with_label_values(&[&caller.name])
            .set(i64::from(has_key));
        m.caller_rotation_period
            .with_label_values(&[&caller.name])
            .set(caller.rotation_period_secs);
    }
    Ok(())
}
