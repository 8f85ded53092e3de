//! The audit log: one record per change, queryable, paginated, pruned.

use std::collections::HashSet;

use asapd::clock::Clock;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with_clock, TestApp};

/// Does `method path body` as admin; returns the response's request id.
async fn act(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (String, Value) {
    let mut req = app.admin(method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = res.json().await.unwrap_or(Value::Null);
    (id, body)
}

/// The one event with `action` caused by request `request_id`.
async fn event_of(app: &TestApp, action: &str, request_id: &str) -> Value {
    let events = app.audit(&format!("action={action}")).await;
    let mine: Vec<_> = events
        .into_iter()
        .filter(|e| e["request_id"] == request_id)
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "exactly one {action} for request {request_id}"
    );
    let e = mine.into_iter().next().unwrap();
    assert_eq!(e["actor"], "admin");
    assert_eq!(e["outcome"], "success");
    assert_eq!(e["source_ip"], "127.0.0.1");
    assert!(e["time"].as_str().unwrap().ends_with('Z'), "UTC: {e}");
    e
}

#[tokio::test]
async fn every_admin_change_is_recorded_with_its_fields() {
    let app = spawn_app().await;
    let (id, _) = act(
        &app,
        Method::POST,
        "/v1/admin/groups",
        Some(json!({"name": "g", "audiences": ["b"]})),
    )
    .await;
    let e = event_of(&app, "group.created", &id).await;
    assert_eq!(e["target"], "group:g");
    assert_eq!(e["detail"]["audiences"], json!(["b"]));
    let (id, _) = act(
        &app,
        Method::PATCH,
        "/v1/admin/groups/g",
        Some(json!({"max_lifetime": 60})),
    )
    .await;
    assert_eq!(
        event_of(&app, "group.updated", &id).await["detail"]["max_lifetime"],
        60
    );

    let (id, created) = act(
        &app,
        Method::POST,
        "/v1/admin/callers",
        Some(json!({"name": "svc-a", "groups": ["g"]})),
    )
    .await;
    let e = event_of(&app, "caller.created", &id).await;
    assert_eq!(e["target"], "caller:svc-a");
    assert_eq!(e["detail"]["caller"]["groups"], json!(["g"]));
    assert_eq!(e["detail"]["secret_id"], created["secret_id"]);
    let first_kid = created["kid"].as_str().unwrap().to_owned();
    let k = event_of(&app, "key.created", &id).await;
    assert_eq!(k["target"], format!("key:{first_kid}"));
    assert_eq!(k["detail"]["state"], "active");

    let (id, _) = act(
        &app,
        Method::PATCH,
        "/v1/admin/callers/svc-a",
        Some(json!({"cidrs": ["10.0.0.0/8"]})),
    )
    .await;
    let e = event_of(&app, "caller.updated", &id).await;
    assert_eq!(e["detail"]["before"]["cidrs"], json!([]));
    assert_eq!(e["detail"]["after"]["cidrs"], json!(["10.0.0.0/8"]));
    let (id, _) = act(
        &app,
        Method::PATCH,
        "/v1/admin/callers/svc-a",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(
        event_of(&app, "caller.disabled", &id).await["detail"]["after"]["enabled"],
        false
    );

    let (id, secret) = act(&app, Method::POST, "/v1/admin/callers/svc-a/secrets", None).await;
    let secret_id = secret["id"].as_str().unwrap().to_owned();
    assert_eq!(
        event_of(&app, "secret.created", &id).await["detail"]["secret_id"],
        secret_id.as_str()
    );
    let (id, _) = act(
        &app,
        Method::DELETE,
        &format!("/v1/admin/callers/svc-a/secrets/{secret_id}"),
        None,
    )
    .await;
    assert_eq!(
        event_of(&app, "secret.revoked", &id).await["target"],
        "caller:svc-a"
    );

    let (id, key) = act(
        &app,
        Method::POST,
        "/v1/admin/callers/svc-a/keys",
        Some(json!({})),
    )
    .await;
    let pending = key["kid"].as_str().unwrap().to_owned();
    assert_eq!(
        event_of(&app, "key.created", &id).await["detail"]["state"],
        "pending"
    );
    let (id, _) = act(
        &app,
        Method::POST,
        "/v1/admin/callers/svc-a/keys/rotate",
        None,
    )
    .await;
    let e = event_of(&app, "key.rotated", &id).await;
    assert_eq!(e["detail"]["activated"], pending.as_str());
    assert_eq!(e["detail"]["retired"], first_kid.as_str());
    let pem = p256::SecretKey::random(&mut rand::rngs::OsRng)
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap();
    let (id, _) = act(
        &app,
        Method::POST,
        "/v1/admin/callers/svc-a/keys/import",
        Some(json!({"private_key": pem.as_str()})),
    )
    .await;
    assert_eq!(
        event_of(&app, "key.imported", &id).await["detail"]["algorithm"],
        "ES256"
    );
    let (id, _) = act(
        &app,
        Method::POST,
        &format!("/v1/admin/keys/{first_kid}/revoke"),
        None,
    )
    .await;
    assert_eq!(
        event_of(&app, "key.revoked", &id).await["detail"]["previous_state"],
        "retired"
    );

    let (id, _) = act(
        &app,
        Method::PUT,
        "/v1/admin/settings/audit-retention",
        Some(json!({"max_age_days": 30, "max_entries": 5000})),
    )
    .await;
    let e = event_of(&app, "settings.changed", &id).await;
    assert_eq!(
        e["detail"]["after"],
        json!({"max_age_days": 30, "max_entries": 5000})
    );

    let keys_before = app.admin_get_json("/v1/admin/callers/svc-a/keys").await;
    let secrets_before = app.admin_get_json("/v1/admin/callers/svc-a/secrets").await;
    let (id, _) = act(&app, Method::DELETE, "/v1/admin/callers/svc-a", None).await;
    let e = event_of(&app, "caller.deleted", &id).await;
    assert_eq!(e["target"], "caller:svc-a");
    // The keys and secrets that went with the caller are named.
    let kids = |v: &Value, field: &str| -> HashSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|k| k[field].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        kids(&e["detail"]["deleted_keys"], "kid"),
        kids(&keys_before, "kid")
    );
    let secret_ids: HashSet<String> = e["detail"]["deleted_secret_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(secret_ids, kids(&secrets_before, "id"));
    assert!(!secret_ids.is_empty());

    let (id, _) = act(&app, Method::DELETE, "/v1/admin/groups/g", None).await;
    assert_eq!(
        event_of(&app, "group.deleted", &id).await["target"],
        "group:g"
    );

    // Filters combine; outcome and target filters work.
    let by_target = app.audit("target=caller:svc-a&outcome=success").await;
    assert!(by_target.len() >= 6, "{by_target:?}");
    assert!(by_target.iter().all(|e| e["target"] == "caller:svc-a"));
}

#[tokio::test]
async fn pages_return_every_event_once_while_new_ones_arrive() {
    let app = spawn_app().await;
    for i in 0..30 {
        app.create_group(&format!("g{i}"), &["x"]).await;
    }
    let before: HashSet<i64> = app
        .audit("")
        .await
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(before.len() >= 30);

    let writer = {
        let client = app.client.clone();
        let url = app.url("/v1/admin/groups");
        let secret = app.admin_secret.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                client
                    .post(&url)
                    .basic_auth("admin", Some(&secret))
                    .json(&json!({"name": format!("late{i}")}))
                    .send()
                    .await
                    .unwrap();
            }
        })
    };

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/admin/audit?limit=7&cursor={c}"),
            None => "/v1/admin/audit?limit=7".to_owned(),
        };
        let page: Value = app.admin_get(&path).await.json().await.unwrap();
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 7);
        let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        seen.extend(ids);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    writer.await.unwrap();
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice");
    assert!(
        before.is_subset(&unique),
        "every event that existed is on some page"
    );
}

