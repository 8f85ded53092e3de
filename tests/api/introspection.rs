//! `POST /oauth2/introspect` (RFC 7662), `POST /oauth2/revoke` (RFC 7009)
//! and `POST /v1/admin/tokens/revoke`: every reason a token is inactive,
//! who may revoke what, the revoked-jti set across replicas and its pruning.

use std::time::{Duration, Instant};

use asapd::clock::Clock;
use asapd::crypto::KeyPair;
use asapd::domain::algorithm::Algorithm;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, require_postgres, spawn_app_with_clock, spawn_replica, TestApp,
};
use crate::replicas::eventually;
use crate::token_support::{detail, now, Caller};

const INACTIVE: &str = r#"{"active":false}"#;
/// The audited reason for a kid asapd does not publish.
const UNPUBLISHED: &str = "its kid is not a key published by this asapd";

impl TestApp {
    /// `POST path` with a form body, as `caller` (HTTP Basic).
    async fn oauth2_form(&self, path: &str, caller: &Caller, body: &str) -> Response {
        self.request(Method::POST, path)
            .basic_auth(&caller.name, Some(&caller.secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// Introspects `token` as `caller`, asserting 200 and `no-store`.
    async fn introspect(&self, caller: &Caller, token: &str) -> Value {
        let res = self
            .oauth2_form("/oauth2/introspect", caller, &format!("token={token}"))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["cache-control"], "no-store");
        res.json().await.unwrap()
    }

    /// Asserts that `caller` sees `token` as inactive, with nothing else said.
    async fn assert_inactive(&self, caller: &Caller, token: &str, why: &str) {
        let res = self
            .oauth2_form("/oauth2/introspect", caller, &format!("token={token}"))
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{why}");
        assert_eq!(res.text().await.unwrap(), INACTIVE, "{why}");
    }

    /// As [`Self::assert_inactive`], and the audit record of that answer
    /// (found by its request id) gives `reason`: no case passes for
    /// another reason than its own.
    async fn assert_inactive_because(&self, caller: &Caller, token: &str, reason: &str) {
        let res = self
            .oauth2_form("/oauth2/introspect", caller, &format!("token={token}"))
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{reason}");
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(res.text().await.unwrap(), INACTIVE, "{reason}");
        // The record is handed to the writer, not awaited by the answer.
        let deadline = Instant::now() + Duration::from_secs(10);
        let record = loop {
            let events = self.audit("action=token.introspected").await;
            // Repeats of one answer within a commit share a row that lists
            // every request id (README, "Introspection and revocation").
            let names = |e: &Value| {
                e["request_id"] == id
                    || e["detail"]["request_ids"]
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|r| *r == id))
            };
            if let Some(e) = events.into_iter().find(names) {
                break e;
            }
            assert!(Instant::now() < deadline, "{reason}: not audited in 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(record["outcome"], "success", "{record}");
        assert_eq!(record["detail"]["active"], false, "{record}");
        assert_eq!(record["detail"]["reason"], reason, "{record}");
    }

    async fn revoke(&self, caller: &Caller, token: &str) -> Response {
        self.oauth2_form("/oauth2/revoke", caller, &format!("token={token}"))
            .await
    }

    /// A token and its `/v1/tokens` response, asserting success.
    async fn issued(&self, caller: &Caller, body: Value) -> Value {
        let res = self.token_request(caller, body).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    /// Imports a fresh ES256 key for `caller` and activates it: the test
    /// holds its private half, so it can sign what asapd never would.
    async fn forger(&self, caller: &str) -> (String, EncodingKey) {
        let key = KeyPair::generate(Algorithm::ES256).unwrap();
        let res = self
            .admin_json(
                Method::POST,
                &format!("/v1/admin/callers/{caller}/keys/import"),
                json!({"private_key": STANDARD.encode(key.pkcs8_der()), "activate": true}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let kid = res.json::<Value>().await.unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned();
        (kid, EncodingKey::from_ec_der(key.pkcs8_der()))
    }

    async fn revoked_rows(&self) -> i64 {
        let mut conn = self.state.store.acquire().await.unwrap();
        asapd::store::revoked_tokens::count(&mut conn)
            .await
            .unwrap()
    }
}

fn signed(kid: &str, key: &EncodingKey, claims: Value) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    encode(&header, &claims, key).unwrap()
}

/// A 60-second token from svc-a for svc-b.
async fn minute_token(app: &TestApp, a: &Caller) -> String {
    let issued = app
        .issued(a, json!({"audience": "svc-b", "lifetime": 60}))
        .await;
    issued["token"].as_str().unwrap().to_owned()
}

/// svc-a gets tokens for svc-b and svc-c; both exist as callers.
async fn setup(clock: Clock) -> (TestApp, Caller, Caller, Caller) {
    let app = spawn_app_with_clock(clock, |_| {}).await;
    let a = app.caller_granted("svc-a", &["svc-b", "svc-c"]).await;
    let b = app.caller("svc-b", json!({})).await;
    let c = app.caller("svc-c", json!({})).await;
    (app, a, b, c)
}

#[tokio::test]
async fn an_audience_introspects_an_active_token() {
    let (app, a, b, c) = setup(Clock::System).await;
    let issued = app
        .issued(&a, json!({"audience": ["svc-b", "svc-c"], "lifetime": 120}))
        .await;
    let token = issued["token"].as_str().unwrap();
    let body = app.introspect(&b, token).await;
    let iat = body["iat"].as_i64().unwrap();
    assert_eq!(
        body,
        json!({
            "active": true, "iss": "svc-a", "sub": "svc-a", "aud": ["svc-b", "svc-c"],
            "exp": iat + 120, "iat": iat, "jti": issued["jti"], "client_id": "svc-a",
            "token_type": "Bearer", "kid": a.kid,
        })
    );
    // Form credentials work as on /oauth2/token; the other audience sees it too.
    let res = app
        .request(Method::POST, "/oauth2/introspect")
        .form(&[
            ("token", token),
            ("token_type_hint", "access_token"),
            ("client_id", &c.name),
            ("client_secret", &c.secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["active"], true);

    let nbf = now() - 10;
    let issued = app
        .issued(&a, json!({"audience": "svc-b", "not_before": nbf}))
        .await;
    let body = app.introspect(&b, issued["token"].as_str().unwrap()).await;
    assert_eq!(body["nbf"], nbf);
    assert_eq!(body["aud"], "svc-b");

    // A token bound to a request: introspection returns its qsh.
    let bound = app
        .issued(
            &a,
            json!({"audience": "svc-b", "request": {"method": "get", "url": "/reports?b=2&a=1"}}),
        )
        .await;
    let body = app.introspect(&b, bound["token"].as_str().unwrap()).await;
    let qsh = bound["qsh"].as_str().expect("the answer repeats the qsh");
    assert_eq!(qsh.len(), 64);
    assert_eq!(body["qsh"], qsh);

    // Audited without awaiting: the jti and the result, never the token.
    let jti = issued["jti"].as_str().unwrap().to_owned();
    eventually("token.introspected is recorded", || async {
        app.audit_rows("token.introspected")
            .await
            .iter()
            .any(|r| r.target.as_deref() == Some(&format!("jti:{jti}")))
    })
    .await;
    for row in app.audit_rows("token.introspected").await {
        assert!(
            ["svc-b", "svc-c"].contains(&row.actor.as_str()),
            "{}",
            row.actor
        );
        assert!(
            !row.detail.contains("eyJ"),
            "a token in the audit log: {}",
            row.detail
        );
        assert_eq!(detail(&row)["active"], true);
    }
}

#[tokio::test]
async fn every_reason_for_inactive_answers_active_false_and_nothing_more() {
    let clock = Clock::manual(now());
    let (app, a, b, c) = setup(clock.clone()).await;
    let good = minute_token(&app, &a).await;
    assert_eq!(app.introspect(&b, &good).await["active"], true);

    // A caller that is not among the token's audiences.
    let reason = "the introspecting caller is not among its audiences";
    app.assert_inactive_because(&c, &good, reason).await;
    // Not a token at all; not issued here (a kid asapd does not know).
    app.assert_inactive_because(&b, "not-a-jwt", "not a signed JWT")
        .await;
    let (header, rest) = good.split_once('.').unwrap();
    let mut h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    h["kid"] = json!("svc-a/not-here");
    let unknown = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(h.to_string()));
    app.assert_inactive_because(&b, &unknown, UNPUBLISHED).await;
    // A bad signature: the claims changed under it.
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 3000);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    app.assert_inactive_because(&b, &tampered, "bad signature")
        .await;

    // Signed with a key asapd publishes, but breaking the ASAP rules.
    let (kid, key) = app.forger("svc-a").await;
    let t = clock.now();
    let base = json!({"iss": "svc-a", "sub": "svc-a", "aud": "svc-b", "jti": "forged-1", "iat": t, "exp": t + 60});
    let with = |changes: Value| {
        let mut c = base.clone();
        c.as_object_mut()
            .unwrap()
            .extend(changes.as_object().unwrap().clone());
        c
    };
    assert_eq!(
        app.introspect(&b, &signed(&kid, &key, base.clone())).await["active"],
        true
    );
    for (reason, claims) in [
        (
            "its issuer does not own its kid",
            with(json!({"iss": "svc-c"})),
        ),
        (
            "it lives longer than an hour",
            with(json!({"exp": t + 3601})),
        ),
        (
            "issued in the future",
            with(json!({"iat": t + 60, "exp": t + 120})),
        ),
        ("iss, aud, iat, exp or jti is missing or malformed", {
            let mut c = base.clone();
            c.as_object_mut().unwrap().remove("jti");
            c
        }),
    ] {
        app.assert_inactive_because(&b, &signed(&kid, &key, claims), reason)
            .await;
    }

    // Not yet valid, then valid.
    let later = app
        .issued(
            &a,
            json!({"audience": "svc-b", "not_before": t + 30, "lifetime": 600}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.assert_inactive_because(&b, &later, "not valid yet (nbf)")
        .await;
    clock.advance(30);
    assert_eq!(app.introspect(&b, &later).await["active"], true);

    // Expired (past the leeway too).
    clock.advance(60 - 30 + 6);
    app.assert_inactive_because(&b, &good, "expired").await;

    // A retired key still vouches for its tokens; a revoked one does not.
    let fresh = minute_token(&app, &a).await;
    let rotated = app
        .admin(Method::POST, "/v1/admin/callers/svc-a/keys/rotate")
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    assert_eq!(
        app.introspect(&b, &fresh).await["active"],
        true,
        "retired key"
    );
    let signer = jsonwebtoken::decode_header(&fresh).unwrap().kid.unwrap();
    let res = app
        .admin(Method::POST, &format!("/v1/admin/keys/{signer}/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // A revoked key is no longer published at all.
    app.assert_inactive_because(&b, &fresh, UNPUBLISHED).await;

    // A revoked jti.
    let other = minute_token(&app, &a).await;
    assert_eq!(app.revoke(&a, &other).await.status(), StatusCode::OK);
    app.assert_inactive_because(&b, &other, "its jti is revoked")
        .await;
}

#[tokio::test]
async fn introspection_authenticates_its_caller_and_is_rate_limited() {
    let clock = Clock::manual(now());
    let (app, a, b, _) = setup(clock.clone()).await;
    let token = app.token(&a, "svc-b").await;
    let res = app
        .request(Method::POST, "/oauth2/introspect")
        .form(&[("token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    let wrong = Caller {
        name: b.name.clone(),
        secret: "wrong".into(),
        kid: String::new(),
    };
    let res = app
        .oauth2_form("/oauth2/introspect", &wrong, &format!("token={token}"))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .oauth2_form("/oauth2/introspect", &b, "token_type_hint=x")
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("token"));

    // The caller's one allowance, as for issuing tokens.
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/svc-b",
            json!({"rate_limit": {"per_second": 1, "burst": 2}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    for _ in 0..2 {
        assert_eq!(app.introspect(&b, &token).await["active"], true);
    }
    let res = app
        .oauth2_form("/oauth2/introspect", &b, &format!("token={token}"))
        .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "temporarily_unavailable"
    );
    clock.advance(1);
    assert_eq!(app.introspect(&b, &token).await["active"], true);
}

#[tokio::test]
async fn the_token_s_own_caller_revokes_it_and_nobody_else_but_an_admin() {
    let (app, a, b, c) = setup(Clock::System).await;
    let issued = app.issued(&a, json!({"audience": "svc-b"})).await;
    let token = issued["token"].as_str().unwrap();
    let jti = issued["jti"].as_str().unwrap();

    // svc-b (its audience) and svc-c (a stranger) may not revoke it.
    for caller in [&b, &c] {
        let res = app.revoke(caller, token).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            res.json::<Value>().await.unwrap()["error"],
            "unauthorized_client"
        );
        assert_eq!(app.introspect(&b, token).await["active"], true);
    }
    let refused = app.audit_rows("token.revoked").await;
    assert_eq!(refused.len(), 2);
    assert!(refused
        .iter()
        .all(|r| r.outcome == "denied" && r.target.as_deref() == Some(&format!("jti:{jti}"))));

    let res = app.revoke(&a, token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    app.assert_inactive(&b, token, "revoked by its caller")
        .await;
    let rows = app.audit_rows("token.revoked").await;
    assert_eq!(
        (rows[0].outcome.as_str(), rows[0].actor.as_str()),
        ("success", "svc-a")
    );
    assert_eq!(app.revoked_rows().await, 1);
    // RFC 7009 §2.2: 200 for what is not (or no longer) active.
    assert_eq!(app.revoke(&a, token).await.status(), StatusCode::OK);
    assert_eq!(app.revoke(&c, "not-a-jwt").await.status(), StatusCode::OK);

    // An admin may revoke any caller's token here too.
    let admin = Caller {
        name: "admin".into(),
        secret: app.admin_secret.clone(),
        kid: String::new(),
    };
    let second = app.token(&a, "svc-b").await;
    assert_eq!(app.revoke(&admin, &second).await.status(), StatusCode::OK);
    app.assert_inactive(&b, &second, "revoked by an admin")
        .await;
}

/// The expiry comes from the record's `jti` columns, not from its JSON
/// `detail`: with the detail emptied it is still found, and a record
/// without the columns (written by a replica older than them) is not
/// read, so that jti is kept for the longest lifetime.
#[tokio::test]
async fn an_admin_revocation_finds_the_expiry_in_the_jti_column() {
    let (app, a, _, _) = setup(Clock::System).await;
    let issued = app
        .issued(&a, json!({"audience": "svc-b", "lifetime": 300}))
        .await;
    let jti = issued["jti"].as_str().unwrap();
    {
        let mut conn = app.state.store.acquire().await.unwrap();
        sqlx::query("UPDATE audit_events SET detail = '{}' WHERE action = 'token.issued'")
            .execute(&mut *conn)
            .await
            .unwrap();
        let old = json!({"jti": "from-an-old-replica", "expires_at": issued["expires_at"]});
        sqlx::query(
            "INSERT INTO audit_events (at_ms, action, outcome, actor, detail) \
             VALUES ($1, 'token.issued', 'success', 'svc-a', $2)",
        )
        .bind(app.state.clock.now_ms())
        .bind(old.to_string())
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let revoke =
        |jti: &str| app.admin_json(Method::POST, "/v1/admin/tokens/revoke", json!({"jti": jti}));
    let body: Value = revoke(jti).await.json().await.unwrap();
    assert_eq!(body["expiry_from"], "audit", "{body}");
    assert_eq!(body["expires_at"], issued["expires_at"]);
    let body: Value = revoke("from-an-old-replica").await.json().await.unwrap();
    assert_eq!(body["expiry_from"], "max_lifetime", "{body}");
}

#[tokio::test]
async fn an_admin_revokes_any_jti_kept_until_the_token_expires() {
    let (app, a, b, _) = setup(Clock::System).await;
    let issued = app
        .issued(&a, json!({"audience": "svc-b", "lifetime": 300}))
        .await;
    let revoke = |body: Value| app.admin_json(Method::POST, "/v1/admin/tokens/revoke", body);
    let res = revoke(json!({"jti": issued["jti"]})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    // The expiry comes from the token.issued record.
    assert_eq!(body["expiry_from"], "audit");
    assert_eq!(body["expires_at"], issued["expires_at"]);
    app.assert_inactive(&b, issued["token"].as_str().unwrap(), "revoked by jti")
        .await;
    let row = &app.audit_rows("token.revoked").await[0];
    assert_eq!(
        (row.actor.as_str(), row.target.as_deref()),
        (
            "admin",
            Some(format!("jti:{}", issued["jti"].as_str().unwrap()).as_str())
        )
    );

    let body: Value = revoke(json!({"jti": "never-issued"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["expiry_from"], "max_lifetime");
    let body: Value = revoke(json!({"jti": "given", "expires_at": "2099-01-01T00:00:00Z"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["expiry_from"], "request");
    assert_ne!(
        body["expires_at"], "2099-01-01T00:00:00Z",
        "kept at most as long as a token lives"
    );

    let problem = assert_problem(
        revoke(json!({"jti": "has space"})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(problem["field"], "jti");
    let problem = assert_problem(
        revoke(json!({"jti": "j", "expires_at": "tomorrow"})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(problem["field"], "expires_at");
    // Only admins.
    let res = app
        .request(Method::POST, "/v1/admin/tokens/revoke")
        .basic_auth(&a.name, Some(&a.secret))
        .json(&json!({"jti": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn a_revoked_bearer_token_no_longer_opens_the_admin_api() {
    let (app, ..) = setup(Clock::System).await;
    let admin = Caller {
        name: "admin".into(),
        secret: app.admin_secret.clone(),
        kid: String::new(),
    };
    let issued = app.issued(&admin, json!({"audience": "asapd"})).await;
    let token = issued["token"].as_str().unwrap();
    let get = || {
        app.request(Method::GET, "/v1/admin/callers")
            .bearer_auth(token)
            .send()
    };
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    assert_eq!(app.revoke(&admin, token).await.status(), StatusCode::OK);
    let problem = assert_problem(get().await.unwrap(), StatusCode::UNAUTHORIZED).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("revoked"),
        "{problem}"
    );
}

#[tokio::test]
async fn revoked_jtis_are_pruned_once_their_tokens_expire() {
    let clock = Clock::manual(now());
    let (app, a, b, _) = setup(clock.clone()).await;
    let token = app
        .issued(&a, json!({"audience": "svc-b", "lifetime": 60}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.revoke(&a, &token).await.status(), StatusCode::OK);
    let prune = || asapd::jobs::revoked_tokens::run_once(&app.state);
    clock.advance(60);
    // Within the leeway the token would still pass: its jti stays.
    assert_eq!(prune().await.unwrap(), Some(0));
    assert_eq!((app.revoked_rows().await, app.state.revoked.len()), (1, 1));
    app.assert_inactive(&b, &token, "revoked, within the leeway")
        .await;
    clock.advance(6);
    assert_eq!(prune().await.unwrap(), Some(1));
    assert_eq!((app.revoked_rows().await, app.state.revoked.len()), (0, 0));
    app.assert_inactive(&b, &token, "expired").await;
}

/// PostgreSQL: a revocation committed through one replica makes the token
/// inactive on the other through its change notification (the periodic
/// pass is an hour away).
#[tokio::test]
#[ignore = "needs PostgreSQL (ASAPD_TEST_POSTGRES_URL): replicas share one"]
async fn a_revocation_on_one_replica_is_seen_by_the_other() {
    require_postgres();
    let one_hour = |s: &mut asapd::config::Settings| s.keys.refresh_interval_secs = 3600;
    let app = spawn_app_with_clock(Clock::System, one_hour).await;
    let replica = spawn_replica(&app, one_hour).await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    let b = app.caller("svc-b", json!({})).await;
    let first = app.issued(&a, json!({"audience": "svc-b"})).await;
    let second = app.issued(&a, json!({"audience": "svc-b"})).await;
    eventually("the replica sees the token active", || async {
        replica
            .introspect(&b, first["token"].as_str().unwrap())
            .await["active"]
            == true
    })
    .await;
    assert_eq!(
        app.revoke(&a, first["token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
    eventually("the replica sees the jti revoked by its caller", || async {
        replica
            .introspect(&b, first["token"].as_str().unwrap())
            .await
            == json!({"active": false})
    })
    .await;
    let res = replica
        .admin_json(
            Method::POST,
            "/v1/admin/tokens/revoke",
            json!({"jti": second["jti"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    eventually(
        "the first replica sees the jti an admin revoked on the other",
        || async {
            app.introspect(&b, second["token"].as_str().unwrap()).await == json!({"active": false})
        },
    )
    .await;
}

/// An admin's `expires_at` earlier than the token's own `exp` does not let
/// the token come back once it passes: the jti is kept until the later.
#[tokio::test]
async fn an_early_expires_at_does_not_let_a_revoked_token_come_back() {
    let clock = Clock::manual(now());
    let (app, a, b, _) = setup(clock.clone()).await;
    let issued = app
        .issued(&a, json!({"audience": "svc-b", "lifetime": 300}))
        .await;
    let token = issued["token"].as_str().unwrap();
    let early = asapd::clock::rfc3339(clock.now() + 10);
    let res = app
        .admin_json(
            Method::POST,
            "/v1/admin/tokens/revoke",
            json!({"jti": issued["jti"], "expires_at": early}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["expires_at"], issued["expires_at"], "{body}");
    assert_eq!(body["expiry_from"], "audit");

    let prune = || asapd::jobs::revoked_tokens::run_once(&app.state);
    // Past the early expiry and the leeway, the token itself still lives.
    clock.advance(10 + 6 + 1);
    assert_eq!(prune().await.unwrap(), Some(0));
    app.assert_inactive(&b, token, "revoked, before its exp")
        .await;
    clock.advance(300 - 17 + 6);
    assert_eq!(prune().await.unwrap(), Some(1));
}

/// PostgreSQL: a replica adds a jti revoked elsewhere from the notification
/// alone, without reading the whole table again: a row written behind its
/// back (no notification) stays unknown to it, until an older replica's
/// notification without the exp makes it reload.
#[tokio::test]
#[ignore = "needs PostgreSQL (ASAPD_TEST_POSTGRES_URL): replicas share one"]
async fn a_revocation_notification_is_applied_without_a_reload() {
    require_postgres();
    let one_hour = |s: &mut asapd::config::Settings| s.keys.refresh_interval_secs = 3600;
    let app = spawn_app_with_clock(Clock::System, one_hour).await;
    let replica = spawn_replica(&app, one_hour).await;
    eventually("the replica listens", || async {
        replica.metric("asapd_change_listener_connected", &[]) == Some(1.0)
    })
    .await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    let b = app.caller("svc-b", json!({})).await;
    let mut issued = Vec::new();
    for _ in 0..2 {
        issued.push(app.issued(&a, json!({"audience": "svc-b"})).await);
    }
    let tokens: Vec<&str> = issued
        .iter()
        .map(|i| i["token"].as_str().unwrap())
        .collect();
    // Notifications are applied after the full reload a replica makes
    // when it starts listening: once it has heard one, that is done.
    eventually("the replica hears the callers created", || async {
        replica
            .metric("asapd_change_notifications_total", &[])
            .unwrap_or(0.0)
            > 0.0
    })
    .await;
    eventually("the replica sees the tokens active", || async {
        replica.introspect(&b, tokens[1]).await["active"] == true
    })
    .await;
    let mut conn = app.state.store.acquire().await.unwrap();
    let jti = issued[1]["jti"].as_str().unwrap();
    asapd::store::revoked_tokens::insert(&mut conn, jti, now() + 60)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(app.revoke(&a, tokens[0]).await.status(), StatusCode::OK);
    eventually("the replica sees the notified revocation", || async {
        replica.introspect(&b, tokens[0]).await == json!({"active": false})
    })
    .await;
    assert_eq!(
        replica.introspect(&b, tokens[1]).await["active"],
        true,
        "the replica read the whole table again"
    );
    // An older replica, mid rolling deploy, says only `token:<jti>`: that
    // makes this one read the table.
    let mut conn = app.state.store.acquire().await.unwrap();
    asapd::store::changes::announce(&mut conn, &format!("token:{jti}"))
        .await
        .unwrap();
    drop(conn);
    eventually("an old-style notification reloads the table", || async {
        replica.introspect(&b, tokens[1]).await == json!({"active": false})
    })
    .await;
}

/// A resource server asks about one token for every request it serves.
/// Repeats of one answer within a commit are one row that counts them and
/// lists every request id (the row's own first): none is lost or counted
/// twice, and the log does not grow by a row per ask.
#[tokio::test]
async fn repeated_introspections_fold_into_one_counted_record() {
    let (app, _, _, _) = setup(Clock::System).await;
    let b = app
        .caller(
            "svc-d",
            json!({"rate_limit": {"per_second": 10000, "burst": 10000}}),
        )
        .await;
    let a_for_d = app.caller_granted("svc-e", &["svc-d"]).await;
    let token = app
        .issued(&a_for_d, json!({"audience": "svc-d", "lifetime": 60}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    const ASKS: usize = 64;
    let body = format!("token={token}");
    let answers = futures_util::future::join_all(
        (0..ASKS).map(|_| app.oauth2_form("/oauth2/introspect", &b, &body)),
    )
    .await;
    let mut asked: Vec<String> = answers
        .iter()
        .map(|res| {
            assert_eq!(res.status(), StatusCode::OK);
            res.headers()["x-request-id"].to_str().unwrap().to_owned()
        })
        .collect();
    let counted = |rows: &[Value]| -> u64 {
        rows.iter()
            .map(|r| r["detail"]["count"].as_u64().unwrap_or(1))
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = app.audit("action=token.introspected&actor=svc-d").await;
        if counted(&rows) >= ASKS as u64 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {ASKS} recorded",
            counted(&rows)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(counted(&rows), ASKS as u64, "{rows:#?}");
    let mut listed = vec![];
    for row in &rows {
        assert_eq!(row["detail"]["active"], true);
        match row["detail"]["request_ids"].as_array() {
            Some(ids) => {
                assert_eq!(ids[0], row["request_id"], "{row}");
                assert_eq!(ids.len() as u64, row["detail"]["count"].as_u64().unwrap());
                assert!(row["detail"]["last_at_ms"].is_i64(), "{row}");
                listed.extend(ids.iter().map(|id| id.as_str().unwrap().to_owned()));
            }
            None => listed.push(row["request_id"].as_str().unwrap().to_owned()),
        }
    }
    listed.sort();
    asked.sort();
    assert_eq!(listed, asked, "every request id once");
    assert!(
        rows.len() < ASKS,
        "{ASKS} asks at once were not folded: {} rows",
        rows.len()
    );
}
