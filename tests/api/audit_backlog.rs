//! A stalled audit store: introspection keeps answering, its records are
//! dropped and counted once the writer's queue is short of room instead of
//! piling up in memory, and the records requests wait for (`token.issued`)
//! are never dropped. The stall is a write lock on the audit table, taken
//! from a connection of the test's own.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{AnyConnection, Connection, Executor};

use crate::helpers::{is_postgres, spawn_app_with, TestApp};
use crate::token_support::{detail, Caller};

/// The writer's queue in these tests: small, so a stall fills it quickly.
const QUEUE: usize = 64;
/// How long the stall may take to show, and the writer to recover.
const DEADLINE: Duration = Duration::from_secs(60);

/// Holds the audit table's write lock until released.
struct AuditLock(AnyConnection);

impl AuditLock {
    async fn take(app: &TestApp) -> Self {
        let mut conn = AnyConnection::connect(&app.database_url).await.unwrap();
        if is_postgres() {
            conn.execute("BEGIN").await.unwrap();
            conn.execute("LOCK TABLE audit_events IN EXCLUSIVE MODE")
                .await
                .unwrap();
        } else {
            // SQLite has one writer: the reserved lock stops every insert.
            conn.execute("BEGIN IMMEDIATE").await.unwrap();
        }
        Self(conn)
    }

    async fn release(mut self) {
        self.0.execute("ROLLBACK").await.unwrap();
    }
}

async fn introspect(app: &TestApp, caller: &Caller, token: &str) -> Value {
    let res = app
        .request(Method::POST, "/oauth2/introspect")
        .basic_auth(&caller.name, Some(&caller.secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// `/metrics` over HTTP (the queue gauge is read at scrape time): the sum
/// of the samples of `name` whose labels include `labels`.
async fn scraped(app: &TestApp, name: &str, labels: &str) -> f64 {
    let text = crate::metrics::scrape(app).await;
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split('{').next() == Some(name) && series.contains(labels))
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

async fn issue(app: &TestApp, caller: &Caller) -> reqwest::Response {
    app.token_request(caller, json!({"audience": "svc-b", "lifetime": 60}))
        .await
}

#[tokio::test]
async fn a_stalled_audit_store_drops_introspection_records_not_tokens() {
    let app = spawn_app_with(|s| s.audit.queue_capacity = QUEUE).await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    let b = app.caller("svc-b", json!({})).await;
    let token = issue(&app, &a).await.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(introspect(&app, &b, &token).await["active"], true);

    let lock = AuditLock::take(&app).await;
    // A token asked for during the stall waits for its record's commit.
    let waiting = tokio::spawn(
        app.request(Method::POST, "/v1/tokens")
            .basic_auth(&a.name, Some(&a.secret))
            .json(&json!({"audience": "svc-b", "lifetime": 60}))
            .send(),
    );
    let deadline = Instant::now() + DEADLINE;
    let dropped = r#"kind="token.introspected""#;
    let mut most_queued = 0.0_f64;
    while scraped(&app, "asapd_audit_dropped_total", dropped).await == 0.0 {
        assert!(
            Instant::now() < deadline,
            "no record dropped in {DEADLINE:?}"
        );
        let answers = join_all((0..QUEUE).map(|_| introspect(&app, &b, &token))).await;
        assert!(answers.iter().all(|a| a["active"] == true), "answers go on");
        let queued = scraped(&app, "asapd_audit_queue_depth", "").await;
        assert!(queued <= QUEUE as f64, "{queued} queued, capacity {QUEUE}");
        most_queued = most_queued.max(queued);
    }
    assert!(most_queued > 0.0, "the queue gauge never moved");
    lock.release().await;

    // The writer recovers: the token asked for during the stall was either
    // refused or returned with its record committed, and new records land.
    let res = waiting.await.unwrap().unwrap();
    let status = res.status();
    assert!(
        status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}"
    );
    let jti_of = |body: &Value| body["jti"].as_str().unwrap().to_owned();
    let mut issued = vec![];
    if status == StatusCode::OK {
        issued.push(jti_of(&res.json().await.unwrap()));
    }
    let res = issue(&app, &a).await;
    assert_eq!(res.status(), StatusCode::OK);
    let fresh = res.json::<Value>().await.unwrap();
    issued.push(jti_of(&fresh));
    let recorded: Vec<String> = app
        .audit_rows("token.issued")
        .await
        .iter()
        .map(|row| detail(row)["jti"].as_str().unwrap().to_owned())
        .collect();
    for jti in &issued {
        assert!(
            recorded.contains(jti),
            "token {jti} left without its record"
        );
    }
    let kind = r#"kind="token.issued""#;
    assert_eq!(scraped(&app, "asapd_audit_dropped_total", kind).await, 0.0);

    introspect(&app, &b, fresh["token"].as_str().unwrap()).await;
    let target = format!("jti:{}", jti_of(&fresh));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rows = app.audit_rows("token.introspected").await;
        if rows
            .iter()
            .any(|r| r.target.as_deref() == Some(target.as_str()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no introspection record after the stall"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(scraped(&app, "asapd_audit_queue_depth", "").await, 0.0);
}
