//! With the database unavailable, changes are refused with 503 and nothing
//! half-done remains once it is back.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::Connection;

use crate::helpers::{assert_problem, is_postgres, spawn_app_with, TestApp};

/// Makes the app's database unavailable until the returned guard is ended:
/// SQLite is held under an exclusive lock (writers get "database is
/// locked"); PostgreSQL refuses connections and drops the app's sessions.
enum Outage {
    Sqlite(sqlx::SqliteConnection),
    Postgres {
        admin: sqlx::PgConnection,
        db: String,
    },
}

impl Outage {
    async fn begin(app: &TestApp) -> Outage {
        if is_postgres() {
            let server = std::env::var("ASAPD_TEST_POSTGRES_URL").unwrap();
            let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
            let db = app.database_url.rsplit('/').next().unwrap().to_owned();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE {db} ALLOW_CONNECTIONS false"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            )
            .bind(&db)
            .execute(&mut admin)
            .await
            .unwrap();
            Outage::Postgres { admin, db }
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
                .await
                .unwrap();
            sqlx::raw_sql("BEGIN EXCLUSIVE")
                .execute(&mut conn)
                .await
                .unwrap();
            Outage::Sqlite(conn)
        }
    }

    async fn end(self) {
        match self {
            Outage::Sqlite(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
            }
            Outage::Postgres { mut admin, db } => {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {db} ALLOW_CONNECTIONS true"
                )))
                .execute(&mut admin)
                .await
                .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn changes_are_refused_with_503_and_leave_nothing_behind() {
    let app = spawn_app_with(|s| s.database_max_connections = 2).await;
    app.create_group("g", &["x"]).await;
    let events_before = app.audit("").await.len();

    let outage = Outage::begin(&app).await;
    let create = app
        .admin(Method::POST, "/v1/admin/callers")
        .json(&json!({"name": "svc-down", "groups": ["g"]}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let body = assert_problem(create, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(!body["detail"].as_str().unwrap().is_empty());
    let update = app
        .admin(Method::PATCH, "/v1/admin/groups/g")
        .json(&json!({"max_lifetime": 5}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_problem(update, StatusCode::SERVICE_UNAVAILABLE).await;
    // Metrics still answer: operators need them most now.
    let scrape = app
        .request(Method::GET, "/metrics")
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), StatusCode::OK);
    let text = scrape.text().await.unwrap();
    assert!(text.contains("asapd_http_requests_total"), "{text}");
    if is_postgres() {
        // (SQLite in WAL mode still reads under another's exclusive lock.)
        assert!(text.contains("asapd_database_up 0"), "{text}");
    }
    outage.end().await;

    // Back: nothing of the refused changes exists, nor their audit records.
    let mut recovered = false;
    for _ in 0..50 {
        if app.admin_get("/v1/admin/groups/g").await.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "asapd recovers when the database is back");
    assert_problem(
        app.admin_get("/v1/admin/callers/svc-down").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let group: serde_json::Value = app
        .admin_get("/v1/admin/groups/g")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        group["max_lifetime"], 600,
        "the refused update did not apply"
    );
    let events = app.audit("").await;
    assert_eq!(
        events.len(),
        events_before,
        "no audit record of refused changes"
    );
    assert!(app
        .jwks()
        .await
        .iter()
        .all(|k| !k["kid"].as_str().unwrap().starts_with("svc-down/")));
    // And it works again.
    app.create_caller(json!({"name": "svc-up", "groups": ["g"]}))
        .await;
}