#[tokio::test]
async fn bad_queries_name_the_problem() {
    let app = spawn_app().await;
    for (query, field) in [
        ("colour=red", ""),
        ("action=token.stolen", "action"),
        ("outcome=maybe", "outcome"),
        ("from=yesterday", "from"),
        ("from=2026-11-22T10:00:00Z&to=2026-11-22T09:00:00Z", "from"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("limit=ten", "limit"),
        ("cursor=AAAA", "cursor"),
        ("cursor=not-base64!", "cursor"),
    ] {
        let res = app.admin_get(&format!("/v1/admin/audit?{query}")).await;
        let body = assert_problem(res, StatusCode::BAD_REQUEST).await;
        if field.is_empty() {
            assert!(
                body["detail"].as_str().unwrap().contains("colour"),
                "{body}"
            );
        } else {
            assert_eq!(body["field"], field, "{query}: {body}");
        }
    }
    // A cursor from another asapd (another master key) is forged here.
    let other = spawn_app().await;
    for i in 0..3 {
        other.create_group(&format!("g{i}"), &["x"]).await;
    }
    let page: Value = other
        .admin_get("/v1/admin/audit?limit=1")
        .await
        .json()
        .await
        .unwrap();
    let foreign = page["next_cursor"].as_str().unwrap();
    let res = app
        .admin_get(&format!("/v1/admin/audit?cursor={foreign}"))
        .await;
    assert_eq!(
        assert_problem(res, StatusCode::BAD_REQUEST).await["field"],
        "cursor"
    );
}

#[tokio::test]
async fn retention_settings_validate_and_need_admin() {
    let app = spawn_app().await;
    let current: Value = app
        .admin_get("/v1/admin/settings/audit-retention")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        current,
        json!({"max_age_days": 90, "max_entries": 10000000})
    );
    for (body, field) in [
        (
            json!({"max_age_days": -1, "max_entries": 1000}),
            "max_age_days",
        ),
        (
            json!({"max_age_days": 0, "max_entries": 1000}),
            "max_age_days",
        ),
        (
            json!({"max_age_days": 100000, "max_entries": 1000}),
            "max_age_days",
        ),
        (json!({"max_age_days": 7, "max_entries": 5}), "max_entries"),
        (json!({"max_age_days": 7}), "max_entries"),
        (json!({"max_age_days": 7, "max_entries": 1000, "x": 1}), ""),
    ] {
        let res = app
            .admin_json(
                Method::PUT,
                "/v1/admin/settings/audit-retention",
                body.clone(),
            )
            .await;
        let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
        if !field.is_empty() {
            assert_eq!(problem["field"], field, "{body}");
        }
    }
    app.set_retention(None, Some(1000)).await;
    let auditor = app
        .create_caller(json!({"name": "aud", "groups": ["auditor"]}))
        .await;
    let res = app
        .request(Method::PUT, "/v1/admin/settings/audit-retention")
        .basic_auth("aud", auditor["client_secret"].as_str())
        .json(&json!({"max_age_days": 1, "max_entries": 100}))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::FORBIDDEN).await;
    let res = app
        .request(Method::GET, "/v1/admin/audit")
        .basic_auth("aud", auditor["client_secret"].as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "auditors read the audit log");
}

