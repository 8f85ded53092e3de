//! `POST /v1/tokens`: one test per rule of docs/ARCHITECTURE.md, "The
//! path of a token request".

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use asapd::clock::Clock;
use asapd::config::Settings;

use crate::helpers::{
    assert_problem, is_postgres, spawn_app, spawn_app_with, spawn_app_with_clock, TestApp,
};
use crate::token_support::{detail, now};

/// An app whose clock stands still at the real time (so tokens stay valid
/// for verifiers) until the test moves it: rate limits then hold exactly,
/// however slow the machine.
async fn frozen_app(customise: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_clock(Clock::manual(now()), customise).await
}

#[tokio::test]
async fn issues_a_token_with_every_claim_and_header_asap_needs() {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["svc-b", "reports-*"]).await;
    let before = now();
    let res = app
        .token_request(&a, json!({"audience": "svc-b", "lifetime": 300}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"].to_str().unwrap(), "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["kid"], a.kid.as_str());
    let token = body["token"].as_str().unwrap();

    let (header, claims) = app.verify(token, "svc-b").await;
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(a.kid.as_str()));
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(claims["iss"], "svc-a");
    assert_eq!(claims["sub"], "svc-a");
    assert_eq!(claims["aud"], "svc-b", "one audience is a string");
    assert_eq!(claims["jti"], body["jti"]);
    let jti = claims["jti"].as_str().unwrap();
    assert!(jti.len() >= 22, "jti carries at least 128 bits: {jti}");
    let iat = claims["iat"].as_i64().unwrap();
    assert!(
        iat >= before && iat <= now(),
        "iat is now, never in the future"
    );
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 300);
    assert!(claims.get("nbf").is_none());
    let expires_at = time::OffsetDateTime::parse(
        body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(expires_at.unix_timestamp(), iat + 300);

    let again = app.token(&a, "svc-b").await;
    let (_, claims2) = app.verify(&again, "svc-b").await;
    assert_ne!(claims2["jti"], claims["jti"], "jti is unique");
    assert_eq!(
        claims2["exp"].as_i64().unwrap() - claims2["iat"].as_i64().unwrap(),
        60,
        "default lifetime"
    );
}

#[tokio::test]
async fn several_audiences_extra_claims_and_nbf_with_an_rsa_key() {
    let app = spawn_app().await;
    app.group(json!({"name": "g", "audiences": ["svc-b", "svc-c"], "max_lifetime": 600}))
        .await;
    let a = app
        .caller("svc-a", json!({"groups": ["g"], "algorithm": "RS256"}))
        .await;
    let nbf = now() - 5;
    let res = app
        .token_request(
            &a,
            json!({
                "audience": ["svc-b", "svc-c", "svc-b"],
                "claims": {"scope": "read", "tenant": {"id": 7}},
                "not_before": nbf,
            }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let (header, claims) = app.verify(body["token"].as_str().unwrap(), "svc-c").await;
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(claims["aud"], json!(["svc-b", "svc-c"]));
    assert_eq!(claims["scope"], "read");
    assert_eq!(claims["tenant"]["id"], 7);
    assert_eq!(claims["nbf"], nbf);

    // nbf must leave the token some validity.
    let res = app
        .token_request(&a, json!({"audience": "svc-b", "not_before": now() + 3600}))
        .await;
    let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["field"], "not_before");
}

#[tokio::test]
async fn an_ungranted_audience_is_403_naming_the_rule() {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    for audience in [json!("svc-c"), json!(["svc-b", "svc-c"])] {
        let res = app.token_request(&a, json!({ "audience": audience })).await;
        let problem = assert_problem(res, StatusCode::FORBIDDEN).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("svc-c"), "{detail}");
        assert!(detail.contains("rule: audience_not_granted"), "{detail}");
    }
    // A caller without groups has no grants at all.
    let lone = app.caller("lone", json!({})).await;
    let res = app.token_request(&lone, json!({"audience": "svc-b"})).await;
    assert_problem(res, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn glob_grants_match_like_shell_stars() {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["reports-*"]).await;
    for ok in ["reports-eu", "reports-", "reports-us-east"] {
        app.token(&a, ok).await;
    }
    for refused in ["reports", "xreports-eu"] {
        let res = app.token_request(&a, json!({ "audience": refused })).await;
        assert_problem(res, StatusCode::FORBIDDEN).await;
    }
}

#[tokio::test]
async fn a_lifetime_above_the_grant_is_refused_not_shortened() {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await; // max 600
    let res = app
        .token_request(&a, json!({"audience": "svc-b", "lifetime": 601}))
        .await;
    let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["field"], "lifetime");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("rule: lifetime_exceeded"));
    // Beyond ASAP's hour it is not even a lifetime.
    let res = app
        .token_request(&a, json!({"audience": "svc-b", "lifetime": 3601}))
        .await;
    let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["field"], "lifetime");
    let res = app
        .token_request(&a, json!({"audience": "svc-b", "lifetime": 600}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // The default lifetime (60 s) is shortened to a stricter grant.
    app.group(json!({"name": "brief", "audiences": ["svc-q"], "max_lifetime": 30}))
        .await;
    let q = app.caller("svc-q", json!({"groups": ["brief"]})).await;
    let res = app.token_request(&q, json!({"audience": "svc-q"})).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["expires_in"], 30);
}

