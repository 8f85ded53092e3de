//! `/metrics`: counters move with the actions they count; labels bounded.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, TestApp};

pub(crate) async fn scrape(app: &TestApp) -> String {
    let res = app.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.text().await.unwrap()
}

/// The value of the sample whose name and labels start with `prefix`.
fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// How far the sample `prefix` moved between two scrapes.
fn delta(before: &str, after: &str, prefix: &str) -> f64 {
    value(after, prefix) - value(before, prefix)
}

#[tokio::test]
async fn counters_move_with_actions() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    let created =
        r#"asapd_http_requests_total{method="POST",route="/v1/admin/callers",status="201"}"#;
    assert_eq!(value(&before, created), 0.0);
    let active_before = value(&before, r#"asapd_keys{state="active"}"#);

    app.create_caller(json!({"name": "svc-a"})).await;
    app.create_caller(json!({"name": "svc-b"})).await;
    let after = scrape(&app).await;
    assert_eq!(value(&after, created), 2.0);
    assert_eq!(
        value(&after, r#"asapd_keys{state="active"}"#),
        active_before + 2.0
    );
    assert!(after.contains(r#"asapd_active_key_age_seconds{caller="svc-a"}"#));
    assert!(
        value(
            &after,
            r#"asapd_http_request_duration_seconds_count{method="POST",route="/v1/admin/callers"}"#
        ) >= 2.0
    );
    assert!(after.contains("asapd_db_pool_connections{state=\"idle\"}"));
}

#[tokio::test]
async fn labels_stay_bounded() {
    let app = spawn_app().await;
    let created = app.create_caller(json!({"name": "svc-a"})).await;
    let kid = created["kid"].as_str().unwrap();
    for path in ["/wp-login.php", "/a/b/c", "/.env"] {
        app.request(Method::GET, path).send().await.unwrap();
    }
    app.request(Method::GET, &format!("/v1/keys/{kid}"))
        .send()
        .await
        .unwrap();
    let text = scrape(&app).await;
    assert_eq!(
        value(
            &text,
            r#"asapd_http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        3.0
    );
    assert!(!text.contains("wp-login"));
    assert!(!text.contains(kid), "no kid in any label");
    assert!(text.contains(r#"route="/v1/keys/{kid}""#));
    assert!(!text.contains("127.0.0.1"), "no IP in any label");
}

/// A HEAD is answered by its GET route but counted as the HEAD it was:
/// uptime checkers' probes must not read as GET traffic.
#[tokio::test]
async fn head_requests_are_counted_as_head() {
    let app = spawn_app().await;
    for _ in 0..2 {
        let res = app.request(Method::HEAD, "/healthz").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    app.request(Method::GET, "/healthz").send().await.unwrap();
    let text = scrape(&app).await;
    let series = |method: &str| {
        value(
            &text,
            &format!(
                r#"asapd_http_requests_total{{method="{method}",route="/healthz",status="200"}}"#
            ),
        )
    };
    assert_eq!(series("HEAD"), 2.0);
    assert_eq!(series("GET"), 1.0);
}

/// The audit and pool series named by the audit issue move when audit
/// records are written, pruned, and logins fail, read through `/metrics`.
#[tokio::test]
async fn audit_pool_and_limit_series_move() {
    // A clock that stands still: the failed-login allowance cannot refill
    // between the attempts, so the counts are exact.
    let clock = asapd::clock::Clock::manual(crate::token_support::now());
    let app = crate::helpers::spawn_app_with_clock(clock, |s| {
        s.tokens.failed_auth_burst = 2;
        s.tokens.failed_auth_per_minute = 1;
    })
    .await;
    let before = scrape(&app).await;
    let writes = "asapd_audit_write_seconds_count";
    let batches = "asapd_audit_batch_size_count";
    let batched = "asapd_audit_batch_size_sum";
    let caller = app.caller_granted("svc-a", &["b"]).await;
    let tokens = futures_util::future::join_all((0..20).map(|_| app.token(&caller, "b"))).await;
    assert_eq!(tokens.len(), 20);
    let after = scrape(&app).await;
    assert!(value(&after, writes) > value(&before, writes));
    assert!(value(&after, batches) > value(&before, batches));
    // Every token.issued record went through some batch.
    assert!(delta(&before, &after, batched) >= 20.0);
    for state in ["idle", "in_use"] {
        assert!(
            after.contains(&format!("asapd_db_pool_connections{{state=\"{state}\"}}")),
            "{state}"
        );
    }
    // Age of the active key: a number of seconds, not negative.
    let age = value(&after, r#"asapd_active_key_age_seconds{caller="svc-a"}"#);
    assert!((0.0..60.0).contains(&age), "{age}");

    // Pruning counts the rows it removed.
    app.set_retention(None, Some(100)).await;
    for i in 0..110 {
        app.create_group(&format!("g{i}"), &["x"]).await;
    }
    let pruned = asapd::jobs::audit_prune::run_once(&app.state)
        .await
        .unwrap()
        .unwrap();
    assert!(pruned.by_count > 0);
    let after_prune = scrape(&app).await;
    assert_eq!(
        delta(&after, &after_prune, "asapd_audit_pruned_rows_total"),
        pruned.by_count as f64
    );

    // Failed logins: counted, then limited per source address.
    let failed = "asapd_auth_failures_total";
    let limited = r#"asapd_rate_limited_total{limit="failed_auth"}"#;
    for _ in 0..4 {
        app.request(Method::GET, "/v1/admin/callers")
            .basic_auth("admin", Some("asapd_wrong"))
            .send()
            .await
            .unwrap();
    }
    let after_fail = scrape(&app).await;
    let failed_n = delta(&after_prune, &after_fail, failed);
    let limited_n = delta(&after_prune, &after_fail, limited);
    // Two in the burst, the third uses it up (and starts the block), the
    // fourth is refused before its credentials are read.
    assert_eq!(
        (failed_n, limited_n),
        (3.0, 1.0),
        "each refusal counted once"
    );
}

/// Commit pacing (`audit.commit_interval_ms`): records that trickle in
/// soon after a commit wait for the interval and share one commit. Read
/// through the writer's own batch series.
///
/// Pacing follows the test's clock, which stands still: the ten records
/// arrive within the interval however slow the machine, and the wait ends
/// when the test moves the clock, once the writer holds all ten.
#[tokio::test]
async fn trickling_records_share_one_paced_commit() {
    let clock = asapd::clock::Clock::manual(crate::token_support::now());
    let interval_ms = 1000;
    let app = crate::helpers::spawn_app_with_clock(clock.clone(), |s| {
        s.audit.commit_interval_ms = interval_ms;
        // A batch target the ten cannot reach: only the interval ends the wait.
        s.audit.commit_batch = 1000;
    })
    .await;
    app.state.audit.pace_by_manual_clock();
    let caller = app.caller_granted("svc-a", &["b"]).await;
    // The first record, with no commit before it, commits at once...
    app.token(&caller, "b").await;
    let before = scrape(&app).await;
    // ...and the ten that follow within the interval wait for it to end.
    let tokens = futures_util::future::join_all((0..10).map(|_| app.token(&caller, "b")));
    let release = async {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while app.state.audit.held_for_pacing() < 10 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the writer holds {} of the ten records",
                app.state.audit.held_for_pacing()
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Nothing has been committed while they wait.
        let waiting = scrape(&app).await;
        assert_eq!(
            delta(&before, &waiting, "asapd_audit_batch_size_count"),
            0.0
        );
        clock.advance_ms(interval_ms as i64);
    };
    let (tokens, ()) = tokio::join!(tokens, release);
    assert_eq!(tokens.len(), 10);
    let after = scrape(&app).await;
    let commits = delta(&before, &after, "asapd_audit_batch_size_count");
    let events = delta(&before, &after, "asapd_audit_batch_size_sum");
    assert_eq!((commits, events), (1.0, 10.0));
}

/// The series the alert rules in deploy/prometheus/ compare per caller: a
/// caller with no active key shows 0 (not a missing series), and each
/// caller's rotation period is there to compare its key's age with.
#[tokio::test]
async fn callers_without_an_active_key_and_rotation_periods_are_exported() {
    let app = spawn_app().await;
    let a = app
        .create_caller(json!({"name": "svc-a", "rotation_period_secs": 7200}))
        .await;
    app.create_caller(json!({"name": "svc-b"})).await;
    let text = scrape(&app).await;
    let has_key = |text: &str, caller: &str| {
        value(
            text,
            &format!(r#"asapd_caller_active_key{{caller="{caller}"}}"#),
        )
    };
    assert_eq!(has_key(&text, "svc-a"), 1.0);
    assert_eq!(
        value(
            &text,
            r#"asapd_caller_rotation_period_seconds{caller="svc-a"}"#
        ),
        7200.0
    );
    assert_eq!(
        value(
            &text,
            r#"asapd_caller_rotation_period_seconds{caller="svc-b"}"#
        ),
        (30 * 86_400) as f64
    );

    // The API always replaces a revoked active key, so only the database
    // can get a caller into this state (a hand edit, a partial restore):
    // exactly what the alert is for.
    let kid = a["kid"].as_str().unwrap();
    let mut conn = app.state.store.acquire().await.unwrap();
    sqlx::query("UPDATE keys SET state = 'revoked' WHERE kid = $1")
        .bind(kid)
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let text = scrape(&app).await;
    assert!(
        text.contains(r#"asapd_caller_active_key{caller="svc-a"} 0"#),
        "{text}"
    );
    assert_eq!(has_key(&text, "svc-b"), 1.0);
}