#[tokio::test]
async fn pruning_by_age_removes_exactly_the_old_events() {
    let start = 1_900_000_000;
    let app = spawn_app_with_clock(Clock::manual(start), |_| {}).await;
    for i in 0..5 {
        app.create_group(&format!("old{i}"), &["x"]).await;
    }
    let old: HashSet<i64> = app
        .audit("")
        .await
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    app.state.clock.advance(10 * 86_400);
    for i in 0..3 {
        app.create_group(&format!("new{i}"), &["x"]).await;
    }
    app.set_retention(Some(7), None).await;
    let kept_before: HashSet<i64> = app
        .audit("")
        .await
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .filter(|id| !old.contains(id))
        .collect();

    let pruned = asapd::jobs::audit_prune::run_once(&app.state)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pruned.by_age, old.len() as u64);
    assert_eq!(pruned.by_count, 0);

    let after = app.audit("").await;
    let ids: HashSet<i64> = after.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.is_disjoint(&old), "every old event went");
    assert!(kept_before.is_subset(&ids), "every recent event stayed");
    let pruned_event = &app.audit("action=audit.pruned").await[0];
    assert_eq!(pruned_event["actor"], "system");
    assert_eq!(pruned_event["detail"]["by_age"], old.len());
    assert_eq!(pruned_event["detail"]["rows"], old.len());

    // Nothing left to prune: no new audit.pruned event.
    let again = asapd::jobs::audit_prune::run_once(&app.state)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.by_age + again.by_count, 0);
    assert_eq!(app.audit("action=audit.pruned").await.len(), 1);
}

