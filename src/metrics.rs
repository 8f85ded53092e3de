//! Prometheus metrics, one registry per application (no globals, so tests
//! running several apps in one process do not share counters).
//!
//! Label values are bounded: route patterns (not paths), methods, status
//! codes, caller names (admin-controlled), algorithms, reasons. Never a
//! kid, jti, IP address or free text.

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// A counter's or gauge's name, help text and labels: the catalogue
/// below, so that `Metrics::new` reads as one line per metric.
struct Spec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

const HTTP_REQUESTS: Spec = Spec {
    name: "http_requests_total",
    help: "HTTP requests by route pattern, method and status",
    labels: &["route", "method", "status"],
};

const TOKENS_ISSUED: Spec = Spec {
    name: "tokens_issued_total",
    help: "Tokens issued by caller and algorithm",
    labels: &["caller", "algorithm"],
};

const TOKEN_DENIALS: Spec = Spec {
    name: "token_denials_total",
    help: "Token requests denied, by rule",
    labels: &["reason"],
};

const AUTH_FAILURES: Spec = Spec {
    name: "auth_failures_total",
    help: "Failed caller authentications",
    labels: &[],
};

const FEDERATION_JWKS_FETCHES: Spec = Spec {
    name: "federation_jwks_fetches_total",
    help: "Fetches of trusted issuers' keys (discovery and JWKS), by issuer name and outcome",
    labels: &["issuer", "outcome"],
};

const RATE_LIMITED: Spec = Spec {
    name: "rate_limited_total",
    help: "Requests refused by a rate limit",
    labels: &["limit"],
};

const KEYS: Spec = Spec {
    name: "keys",
    help: "Keys by state",
    labels: &["state"],
};

const ACTIVE_KEY_AGE: Spec = Spec {
    name: "active_key_age_seconds",
    help: "Age of each caller's active key",
    labels: &["caller"],
};

const AUDIT_PRUNED: Spec = Spec {
    name: "audit_pruned_rows_total",
    help: "Audit rows deleted by pruning",
    labels: &[],
};

const AUDIT_WRITE_FAILURES: Spec = Spec {
    name: "audit_write_failures_total",
    help: "Audit batches that could not be committed",
    labels: &[],
};

const CALLER_ACTIVE_KEY: Spec = Spec {
    name: "caller_active_key",
    help: "Whether each enabled caller has an active key (1) or not (0)",
    labels: &["caller"],
};

const CALLER_ROTATION_PERIOD: Spec = Spec {
    name: "caller_rotation_period_seconds",
    help: "Each enabled caller's key rotation period",
    labels: &["caller"],
};

const DB_CONNECTIONS: Spec = Spec {
    name: "db_pool_connections",
    help: "Database pool connections by state",
    labels: &["state"],
};

const DB_UP: Spec = Spec {
    name: "database_up",
    help: "Whether the last scrape could read the database (1) or not (0)",
    labels: &[],
};

const CHANGE_NOTIFICATIONS: Spec = Spec {
    name: "change_notifications_total",
    help: "Change notifications heard from the fleet (PostgreSQL), by kind",
    labels: &["kind"],
};

const CHANGE_LISTENER_RECONNECTS: Spec = Spec {
    name: "change_listener_reconnects_total",
    help: "Times the change listener lost its connection, reconnected and reloaded",
    labels: &[],
};

const RATE_BUCKET_WRITES: Spec = Spec {
    name: "rate_bucket_writes_total",
    help: "Writes to the fleet-wide rate limit buckets (PostgreSQL): one per leased slice",
    labels: &[],
};

const AUDIT_DROPPED: Spec = Spec {
    name: "audit_dropped_total",
    help: "Audit records dropped because the writer's queue was short of room, by kind",
    labels: &["kind"],
};

const AUDIT_QUEUE_DEPTH: Spec = Spec {
    name: "audit_queue_depth",
    help: "Audit events queued for the writer, not yet in a batch",
    labels: &[],
};

