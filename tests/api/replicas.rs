//! Two replicas on one PostgreSQL act as one service: what one commits,
//! the other applies at once through change notifications. The periodic
//! refresh is set to an hour here, so only a notification can explain a
//! change showing up on the other replica. SQLite is one process: these
//! tests only run on PostgreSQL, and are ignored without it.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use asapd::clock::Clock;

use crate::helpers::{require_postgres, spawn_app_with_clock, spawn_replica, TestApp};
use crate::token_support::Caller;

/// Far longer than any test: the fallback refresh never runs.
const NO_REFRESH: u64 = 3600;
/// How long a replica may take to react before the test fails. Generous,
/// for a loaded CI machine; the fleet test measures the real figures.
const DEADLINE: Duration = Duration::from_secs(5);

async fn two_replicas() -> (TestApp, TestApp) {
    two_replicas_on(Clock::System).await
}

async fn two_replicas_on(clock: Clock) -> (TestApp, TestApp) {
    require_postgres();
    let a = spawn_app_with_clock(clock, |s| s.keys.refresh_interval_secs = NO_REFRESH).await;
    let b = spawn_replica(&a, |s| s.keys.refresh_interval_secs = NO_REFRESH).await;
    (a, b)
}

/// Polls `check` until it holds; fails the test after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `POST /v1/tokens` for svc-b on `app`: status and body.
async fn token_on(app: &TestApp, caller: &Caller) -> (StatusCode, Value) {
    let res = app
        .token_request(caller, json!({"audience": "svc-b"}))
        .await;
    (res.status(), res.json().await.unwrap())
}