#[tokio::test]
async fn pruning_by_count_keeps_exactly_the_newest() {
    let app = spawn_app().await;
    app.set_retention(None, Some(100)).await;
    for i in 0..130 {
        app.create_group(&format!("g{i}"), &["x"]).await;
    }
    let all: Vec<i64> = app
        .audit("")
        .await
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    let total = all.len();
    assert!(total > 100);
    let newest: HashSet<i64> = all.iter().take(100).copied().collect();

    let pruned = asapd::jobs::audit_prune::run_once(&app.state)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pruned.by_count as usize, total - 100);
    let after = app.audit("").await;
    assert_eq!(
        after.len(),
        101,
        "the newest 100 plus the audit.pruned record"
    );
    assert_eq!(after[0]["action"], "audit.pruned");
    assert_eq!(after[0]["detail"]["by_count"], total - 100);
    let kept: HashSet<i64> = after[1..]
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(kept, newest);
}

#[tokio::test]
async fn export_streams_ndjson_with_the_same_filters() {
    let app = spawn_app().await;
    for i in 0..12 {
        app.create_group(&format!("g{i}"), &["x"]).await;
    }
    let res = app
        .admin_get("/v1/admin/audit/export?action=group.created")
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let text = res.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    assert!(lines.iter().all(|e| e["action"] == "group.created"));
    let res = app.admin_get("/v1/admin/audit/export?action=nope").await;
    assert_problem(res, StatusCode::BAD_REQUEST).await;
}

/// Writes `n` events at `at_ms` straight into the table, 500 a statement.
async fn insert_events(app: &TestApp, n: usize, at_ms: i64) {
    use asapd::audit::{action, AuditEvent, Origin, Outcome};
    let mut conn = app.state.store.acquire().await.unwrap();
    let mut left = n;
    while left > 0 {
        let chunk: Vec<_> = (0..left.min(500))
            .map(|_| {
                AuditEvent::new(
                    &Origin::system(),
                    at_ms,
                    action::KEY_EXPIRED,
                    Outcome::Success,
                )
                .target("filler")
            })
            .collect();
        asapd::store::audit::insert_batch(&mut conn, &chunk)
            .await
            .unwrap();
        left -= chunk.len();
    }
}

async fn count_events(app: &TestApp) -> i64 {
    let mut conn = app.state.store.acquire().await.unwrap();
    asapd::store::audit::count(&mut conn).await.unwrap()
}

/// More rows than one batch (1000) past each bound: every batch runs, and
/// exactly the rows past the bounds go.
#[tokio::test]
async fn pruning_takes_several_batches_and_stops_exactly_at_the_bounds() {
    let start = 1_900_000_000;
    let app = spawn_app_with_clock(Clock::manual(start), |_| {}).await;
    app.set_retention(Some(7), Some(1500)).await;
    // 2,345 events 8 days old, then 4,000 recent ones.
    insert_events(&app, 2345, (start - 8 * 86_400) * 1000).await;
    let recent_ms = app.state.clock.now_ms();
    insert_events(&app, 4000, recent_ms).await;
    let total = count_events(&app).await;
    let old_and_setup = total - 4000;

    let pruned = asapd::jobs::audit_prune::run_once(&app.state)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pruned.by_age, 2345, "every old event, in three batches");
    // What is left after the age pass: the setup events (not old) and the
    // 4,000 recent ones; all but the newest 1,500 go.
    let after_age = total - 2345;
    assert_eq!(pruned.by_count as i64, after_age - 1500);
    assert!(old_and_setup >= 2345);
    // 1,500 kept, plus the audit.pruned record written after the pass.
    assert_eq!(count_events(&app).await, 1501);
    let e = &app.audit("action=audit.pruned").await[0];
    assert_eq!(e["detail"]["by_age"], 2345);
    assert_eq!(e["detail"]["rows"], 2345 + pruned.by_count);
    assert_eq!(e["detail"]["complete"], true);
    // The survivors are the newest: all recent filler.
    let page = app.audit("").await;
    assert!(page[1..]
        .iter()
        .all(|e| e["target"] == "filler" && e["time"].as_str().is_some()));
}

