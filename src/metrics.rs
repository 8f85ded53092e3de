//! Prometheus metrics, one registry per application (no globals, so tests
//! running several apps in one process do not share counters).
//!
//! Label values are bounded: route patterns (not paths), methods, status
//! codes, caller names (admin-controlled), algorithms, reasons. Never a
//! kid, jti, IP address or free text.

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub tokens_issued: IntCounterVec,
    pub token_denials: IntCounterVec,
    pub auth_failures: IntCounter,
    pub rate_limited: IntCounterVec,
    pub keys: IntGaugeVec,
    pub active_key_age: IntGaugeVec,
    pub audit_write_seconds: Histogram,
    pub audit_batch_size: Histogram,
    pub audit_pruned: IntCounter,
    /// Audit batches whose commit failed (their requests were refused).
    pub audit_write_failures: IntCounter,
    /// Records dropped instead of queued (the queue was short of room), by
    /// action: only those the README allows to be lost.
    pub audit_dropped: IntCounterVec,
    /// Events waiting in the audit writer's queue, read at scrape time.
    pub audit_queue_depth: IntGauge,
    /// 1 for an enabled caller with an active key, 0 for one without: the
    /// "caller with no active key" alert needs the zeros, which
    /// `active_key_age_seconds` cannot show.
    pub caller_active_key: IntGaugeVec,
    /// Each enabled caller's rotation period, so an alert can compare
    /// `active_key_age_seconds` with it per caller.
    pub caller_rotation_period: IntGaugeVec,
    pub db_connections: IntGaugeVec,
    /// 1 when the last scrape could read the database, else 0.
    pub db_up: IntGauge,
    pub change_notifications: IntCounterVec,
    pub change_listener_reconnects: IntCounter,
    pub change_listener_connected: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("asapd".into()), None).expect("a valid metrics prefix");
        let m = Self {
            http_requests: IntCounterVec::new(
                Opts::new(
                    "http_requests_total",
                    "HTTP requests by route pattern, method and status",
                ),
                &["route", "method", "status"],
            )
            .unwrap(),
            http_duration: HistogramVec::new(
                HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                    .buckets(exponential_buckets(0.0001, 2.5, 14).unwrap()),
                &["route", "method"],
            )
            .unwrap(),
            tokens_issued: IntCounterVec::new(
                Opts::new(
                    "tokens_issued_total",
                    "Tokens issued by caller and algorithm",
                ),
                &["caller", "algorithm"],
            )
            .unwrap(),
            token_denials: IntCounterVec::new(
                Opts::new("token_denials_total", "Token requests denied, by rule"),
                &["reason"],
            )
            .unwrap(),
            auth_failures: IntCounter::new("auth_failures_total", "Failed caller authentications")
                .unwrap(),
            rate_limited: IntCounterVec::new(
                Opts::new("rate_limited_total", "Requests refused by a rate limit"),
                &["limit"],
            )
            .unwrap(),
            keys: IntGaugeVec::new(Opts::new("keys", "Keys by state"), &["state"]).unwrap(),
            active_key_age: IntGaugeVec::new(
                Opts::new("active_key_age_seconds", "Age of each caller's active key"),
                &["caller"],
            )
            .unwrap(),
            audit_write_seconds: Histogram::with_opts(
                HistogramOpts::new("audit_write_seconds", "Audit batch commit latency")
                    .buckets(exponential_buckets(0.0001, 2.0, 16).unwrap()),
            )
            .unwrap(),
            audit_batch_size: Histogram::with_opts(
                HistogramOpts::new("audit_batch_size", "Audit events per commit")
                    .buckets(exponential_buckets(1.0, 2.0, 10).unwrap()),
            )
            .unwrap(),
            audit_pruned: IntCounter::new(
                "audit_pruned_rows_total",
                "Audit rows deleted by pruning",
            )
            .unwrap(),
            audit_write_failures: IntCounter::new(
                "audit_write_failures_total",
                "Audit batches that could not be committed",
            )
            .unwrap(),
            audit_dropped: IntCounterVec::new(
                Opts::new(
                    "audit_dropped_total",
                    "Audit records dropped because the writer's queue was short of room, by kind",
                ),
                &["kind"],
            )
            .unwrap(),
            audit_queue_depth: IntGauge::new(
                "audit_queue_depth",
                "Audit events queued for the writer, not yet in a batch",
            )
            .unwrap(),
            caller_active_key: IntGaugeVec::new(
                Opts::new(
                    "caller_active_key",
                    "Whether each enabled caller has an active key (1) or not (0)",
                ),
                &["caller"],
            )
            .unwrap(),
            caller_rotation_period: IntGaugeVec::new(
                Opts::new(
                    "caller_rotation_period_seconds",
                    "Each enabled caller's key rotation period",
                ),
                &["caller"],
            )
            .unwrap(),
            db_connections: IntGaugeVec::new(
                Opts::new("db_pool_connections", "Database pool connections by state"),
                &["state"],
            )
            .unwrap(),
            db_up: IntGauge::new(
                "database_up",
                "Whether the last scrape could read the database (1) or not (0)",
            )
            .unwrap(),
            change_notifications: IntCounterVec::new(
                Opts::new(
                    "change_notifications_total",
                    "Change notifications heard from the fleet (PostgreSQL), by kind",
                ),
                &["kind"],
            )
            .unwrap(),
            change_listener_reconnects: IntCounter::new(
                "change_listener_reconnects_total",
                "Times the change listener lost its connection, reconnected and reloaded",
            )
            .unwrap(),
            change_listener_connected: IntGauge::new(
                "change_listener_connected",
                "Whether this replica hears the fleet's change notifications (1) or not (0); \
                 always 0 on SQLite",
            )
            .unwrap(),
            registry,
        };
        for c in [
            Box::new(m.http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.http_duration.clone()),
            Box::new(m.tokens_issued.clone()),
            Box::new(m.token_denials.clone()),
            Box::new(m.auth_failures.clone()),
            Box::new(m.rate_limited.clone()),
            Box::new(m.keys.clone()),
            Box::new(m.active_key_age.clone()),
            Box::new(m.audit_write_seconds.clone()),
            Box::new(m.audit_batch_size.clone()),
            Box::new(m.audit_pruned.clone()),
            Box::new(m.audit_write_failures.clone()),
            Box::new(m.audit_dropped.clone()),
            Box::new(m.audit_queue_depth.clone()),
            Box::new(m.caller_active_key.clone()),
            Box::new(m.caller_rotation_period.clone()),
            Box::new(m.db_connections.clone()),
            Box::new(m.db_up.clone()),
            Box::new(m.change_notifications.clone()),
            Box::new(m.change_listener_reconnects.clone()),
            Box::new(m.change_listener_connected.clone()),
        ] {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding metrics into memory cannot fail");
        out
    }
}
