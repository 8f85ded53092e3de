//! `/metrics`: counters move with the actions they count; labels bounded.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, TestApp};

async fn scrape(app: &TestApp) -> String {
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