#[tokio::test]
async fn a_disabled_caller_is_403() {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/svc-a",
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.token_request(&a, json!({"audience": "svc-b"})).await;
    let problem = assert_problem(res, StatusCode::FORBIDDEN).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("rule: caller_disabled"));
}

#[tokio::test]
async fn the_callers_ip_allow_list_applies_to_the_socket_peer() {
    let app = spawn_app().await;
    app.group(json!({"name": "g", "audiences": ["svc-b"], "max_lifetime": 600}))
        .await;
    let far = app
        .caller("far", json!({"groups": ["g"], "cidrs": ["10.0.0.0/8"]}))
        .await;
    let res = app.token_request(&far, json!({"audience": "svc-b"})).await;
    let problem = assert_problem(res, StatusCode::FORBIDDEN).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("rule: caller_network") && detail.contains("127.0.0.1"),
        "{detail}"
    );
    let near = app
        .caller("near", json!({"groups": ["g"], "cidrs": ["127.0.0.0/8"]}))
        .await;
    app.token(&near, "svc-b").await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    let app = spawn_app_with(|s| {
        s.http.trusted_proxies = vec!["127.0.0.1".to_owned().try_into().unwrap()];
    })
    .await;
    app.group(json!({"name": "g", "audiences": ["svc-b"], "max_lifetime": 600}))
        .await;
    let a = app
        .caller("svc-a", json!({"groups": ["g"], "cidrs": ["10.0.0.0/8"]}))
        .await;
    let send = |xff: Option<&'static str>| {
        let mut req = app
            .request(Method::POST, "/v1/tokens")
            .basic_auth(&a.name, Some(&a.secret))
            .json(&json!({"audience": "svc-b"}));
        if let Some(v) = xff {
            req = req.header("X-Forwarded-For", v);
        }
        req.send()
    };
    assert_eq!(
        send(Some("10.1.2.3")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_problem(send(None).await.unwrap(), StatusCode::FORBIDDEN).await;
    assert_problem(
        send(Some("192.168.1.1")).await.unwrap(),
        StatusCode::FORBIDDEN,
    )
    .await;
    // The audit record carries the forwarded address.
    let issued = app.audit_rows("token.issued").await;
    assert_eq!(issued[0].source_ip.as_deref(), Some("10.1.2.3"));
}

/// A forwarding header from a peer that is not a trusted proxy is ignored,
/// with no proxies configured and while another one is trusted: trust
/// belongs to the peer, not to the header.
#[tokio::test]
async fn a_forged_forwarded_header_from_an_untrusted_peer_is_ignored() {
    for proxies in [vec![], vec!["192.0.2.1"]] {
        let app = spawn_app_with(|s| {
            s.http.trusted_proxies = proxies
                .iter()
                .map(|p| p.to_string().try_into().unwrap())
                .collect();
        })
        .await;
        app.group(json!({"name": "g", "audiences": ["svc-b"], "max_lifetime": 600}))
            .await;
        let a = app
            .caller("svc-a", json!({"groups": ["g"], "cidrs": ["10.0.0.0/8"]}))
            .await;
        let res = app
            .request(Method::POST, "/v1/tokens")
            .basic_auth(&a.name, Some(&a.secret))
            .header("X-Forwarded-For", "10.1.2.3")
            .json(&json!({"audience": "svc-b"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            refused_rule(res).await,
            (StatusCode::FORBIDDEN, "caller_network".into()),
            "trusted proxies {proxies:?}"
        );
        let denied = app.audit_rows("token.denied").await;
        assert_eq!(denied[0].source_ip.as_deref(), Some("127.0.0.1"));
    }
}

#[tokio::test]
async fn a_grants_cidrs_must_contain_the_client() {
    let app = spawn_app_with(|s| {
        s.http.trusted_proxies = vec!["127.0.0.1".to_owned().try_into().unwrap()];
    })
    .await;
    app.group(
        json!({"name": "office", "audiences": ["svc-b"], "max_lifetime": 600,
                     "cidrs": ["10.0.0.0/8"]}),
    )
    .await;
    let a = app.caller("svc-a", json!({"groups": ["office"]})).await;
    let res = app.token_request(&a, json!({"audience": "svc-b"})).await;
    let problem = assert_problem(res, StatusCode::FORBIDDEN).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("rule: grant_network"));
    let res = app
        .request(Method::POST, "/v1/tokens")
        .basic_auth(&a.name, Some(&a.secret))
        .header("X-Forwarded-For", "10.9.9.9")
        .json(&json!({"audience": "svc-b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_subject_override_needs_a_grant_that_allows_it() {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    let res = app
        .token_request(&a, json!({"audience": "svc-b", "subject": "user-42"}))
        .await;
    let problem = assert_problem(res, StatusCode::FORBIDDEN).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("rule: subject_not_allowed"));
    // Its own name is no override.
    let res = app
        .token_request(&a, json!({"audience": "svc-b", "subject": "svc-a"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    app.group(
        json!({"name": "delegates", "audiences": ["svc-b"], "max_lifetime": 600,
                     "allow_subject": true}),
    )
    .await;
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/svc-a",
            json!({"groups": ["g-svc-a", "delegates"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .token_request(&a, json!({"audience": "svc-b", "subject": "user-42"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let (_, claims) = app.verify(body["token"].as_str().unwrap(), "svc-b").await;
    assert_eq!(claims["sub"], "user-42");
    assert_eq!(claims["iss"], "svc-a");
}

#[tokio::test]
async fn extra_claims_may_not_set_registered_claims() {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    for name in ["iss", "sub", "aud", "jti", "iat", "nbf", "exp"] {
        let res = app
            .token_request(&a, json!({"audience": "svc-b", "claims": { name: "x" }}))
            .await;
        let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["field"], format!("claims.{name}"));
        assert!(problem["detail"]
            .as_str()
            .unwrap()
            .contains("rule: reserved_claim"));
    }
    let res = app
        .token_request(
            &a,
            json!({"audience": "svc-b", "claims": ["not", "an", "object"]}),
        )
        .await;
    let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["field"], "claims");
}

#[tokio::test]
async fn oversized_claims_are_refused() {
    let app = spawn_app_with(|s| s.tokens.max_claims_bytes = 100).await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    let res = app
        .token_request(
            &a,
            json!({"audience": "svc-b", "claims": {"blob": "x".repeat(80)}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .token_request(
            &a,
            json!({"audience": "svc-b", "claims": {"blob": "x".repeat(100)}}),
        )
        .await;
    let problem = assert_problem(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["field"], "claims");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("rule: claims_too_large"));
}

/// Asks until the first 429 (at most 20 times); returns the successes
/// before it and the 429.
async fn until_limited<F, Fut>(ask: F) -> (usize, reqwest::Response)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    for ok in 0..20 {
        let res = ask().await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            return (ok, res);
        }
        assert_eq!(res.status(), StatusCode::OK);
    }
    panic!("no 429 in 20 requests");
}

#[tokio::test]
async fn the_rate_limit_answers_429_then_lets_the_caller_in_again() {
    let app = frozen_app(|_| {}).await;
    app.group(json!({"name": "g", "audiences": ["svc-b"], "max_lifetime": 600}))
        .await;
    let a = app
        .caller(
            "svc-a",
            json!({"groups": ["g"], "rate_limit": {"per_second": 1, "burst": 2}}),
        )
        .await;
    let ask = || app.token_request(&a, json!({"audience": "svc-b"}));
    let (ok, res) = until_limited(ask).await;
    assert_eq!(ok, 2, "the burst of 2 passes, no more");
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 1, "one request per second: wait at most a second");
    let problem = assert_problem(res, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("rule: rate_limited"));
    // Short of a second, still nothing; at the second, one more request.
    app.state.clock.advance_ms(999);
    assert_eq!(ask().await.status(), StatusCode::TOO_MANY_REQUESTS);
    app.state.clock.advance_ms(1);
    assert_eq!(ask().await.status(), StatusCode::OK);
    assert_eq!(ask().await.status(), StatusCode::TOO_MANY_REQUESTS);

    // A new override applies at once, without a restart: its burst of
    // four is what the old quota (two) could never allow.
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/svc-a",
            json!({"rate_limit": {"per_second": 1, "burst": 4}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (ok, _) = until_limited(ask).await;
    let refused = if is_postgres() {
        // The fleet's bucket keeps its level across a change of quota:
        // empty now, it refills up to the new burst.
        assert_eq!(ok, 0, "a changed quota does not refill the bucket");
        app.state.clock.advance(4);
        let (ok, _) = until_limited(ask).await;
        assert_eq!(ok, 4, "the new burst of 4 fills up");
        5.0
    } else {
        assert_eq!(ok, 4, "the new burst of 4 passes");
        4.0
    };
    assert_eq!(
        app.metric("asapd_rate_limited_total", &["limit=\"caller\""]),
        Some(refused)
    );
}

#[tokio::test]
async fn the_default_rate_limit_comes_from_the_config() {
    let app = frozen_app(|s| {
        s.tokens.rate_limit_per_second = 1;
        s.tokens.rate_limit_burst = 1;
    })
    .await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    let (ok, res) = until_limited(|| app.token_request(&a, json!({"audience": "svc-b"}))).await;
    assert_eq!(ok, 1);
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn failed_authentication_is_limited_per_source_ip() {
    let app = frozen_app(|s| {
        s.http.trusted_proxies = vec!["127.0.0.1".to_owned().try_into().unwrap()];
        s.tokens.failed_auth_burst = 2;
        s.tokens.failed_auth_per_minute = 1;
    })
    .await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    let attempt = |secret: String, ip: &'static str| {
        app.request(Method::POST, "/v1/tokens")
            .basic_auth("svc-a", Some(secret))
            .header("X-Forwarded-For", ip)
            .json(&json!({"audience": "svc-b"}))
            .send()
    };
    for _ in 0..3 {
        let res = attempt("asapd_wrong".into(), "10.0.0.1").await.unwrap();
        assert!(res.headers().contains_key("www-authenticate"));
        assert_problem(res, StatusCode::UNAUTHORIZED).await;
    }
    // The third failure used up the allowance: even the right secret waits.
    let res = attempt(a.secret.clone(), "10.0.0.1").await.unwrap();
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 60, "one failure a minute");
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS).await;
    // Other addresses are not affected.
    let res = attempt(a.secret.clone(), "10.0.0.2").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The block lasts its minute, on asapd's clock.
    app.state.clock.advance(59);
    let res = attempt(a.secret.clone(), "10.0.0.1").await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    app.state.clock.advance(1);
    let res = attempt(a.secret.clone(), "10.0.0.1").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the minute is over");

    let failed = app.audit_rows("auth.failed").await;
    assert_eq!(failed.len(), 3);
    assert_eq!(failed[0].target.as_deref(), Some("caller:svc-a"));
    assert_eq!(failed[0].source_ip.as_deref(), Some("10.0.0.1"));
    assert!(
        !failed[0].detail.contains("asapd_wrong"),
        "no secret in audit"
    );
    assert_eq!(app.metric("asapd_auth_failures_total", &[]), Some(3.0));
}

#[tokio::test]
async fn credentials_come_first_then_the_body() {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    // No credentials: 401, whatever the body.
    let res = app
        .request(Method::POST, "/v1/tokens")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_problem(res, StatusCode::UNAUTHORIZED).await;
    // Authenticated: the body's faults are named.
    let send = |body: &'static str, content_type: &'static str| {
        app.request(Method::POST, "/v1/tokens")
            .basic_auth(&a.name, Some(&a.secret))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_problem(
        send("{}", "text/plain").await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    assert_problem(
        send("{", "application/json").await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    for (body, field) in [
        (r#"{}"#, ""),
        (r#"{"audience": 5}"#, "audience"),
        (r#"{"audience": []}"#, "audience"),
        (r#"{"audience": "has space"}"#, "audience[0]"),
        (r#"{"audience": "svc-b", "lifetime": 0}"#, "lifetime"),
        (r#"{"audience": "svc-b", "subject": ""}"#, "subject"),
        (r#"{"audience": "svc-b", "color": "red"}"#, ""),
    ] {
        let problem = assert_problem(
            send(body, "application/json").await.unwrap(),
            StatusCode::BAD_REQUEST,
        )
        .await;
        if !field.is_empty() {
            assert_eq!(problem["field"], field, "{body}: {problem}");
        }
    }
}

#[tokio::test]
async fn issues_and_denials_are_audited_without_the_token() {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    let res = app
        .token_request(
            &a,
            json!({"audience": "svc-b", "lifetime": 120, "claims": {"scope": "r"}}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    let issued = app.audit_rows("token.issued").await;
    assert_eq!(issued.len(), 1);
    let row = &issued[0];
    assert_eq!(row.actor, "svc-a");
    assert_eq!(row.outcome, "success");
    assert_eq!(row.source_ip.as_deref(), Some("127.0.0.1"));
    assert!(row.request_id.is_some());
    assert_eq!(row.target.as_deref(), Some("caller:svc-a"));
    let d = detail(row);
    assert_eq!(d["jti"], body["jti"]);
    assert_eq!(d["kid"], a.kid.as_str());
    assert_eq!(d["audiences"], json!(["svc-b"]));
    assert_eq!(d["lifetime"], 120);
    assert_eq!(d["expires_at"], body["expires_at"]);
    assert_eq!(d["claims"], json!(["scope"]), "claim names only");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!row.detail.contains(signature), "never the token");

    let res = app.token_request(&a, json!({"audience": "svc-z"})).await;
    assert_problem(res, StatusCode::FORBIDDEN).await;
    let denied = app.audit_rows("token.denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].outcome, "denied");
    assert_eq!(denied[0].target.as_deref(), Some("caller:svc-a"));
    assert_eq!(detail(&denied[0])["rule"], "audience_not_granted");
    assert_eq!(
        app.metric(
            "asapd_token_denials_total",
            &["reason=\"audience_not_granted\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        app.metric(
            "asapd_tokens_issued_total",
            &["algorithm=\"ES256\"", "caller=\"svc-a\""]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_revoked_key_is_replaced_for_signing() {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    let res = app
        .admin(Method::POST, &format!("/v1/admin/keys/{}/revoke", a.kid))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let token = app.token(&a, "svc-b").await;
    let (header, _) = app.verify(&token, "svc-b").await;
    assert_ne!(header.kid.as_deref(), Some(a.kid.as_str()));
}

#[tokio::test]
async fn no_token_leaves_without_its_audit_record() {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    // Audit inserts fail; everything else works.
    let sql = if is_postgres() {
        "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit down'; END $$ \
         LANGUAGE plpgsql; \
         CREATE TRIGGER audit_down BEFORE INSERT ON audit_events EXECUTE FUNCTION refuse();"
    } else {
        "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'audit down'); END;"
    };
    let mut conn = app.state.store.acquire().await.unwrap();
    sqlx::raw_sql(sql).execute(&mut *conn).await.unwrap();
    let failures = || app.metric("asapd_audit_write_failures_total", &[]);
    assert_eq!(failures(), Some(0.0));
    let res = app.token_request(&a, json!({"audience": "svc-b"})).await;
    let problem = assert_problem(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(problem.get("token").is_none());
    assert!(problem["detail"].as_str().unwrap().contains("audit"));
    // What the "audit writes failing" alert (deploy/prometheus) watches.
    assert!(failures() >= Some(1.0), "{:?}", failures());

    let drop_trigger = if is_postgres() {
        "DROP TRIGGER audit_down ON audit_events"
    } else {
        "DROP TRIGGER audit_down"
    };
    sqlx::raw_sql(drop_trigger)
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    assert!(app.audit_rows("token.issued").await.is_empty());
    app.token(&a, "svc-b").await;
    assert_eq!(app.audit_rows("token.issued").await.len(), 1);
}

/// The rule a refusal names in its problem detail (`… (rule: x)`).
async fn refused_rule(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    let problem = assert_problem(res, status).await;
    let detail = problem["detail"].as_str().unwrap();
    let rule = detail
        .rsplit_once("rule: ")
        .map(|(_, r)| r.trim_end_matches(')').to_owned())
        .unwrap_or_else(|| panic!("no rule in {detail}"));
    (status, rule)
}

/// The order of docs/ARCHITECTURE.md, "The path of a token request": when several rules would refuse a request, the
/// earliest one is the answer (and the audited reason).
#[tokio::test]
async fn rules_are_checked_in_the_documented_order() {
    // Frozen: "busy" must not get a second request's worth back between
    // its two requests.
    let app = frozen_app(|_| {}).await;
    app.group(json!({"name": "g", "audiences": ["svc-b"], "max_lifetime": 300}))
        .await;
    let everything_wrong = json!({
        "audience": "svc-z", "lifetime": 3000, "subject": "someone-else",
        "claims": {"iss": "forged"},
    });

    // 3 before 5 and 6: a disabled caller hears only that it is disabled.
    let off = app.caller("off", json!({"groups": ["g"]})).await;
    let res = app
        .admin_json(
            Method::PATCH,
            "/v1/admin/callers/off",
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.token_request(&off, everything_wrong.clone()).await;
    assert_eq!(
        refused_rule(res).await,
        (StatusCode::FORBIDDEN, "caller_disabled".into())
    );

    // 3 (caller network) before 4 (rate limit): refusals outside the
    // caller's networks use no quota.
    let far = app
        .caller(
            "far",
            json!({"groups": ["g"], "cidrs": ["10.0.0.0/8"],
                   "rate_limit": {"per_second": 1, "burst": 1}}),
        )
        .await;
    for _ in 0..3 {
        let res = app.token_request(&far, everything_wrong.clone()).await;
        assert_eq!(
            refused_rule(res).await,
            (StatusCode::FORBIDDEN, "caller_network".into())
        );
    }

    // 4 before 5: once limited, even an ungranted audience gets 429.
    let busy = app
        .caller(
            "busy",
            json!({"groups": ["g"], "rate_limit": {"per_second": 1, "burst": 1}}),
        )
        .await;
    let res = app.token_request(&busy, everything_wrong.clone()).await;
    assert_eq!(
        refused_rule(res).await,
        (StatusCode::FORBIDDEN, "audience_not_granted".into())
    );
    let res = app.token_request(&busy, everything_wrong.clone()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

    // 5 before 6: grants (audience, then lifetime) before claims and subject.
    let a = app.caller("svc-a", json!({"groups": ["g"]})).await;
    let res = app.token_request(&a, everything_wrong.clone()).await;
    assert_eq!(
        refused_rule(res).await,
        (StatusCode::FORBIDDEN, "audience_not_granted".into())
    );
    let res = app
        .token_request(
            &a,
            json!({"audience": "svc-b", "lifetime": 3000, "subject": "x",
                   "claims": {"iss": "forged"}}),
        )
        .await;
    assert_eq!(
        refused_rule(res).await,
        (StatusCode::BAD_REQUEST, "lifetime_exceeded".into())
    );
    let res = app
        .token_request(
            &a,
            json!({"audience": "svc-b", "subject": "x", "claims": {"iss": "forged"}}),
        )
        .await;
    assert_eq!(
        refused_rule(res).await,
        (StatusCode::BAD_REQUEST, "reserved_claim".into())
    );
    let res = app
        .token_request(&a, json!({"audience": "svc-b", "subject": "x"}))
        .await;
    assert_eq!(
        refused_rule(res).await,
        (StatusCode::FORBIDDEN, "subject_not_allowed".into())
    );
    // And each refusal was audited with the rule that made it.
    let reasons: Vec<String> = app
        .audit_rows("token.denied")
        .await
        .iter()
        .map(|r| detail(r)["rule"].as_str().unwrap_or_default().to_owned())
        .collect();
    for rule in [
        "caller_disabled",
        "caller_network",
        "rate_limited",
        "audience_not_granted",
        "lifetime_exceeded",
        "reserved_claim",
        "subject_not_allowed",
    ] {
        assert!(reasons.iter().any(|r| r == rule), "{rule}: {reasons:?}");
    }
}

/// `tokens.default_lifetime_secs` sets the lifetime of tokens that ask for
/// none, shortened to what the grants allow.
#[tokio::test]
async fn the_default_lifetime_is_configurable_and_capped_by_grants() {
    let app = spawn_app_with(|s| s.tokens.default_lifetime_secs = 900).await;
    app.group(json!({"name": "long", "audiences": ["svc-b"], "max_lifetime": 3600}))
        .await;
    app.group(json!({"name": "short", "audiences": ["svc-c"], "max_lifetime": 120}))
        .await;
    let a = app
        .caller("svc-a", json!({"groups": ["long", "short"]}))
        .await;
    for (audience, lifetime) in [("svc-b", 900), ("svc-c", 120)] {
        let res = app.token_request(&a, json!({"audience": audience})).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["expires_in"], lifetime, "{audience}");
        let (_, claims) = app.verify(body["token"].as_str().unwrap(), audience).await;
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            lifetime
        );
    }
}

/// A secret pasted into any request field never reaches the
/// `token.denied` record: its message keeps only a short redacted form.
#[tokio::test]
async fn denial_records_never_keep_a_long_opaque_value() {
    let app = spawn_app().await;
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    let secret = "asapd_Zk9xR2tQbE1uV3ZzYjdUcUhKa0x5OHdN";
    let bodies = [
        json!({"audience": secret}),
        json!({"audience": format!("https://svc-b.example/cb?token={secret}")}),
        json!({"audience": ["svc-b", secret]}),
        json!({"audience": "svc-b", "subject": secret}),
        json!({"audience": "svc-b", "claims": {secret: 1, "iss": "x"}}),
        json!({"audience": "svc-b", secret: true}),
    ];
    for body in &bodies {
        let res = app.token_request(&a, body.clone()).await;
        assert!(res.status().is_client_error(), "{body}: {}", res.status());
    }
    let res = app
        .request(Method::POST, "/oauth2/token")
        .basic_auth(&a.name, Some(&a.secret))
        .form(&[("grant_type", "client_credentials"), ("audience", secret)])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let denied = app.audit_rows("token.denied").await;
    assert_eq!(denied.len(), bodies.len() + 1, "every refusal is audited");
    for row in &denied {
        assert!(!row.detail.contains(&secret[6..]), "{}", row.detail);
        assert!(!row.detail.contains(&secret[10..30]), "{}", row.detail);
    }
    assert!(
        denied.iter().any(|r| r.detail.contains("redacted")),
        "the message says what it left out"
    );
}