const CHANGE_LISTENER_CONNECTED: Spec = Spec {
    name: "change_listener_connected",
    help: "Whether this replica hears the fleet's change notifications (1) or not (0); \
                 always 0 on SQLite",
    labels: &[],
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
    /// Statements that wrote a caller's fleet-wide bucket (`rate_buckets`):
    /// a caller over its limit must not turn into a write load.
    pub rate_bucket_writes: IntCounter,
    /// Time to sign one token, by key backend (`software`, `pkcs11`) and
    /// algorithm: what an HSM adds to issuing.
    pub signing_seconds: HistogramVec,
    /// Key fetches from trusted issuers: `ok`, `error`, or `stale` (failed,
    /// the last good set still served).
    pub federation_jwks_fetches: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new_custom(Some("asapd".into()), None).expect("a valid metrics prefix");
        Self {
            http_requests: counter_vec(&r, &HTTP_REQUESTS),
            http_duration: histogram_vec(
                &r,
                HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                    .buckets(exponential_buckets(0.0001, 2.5, 14).unwrap()),
                &["route", "method"],
            ),
            tokens_issued: counter_vec(&r, &TOKENS_ISSUED),
            token_denials: counter_vec(&r, &TOKEN_DENIALS),
            auth_failures: counter(&r, &AUTH_FAILURES),
            rate_limited: counter_vec(&r, &RATE_LIMITED),
            keys: gauge_vec(&r, &KEYS),
            active_key_age: gauge_vec(&r, &ACTIVE_KEY_AGE),
            audit_write_seconds: histogram(
                &r,
                HistogramOpts::new("audit_write_seconds", "Audit batch commit latency")
                    .buckets(exponential_buckets(0.0001, 2.0, 16).unwrap()),
            ),
            signing_seconds: histogram_vec(
                &r,
                HistogramOpts::new(
                    "signing_seconds",
                    "Time to sign one token, by key backend and algorithm",
                )
                .buckets(exponential_buckets(0.00001, 2.0, 16).unwrap()),
                &["backend", "algorithm"],
            ),
            audit_batch_size: histogram(
                &r,
                HistogramOpts::new("audit_batch_size", "Audit events per commit")
                    .buckets(exponential_buckets(1.0, 2.0, 10).unwrap()),
            ),
            audit_pruned: counter(&r, &AUDIT_PRUNED),
            audit_write_failures: counter(&r, &AUDIT_WRITE_FAILURES),
            caller_active_key: gauge_vec(&r, &CALLER_ACTIVE_KEY),
            caller_rotation_period: gauge_vec(&r, &CALLER_ROTATION_PERIOD),
            db_connections: gauge_vec(&r, &DB_CONNECTIONS),
            db_up: gauge(&r, &DB_UP),
            change_notifications: counter_vec(&r, &CHANGE_NOTIFICATIONS),
            change_listener_reconnects: counter(&r, &CHANGE_LISTENER_RECONNECTS),
            change_listener_connected: gauge(&r, &CHANGE_LISTENER_CONNECTED),
            rate_bucket_writes: counter(&r, &RATE_BUCKET_WRITES),
            federation_jwks_fetches: counter_vec(&r, &FEDERATION_JWKS_FETCHES),
            audit_dropped: counter_vec(&r, &AUDIT_DROPPED),
            audit_queue_depth: gauge(&r, &AUDIT_QUEUE_DEPTH),
            registry: r,
        }
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

/// Registers `metric` in `registry` and hands it back. The names and
/// options are this file's constants, so a failure is a bug caught by any
/// test that builds an app.
fn registered<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn counter(r: &Registry, spec: &Spec) -> IntCounter {
    registered(
        r,
        IntCounter::new(spec.name, spec.help).expect("valid counter"),
    )
}

fn counter_vec(r: &Registry, spec: &Spec) -> IntCounterVec {
    let opts = Opts::new(spec.name, spec.help);
    registered(
        r,
        IntCounterVec::new(opts, spec.labels).expect("valid counter"),
    )
}

fn gauge(r: &Registry, spec: &Spec) -> IntGauge {
    registered(r, IntGauge::new(spec.name, spec.help).expect("valid gauge"))
}

fn gauge_vec(r: &Registry, spec: &Spec) -> IntGaugeVec {
    let opts = Opts::new(spec.name, spec.help);
    registered(r, IntGaugeVec::new(opts, spec.labels).expect("valid gauge"))
}

fn histogram(r: &Registry, opts: HistogramOpts) -> Histogram {
    registered(r, Histogram::with_opts(opts).expect("valid histogram"))
}

fn histogram_vec(r: &Registry, opts: HistogramOpts, labels: &[&str]) -> HistogramVec {
    registered(r, HistogramVec::new(opts, labels).expect("valid histogram"))
}