/// A batch that fails midway (a fault injected with a trigger that refuses
/// deleting rows past the first batch) stops the pass with an error, and
/// `audit.pruned` still records what went, with `complete: false`.
#[tokio::test]
async fn a_pass_failing_midway_records_what_went_as_incomplete() {
    let start = 1_900_000_000;
    let app = spawn_app_with_clock(Clock::manual(start), |_| {}).await;
    app.set_retention(Some(7), None).await;
    insert_events(&app, 2345, (start - 8 * 86_400) * 1000).await;
    let mut conn = app.state.store.acquire().await.unwrap();
    let first: i64 = sqlx::query_scalar("SELECT MIN(id) FROM audit_events WHERE target = 'filler'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    // The first batch (1000 rows from `first`) may go; the second may not.
    let last_allowed = first + 999;
    let trigger = if crate::helpers::is_postgres() {
        format!(
            "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
             CREATE TRIGGER refuse_delete BEFORE DELETE ON audit_events FOR EACH ROW \
             WHEN (OLD.id > {last_allowed}) EXECUTE FUNCTION refuse_delete();"
        )
    } else {
        format!(
            "CREATE TRIGGER refuse_delete BEFORE DELETE ON audit_events \
             WHEN OLD.id > {last_allowed} BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
        )
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(trigger))
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    let failed = asapd::jobs::audit_prune::run_once(&app.state).await;
    assert!(failed.is_err(), "{failed:?}");
    let e = &app.audit("action=audit.pruned").await[0];
    assert_eq!(e["detail"]["by_age"], 1000, "{e}");
    assert_eq!(e["detail"]["rows"], 1000);
    assert_eq!(e["detail"]["complete"], false);
    // Nothing past the first batch went.
    let mut conn = app.state.store.acquire().await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE target = 'filler'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(left, 1345);
}

/// On PostgreSQL the pruning job runs on one replica at a time: while
/// another session holds the job's advisory lock, a pass does nothing.
#[tokio::test]
#[ignore = "needs PostgreSQL (ASAPD_TEST_POSTGRES_URL): SQLite has no other replica"]
async fn pruning_waits_its_turn_behind_another_replica() {
    crate::helpers::require_postgres();
    use sqlx::Connection;
    let app = spawn_app().await;
    let mut other = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let key: i64 = 0x6173_6170_6470_7231;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert!(got);
    let skipped = asapd::jobs::audit_prune::run_once(&app.state)
        .await
        .unwrap();
    assert!(skipped.is_none(), "another replica holds the lock");
    let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .fetch_one(&mut other)
        .await
        .unwrap();
    let ran = asapd::jobs::audit_prune::run_once(&app.state)
        .await
        .unwrap();
    assert!(ran.is_some(), "the lock is free again");
}

/// The job runs by itself on its interval, not only when a test calls it.
#[tokio::test]
async fn the_pruning_job_runs_on_its_interval() {
    let app = crate::helpers::spawn_app_with(|s| s.audit.prune_interval_secs = 1).await;
    app.set_retention(None, Some(100)).await;
    insert_events(&app, 250, app.state.clock.now_ms()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if !app.audit("action=audit.pruned").await.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit.pruned within 20 s of a 1 s interval"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(count_events(&app).await <= 101 + 2);
}
