//! Test harness: every test gets its own app on a random port and its own
//! fresh database — SQLite in a temp dir, or a new PostgreSQL database when
//! `ASAPD_TEST_POSTGRES_URL` points at a server.

use std::path::PathBuf;

use asapd::clock::Clock;
use asapd::config::{Redacted, Settings};
use asapd::crypto::MasterKey;
use asapd::service::bootstrap;
use asapd::startup::Application;
use rand::RngCore;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// `admin`'s secret.
    pub admin_secret: String,
    /// The app's state, for tests that drive jobs or the clock directly.
    pub state: std::sync::Arc<asapd::state::AppState>,
    pub database_url: String,
    /// The master key, base64: replicas of this app need it.
    pub master_key: String,
    /// Held so the directory lives as long as the app.
    _data_dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh, empty database URL for one test.
pub async fn fresh_database_url(data_dir: &std::path::Path) -> String {
    match std::env::var("ASAPD_TEST_POSTGRES_URL") {
        Ok(server) if !server.is_empty() => {
            let name = format!("asapd_test_{}", random_suffix());
            let mut conn = sqlx::PgConnection::connect(&server)
                .await
                .expect("connect to ASAPD_TEST_POSTGRES_URL");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(&server);
            format!("{base}/{name}")
        }
        _ => format!("sqlite://{}", data_dir.join("asapd.db").display()),
    }
}

pub fn is_postgres() -> bool {
    std::env::var("ASAPD_TEST_POSTGRES_URL").is_ok_and(|v| !v.is_empty())
}

/// First line of a test marked `#[ignore = "needs PostgreSQL …"]`: run
/// with `--include-ignored` but without a server, it fails instead of
/// passing having checked nothing. `make test-postgres` includes them.
pub fn require_postgres() {
    assert!(
        is_postgres(),
        "this test needs PostgreSQL: set ASAPD_TEST_POSTGRES_URL (make test-postgres starts one)"
    );
}

pub fn test_settings(data_dir: PathBuf, database_url: String, master_key: &str) -> Settings {
    let mut settings = Settings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir,
        database_url: Some(database_url),
        master_key: Some(Redacted(master_key.to_owned())),
        ..Settings::default()
    };
    settings.http.workers = 1;
    settings.database_max_connections = 5;
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_clock(Clock::System, customise).await
}

pub async fn spawn_app_with_clock(clock: Clock, customise: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        asapd::telemetry::init(asapd::config::LogFormat::Text);
    }
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database_url = fresh_database_url(data_dir.path()).await;
    let master_key = MasterKey::generate_base64();
    let mut settings = test_settings(
        data_dir.path().to_owned(),
        database_url.clone(),
        &master_key,
    );
    customise(&mut settings);
    let app = Application::build_with_clock(settings, clock)
        .await
        .expect("build app");
    let port = app.port();
    let state = app.state();
    let creds = bootstrap::create_first_admin(&state)
        .await
        .expect("bootstrap")
        .expect("no admin yet");
    let server = tokio::spawn(async move {
        let _ = app.run_in_background().await;
    });
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: http(),
        admin_secret: creds.client_secret,
        state,
        database_url,
        master_key,
        _data_dir: data_dir,
        server,
    }
}

/// Another replica of `app`: its own process state and port, the same
/// database, master key and clock. The bootstrap admin exists already.
pub async fn spawn_replica(app: &TestApp, customise: impl FnOnce(&mut Settings)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(
        data_dir.path().to_owned(),
        app.database_url.clone(),
        &app.master_key,
    );
    customise(&mut settings);
    let replica = Application::build_with_clock(settings, app.state.clock.clone())
        .await
        .expect("build replica");
    let port = replica.port();
    let state = replica.state();
    let server = tokio::spawn(async move {
        let _ = replica.run_in_background().await;
    });
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: http(),
        admin_secret: app.admin_secret.clone(),
        state,
        database_url: app.database_url.clone(),
        master_key: app.master_key.clone(),
        _data_dir: data_dir,
        server,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request authenticated as the bootstrap admin.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path)
            .basic_auth("admin", Some(&self.admin_secret))
    }

    pub async fn admin_json(&self, method: Method, path: &str, body: Value) -> Response {
        self.admin(method, path).json(&body).send().await.unwrap()
    }

    /// Audit events matching `query` (e.g. `action=group.created`), newest first.
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let res = self
            .admin_get(&format!("/v1/admin/audit?limit=1000&{query}"))
            .await;
        assert_eq!(res.status(), StatusCode::OK, "audit query {query}");
        let page: Value = res.json().await.unwrap();
        page["events"].as_array().unwrap().clone()
    }

    pub async fn admin_get(&self, path: &str) -> Response {
        self.admin(Method::GET, path).send().await.unwrap()
    }

    /// `GET path` as admin, asserting success; the JSON body.
    pub async fn admin_get_json(&self, path: &str) -> Value {
        let res = self.admin_get(path).await;
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.json().await.unwrap()
    }

    /// The published JWKS's keys.
    pub async fn jwks(&self) -> Vec<Value> {
        let res = self
            .request(Method::GET, "/.well-known/jwks.json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        body["keys"].as_array().unwrap().clone()
    }

    /// Sets the audit retention bounds (`None` disables one), asserting 200.
    pub async fn set_retention(&self, max_age_days: Option<i64>, max_entries: Option<i64>) {
        let res = self
            .admin_json(
                Method::PUT,
                "/v1/admin/settings/audit-retention",
                json!({"max_age_days": max_age_days, "max_entries": max_entries}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "set retention");
    }

    pub async fn create_group(&self, name: &str, audiences: &[&str]) -> Value {
        let res = self
            .admin_json(
                Method::POST,
                "/v1/admin/groups",
                json!({"name": name, "audiences": audiences, "max_lifetime": 600}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "create group {name}");
        res.json().await.unwrap()
    }

    /// Creates a caller; returns the creation response (secret included).
    pub async fn create_caller(&self, body: Value) -> Value {
        let res = self
            .admin_json(Method::POST, "/v1/admin/callers", body)
            .await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "create caller: {body}");
        body
    }
}

/// Asserts a problem+json answer with `status`; returns the document.
pub async fn assert_problem(res: Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status, "status");
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(content_type, "application/problem+json");
    let request_id = res
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .expect("x-request-id header");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["request_id"], request_id.as_str());
    assert!(body["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:asapd:problem:"));
    assert!(!body["title"].as_str().unwrap().is_empty());
    assert!(!body["detail"].as_str().unwrap().is_empty());
    body
}

/// A plain reqwest client. asapd's reqwest has rustls without a crypto
/// provider of its own: install the server's (aws-lc-rs) first.
pub fn http() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::new()
}

/// Makes aws-lc-rs the test process's rustls provider, once (an `Err`
/// means one is installed already).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