async fn pem_status(app: &TestApp, kid: &str) -> StatusCode {
    app.request(Method::GET, &format!("/v1/keys/{kid}"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
#[ignore = "needs PostgreSQL (ASAPD_TEST_POSTGRES_URL): replicas share one"]
async fn a_change_on_one_replica_applies_on_the_other() {
    let (a, b) = two_replicas().await;
    // B has cached nothing about svc-a yet; and it asks before svc-a exists.
    let caller = Caller {
        name: "svc-a".into(),
        secret: "none yet".into(),
        kid: String::new(),
    };
    assert_eq!(token_on(&b, &caller).await.0, StatusCode::UNAUTHORIZED);
    let caller = a.caller_granted("svc-a", &["svc-b"]).await;
    eventually("caller created on A issues on B", || async {
        token_on(&b, &caller).await.0 == StatusCode::OK
    })
    .await;

    let rotated = a
        .admin(Method::POST, "/v1/admin/callers/svc-a/keys/rotate")
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    let new_kid = rotated.json::<Value>().await.unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("B signs with the key rotated in on A", || async {
        token_on(&b, &caller).await.1["kid"] == new_kid.as_str()
    })
    .await;

    let res = a
        .admin(Method::POST, &format!("/v1/admin/keys/{new_kid}/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    eventually("B unpublishes the key revoked on A", || async {
        pem_status(&b, &new_kid).await == StatusCode::NOT_FOUND
            && !b.jwks().await.iter().any(|k| k["kid"] == new_kid.as_str())
    })
    .await;
    let (status, body) = token_on(&b, &caller).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["kid"], new_kid.as_str(), "B signs with a revoked key");

    let res = a
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/svc-a",
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    eventually("B refuses the caller disabled on A", || async {
        token_on(&b, &caller).await.0 == StatusCode::FORBIDDEN
    })
    .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (ASAPD_TEST_POSTGRES_URL): replicas share one"]
async fn a_secret_revoked_on_one_replica_stops_working_on_the_other() {
    let (a, b) = two_replicas().await;
    let caller = a.caller_granted("svc-a", &["svc-b"]).await;
    // B issues for it once the change notification has brought the
    // caller's key into B's ring (a 503 until then), and caches it.
    eventually("caller created on A issues on B", || async {
        token_on(&b, &caller).await.0 == StatusCode::OK
    })
    .await;
    let secrets = a.admin_get_json("/v1/admin/callers/svc-a/secrets").await;
    let id = secrets[0]["id"].as_str().unwrap();
    let res = a
        .admin(
            Method::DELETE,
            &format!("/v1/admin/callers/svc-a/secrets/{id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    eventually("B refuses the secret revoked on A", || async {
        token_on(&b, &caller).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
}

/// The connection a replica listens on drops (as when PostgreSQL restarts):
/// it reconnects, and what changed meanwhile is applied.
#[tokio::test]
#[ignore = "needs PostgreSQL (ASAPD_TEST_POSTGRES_URL): replicas share one"]
async fn a_replica_reconnects_and_reloads_what_it_missed() {
    let (a, b) = two_replicas().await;
    let before = b
        .metric("asapd_change_listener_reconnects_total", &[])
        .unwrap_or(0.0);
    eventually("B listens", || async {
        b.metric("asapd_change_listener_connected", &[]) == Some(1.0)
    })
    .await;
    // Drop every listening connection of this database, B's among them.
    let db = a.database_url.rsplit('/').next().unwrap().to_owned();
    let server = std::env::var("ASAPD_TEST_POSTGRES_URL").unwrap();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server)
        .await
        .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(&db)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(killed.len() >= 2, "listeners found: {}", killed.len());

    // Changed while B is (or may be) disconnected.
    let caller = a.caller_granted("svc-late", &["svc-b"]).await;
    eventually(
        "B serves a caller created while it was disconnected",
        || async { token_on(&b, &caller).await.0 == StatusCode::OK },
    )
    .await;
    eventually("B counted the reconnect", || async {
        b.metric("asapd_change_listener_reconnects_total", &[])
            .unwrap_or(0.0)
            > before
    })
    .await;
    assert_eq!(b.metric("asapd_change_listener_connected", &[]), Some(1.0));
}

/// Requests alternating between `a` and `b`: how many got a token. Every
/// refusal is a 429 with `Retry-After`.
async fn alternate(a: &TestApp, b: &TestApp, caller: &Caller, requests: usize) -> usize {
    let mut issued = 0;
    for i in 0..requests {
        let app = if i % 2 == 0 { a } else { b };
        let res = app
            .token_request(caller, json!({"audience": "svc-b"}))
            .await;
        match res.status() {
            StatusCode::OK => issued += 1,
            StatusCode::TOO_MANY_REQUESTS => assert!(res.headers().contains_key("retry-after")),
            other => panic!("token: {other}"),
        }
    }
    issued
}

/// The README's bound: what the bucket holds, plus one slice per replica.
fn fleet_bound(per_second: u32, burst: u32, replicas: u32) -> usize {
    let slice =
        asapd::fleet_limits::slice_of(asapd::domain::caller::RateLimit { per_second, burst });
    (burst + replicas * slice) as usize
}

#[tokio::test]
#[ignore = "needs PostgreSQL (ASAPD_TEST_POSTGRES_URL): replicas share one"]
async fn one_rate_limit_holds_for_the_fleet() {
    // One clock for both, and it stands still: nothing refills unless the
    // test moves it.
    let (a, b) = two_replicas_on(Clock::manual(1_900_000_000)).await;
    let caller = a.caller_granted("svc-a", &["svc-b"]).await;
    a.admin_json(
        Method::PATCH,
        "/v1/admin/callers/svc-a",
        json!({"rate_limit": {"per_second": 1, "burst": 6}}),
    )
    .await;
    let issued = alternate(&a, &b, &caller, 12).await;
    assert!(issued >= 6, "the burst is whole: {issued}");
    assert!(
        issued <= fleet_bound(1, 6, 2),
        "{issued} through two replicas"
    );
    // Slices of one token are spent as soon as they are leased: exactly the burst.
    assert_eq!(issued, 6);

    // A second later, one more token for the fleet, not one per replica.
    a.state.clock.advance(1);
    assert_eq!(alternate(&a, &b, &caller, 4).await, 1);

    // Larger slices (10 tokens): each replica leases, and the fleet still
    // gets the bucket, however the requests fall.
    let bigger = a.caller_granted("svc-c", &["svc-b"]).await;
    a.admin_json(
        Method::PATCH,
        "/v1/admin/callers/svc-c",
        json!({"rate_limit": {"per_second": 100, "burst": 20}}),
    )
    .await;
    let issued = alternate(&a, &b, &bigger, 60).await;
    assert!((20..=fleet_bound(100, 20, 2)).contains(&issued), "{issued}");
}

/// Bucket writes both replicas have made so far.
fn bucket_writes(a: &TestApp, b: &TestApp) -> f64 {
    let of = |app: &TestApp| app.metric("asapd_rate_bucket_writes_total", &[]).unwrap();
    of(a) + of(b)
}

/// A caller over its limit is refused from memory until its bucket next
/// holds a token: hammering asapd does not hammer PostgreSQL.
#[tokio::test]
#[ignore = "needs PostgreSQL (ASAPD_TEST_POSTGRES_URL): replicas share one"]
async fn a_refused_burst_makes_at_most_a_handful_of_writes() {
    let (a, b) = two_replicas_on(Clock::manual(1_900_000_000)).await;
    let caller = a.caller_granted("svc-a", &["svc-b"]).await;
    a.admin_json(
        Method::PATCH,
        "/v1/admin/callers/svc-a",
        json!({"rate_limit": {"per_second": 1, "burst": 6}}),
    )
    .await;
    let before = bucket_writes(&a, &b);
    let requests = 400;
    let issued = alternate(&a, &b, &caller, requests).await;
    let writes = bucket_writes(&a, &b) - before;
    eprintln!("{requests} requests through two replicas: {issued} tokens, {writes} bucket writes");
    assert_eq!(issued, 6);
    // One lease per token (slices of one), and one per replica that finds
    // the bucket empty.
    assert!(writes <= 6.0 + 2.0, "{writes} writes for {issued} tokens");

    // Refused until the bucket holds a token again, which a lease then takes.
    a.state.clock.advance_ms(999);
    let before = bucket_writes(&a, &b);
    assert_eq!(alternate(&a, &b, &caller, 100).await, 0);
    assert_eq!(bucket_writes(&a, &b), before, "refused from memory");
    a.state.clock.advance_ms(1);
    assert_eq!(alternate(&a, &b, &caller, 100).await, 1);
    assert!(bucket_writes(&a, &b) - before <= 3.0);
}

/// During a rolling change of the default quota replicas disagree on it;
/// a caller without its own limit still gets no more than the README's
/// bound with the larger of the two quotas.
#[tokio::test]
#[ignore = "needs PostgreSQL (ASAPD_TEST_POSTGRES_URL): replicas share one"]
async fn replicas_with_different_default_quotas_stay_within_the_bound() {
    require_postgres();
    let quota = |per_second: u32| {
        move |s: &mut asapd::config::Settings| {
            s.keys.refresh_interval_secs = NO_REFRESH;
            s.tokens.rate_limit_per_second = per_second;
            s.tokens.rate_limit_burst = 6;
        }
    };
    let a = spawn_app_with_clock(Clock::manual(1_900_000_000), quota(1)).await;
    let b = spawn_replica(&a, quota(2)).await;
    let caller = a.caller_granted("svc-a", &["svc-b"]).await;
    let mut issued = alternate(&a, &b, &caller, 20).await;
    // Ten seconds of test-clock time, four requests every 100 ms.
    for _ in 0..100 {
        a.state.clock.advance_ms(100);
        issued += alternate(&a, &b, &caller, 4).await;
    }
    let bound = fleet_bound(2, 6, 2) + 2 * 10;
    eprintln!("{issued} tokens in 10 s with defaults of 1/s and 2/s (bound {bound})");
    assert!(issued <= bound, "{issued} tokens; bound {bound}");
    assert!(issued >= 6 + 10, "at least the slower quota: {issued}");
}
