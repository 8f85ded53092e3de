//! Black-box: request bodies and query strings, on a spawned app. Any JSON
//! body, OAuth2 form or audit query gets an answer below 500, a refusal
//! is a problem (or an RFC 6749 error) naming what is wrong, and
//! equivalent spellings get the same answer.

use proptest::prelude::*;
use reqwest::{header, Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::body::{body, spell};
use crate::support::Fixture;

/// A caller `svc-a` allowed `svc-b` and `reports-*`; its client secret.
fn with_caller(f: &Fixture) -> String {
    f.rt.block_on(async {
        f.app.create_group("props", &["svc-b", "reports-*"]).await;
        let caller = f
            .app
            .create_caller(json!({"name": "svc-a", "groups": ["props"]}))
            .await;
        caller["client_secret"].as_str().unwrap().to_owned()
    })
}

/// What two equivalent requests must share: the status, and the problem's
/// `type`, the OAuth2 `error`, or the token's type and lifetime. A body
/// with several faults may be refused for any one of them, so the `field`
/// a problem names (the second value) is not compared.
async fn answer(res: Response) -> (StatusCode, Value, Value) {
    let status = res.status();
    let problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/problem+json");
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if problem {
        (status, body["type"].clone(), body["field"].clone())
    } else if status.is_success() {
        (
            status,
            json!([body["token_type"], body["expires_in"]]),
            Value::Null,
        )
    } else {
        (status, body["error"].clone(), Value::Null)
    }
}

fn below_500(status: StatusCode, named: &Value, request: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        status.as_u16() < 500,
        "{} for {}: {}",
        status,
        request,
        named
    );
    if status.is_client_error() && status != StatusCode::NOT_FOUND {
        prop_assert!(!named.is_null(), "{} for {} names nothing", status, request);
    }
    Ok(())
}

/// Posts `one` and `other` (two spellings of one request) as `svc-a`:
/// both below 500, and the same answer.
fn same_answer(
    f: &Fixture,
    secret: &str,
    (path, content_type): (&str, &str),
    one: String,
    other: String,
) -> Result<(), TestCaseError> {
    let send = |text: String| {
        f.rt.block_on(async {
            let res = f
                .app
                .request(Method::POST, path)
                .basic_auth("svc-a", Some(secret))
                .header(header::CONTENT_TYPE, content_type)
                .body(text)
                .send()
                .await
                .unwrap();
            answer(res).await
        })
    };
    let (status, named, _) = send(one.clone());
    below_500(status, &named, &one)?;
    let (again, named_again, _) = send(other.clone());
    prop_assert_eq!(
        (status, named),
        (again, named_again),
        "{} vs {}",
        one,
        other
    );
    Ok(())
}

#[test]
fn any_token_request_body_is_answered_below_500_and_alike_when_spelled_alike() {
    let f = Fixture::new();
    let secret = with_caller(&f);
    let strategy = (body(), any::<u64>(), any::<u64>());
    f.check(strategy, |f, (body, mut a, mut b)| {
        let (one, other) = (spell(&body, &mut a), spell(&body, &mut b));
        same_answer(f, &secret, ("/v1/tokens", "application/json"), one, other)
    });
}

#[test]
fn any_admin_body_is_answered_below_500() {
    let f = Fixture::new();
    let paths = [
        "/v1/admin/callers",
        "/v1/admin/groups",
        "/v1/admin/callers/admin/keys/import",
    ];
    f.check(
        (0..3usize, body(), any::<u64>()),
        |f, (path, body, mut seed)| {
            let text = spell(&body, &mut seed);
            let (status, named, _) = f.rt.block_on(async {
                let res = f
                    .app
                    .admin(Method::POST, paths[path])
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(text.clone())
                    .send()
                    .await
                    .unwrap();
                answer(res).await
            });
            below_500(status, &named, &text)
        },
    );
}

/// Name-value pairs: mostly `names` and `values`, else names matching
/// `other_names` and arbitrary values.
fn pairs(
    names: &[&'static str],
    other_names: &'static str,
    values: &[&'static str],
) -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        4 => prop::sample::select(names.to_vec()).prop_map(str::to_owned),
        1 => other_names,
    ];
    let value = prop_oneof![
        prop::sample::select(values.to_vec()).prop_map(str::to_owned),
        ".{0,12}",
    ];
    prop::collection::vec((name, value), 0..5)
}

/// OAuth2 token form members.
fn form() -> impl Strategy<Value = Vec<(String, String)>> {
    let names = [
        "grant_type",
        "audience",
        "resource",
        "scope",
        "client_id",
        "client_secret",
        "token_type_hint",
    ];
    let values = [
        "client_credentials",
        "svc-b",
        "reports-eu",
        "svc-a",
        "",
        "x y",
    ];
    pairs(&names, ".{0,6}", &values)
}

/// `pairs` form-encoded, each byte of a name or value percent-encoded
/// (either hex case) or not where that means the same, a space as `+` or
/// `%20`.
fn spell_form(pairs: &[(String, String)], choices: &[u8]) -> String {
    let mut pick = choices.iter().copied().cycle();
    let mut encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match (b, pick.next().unwrap_or(0) % 3) {
                (b' ', 0) => "+".to_owned(),
                (b, 1) if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) => {
                    char::from(b).to_string()
                }
                (b, 2) => format!("%{b:02x}"),
                (b, _) => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn any_oauth2_form_is_answered_below_500_and_alike_when_spelled_alike() {
    let f = Fixture::new();
    let secret = with_caller(&f);
    let strategy = (
        form(),
        prop::collection::vec(any::<u8>(), 1..32),
        prop::collection::vec(any::<u8>(), 1..32),
    );
    f.check(strategy, |f, (pairs, a, b)| {
        let (one, other) = (spell_form(&pairs, &a), spell_form(&pairs, &b));
        let form = ("/oauth2/token", "application/x-www-form-urlencoded");
        same_answer(f, &secret, form, one, other)
    });
}

/// Audit filters. Other names are not empty: `?=x` is refused too, but
/// has no name to give.
fn audit_query() -> impl Strategy<Value = Vec<(String, String)>> {
    let names = [
        "action", "outcome", "actor", "target", "from", "to", "limit", "cursor",
    ];
    let values = [
        "token.issued",
        "success",
        "admin",
        "caller:svc-a",
        "2026-11-22T03:12:00Z",
        "2026-11-22T03:12:00+01:00",
        "0",
        "1000",
        "1001",
        "-1",
        "1e3",
        "",
        "null",
    ];
    pairs(&names, "[a-z]{1,6}", &values)
}

#[test]
fn any_audit_query_is_answered_below_500() {
    let f = Fixture::new();
    f.check(
        (audit_query(), prop::collection::vec(any::<u8>(), 1..16)),
        |f, (pairs, choices)| {
            let query = spell_form(&pairs, &choices);
            let (status, named, field) = f.rt.block_on(async {
                let res = f
                    .app
                    .admin(Method::GET, &format!("/v1/admin/audit?{query}"))
                    .send()
                    .await
                    .unwrap();
                answer(res).await
            });
            below_500(status, &named, &query)?;
            if status == StatusCode::BAD_REQUEST {
                prop_assert!(!field.is_null(), "a 400 for ?{} names no field", query);
            }
            Ok(())
        },
    );
}

/// Found by `any_audit_query_is_answered_below_500`: a repeated parameter
/// was a 400 naming no field, and so was a missing JSON member.
#[test]
fn a_repeated_parameter_or_a_missing_member_is_named() {
    let f = Fixture::new();
    let secret = with_caller(&f);
    f.rt.block_on(async {
        let res = f
            .app
            .admin(Method::GET, "/v1/admin/audit?actor=a&actor=a")
            .send()
            .await
            .unwrap();
        let problem = crate::helpers::assert_problem(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["field"], "actor", "{problem}");
        for (body, field) in [
            (json!({"lifetime": 60}), "audience"),
            (
                json!({"audience": "svc-b", "request": {"url": "/"}}),
                "request.method",
            ),
        ] {
            let res = f
                .app
                .request(Method::POST, "/v1/tokens")
                .basic_auth("svc-a", Some(&secret))
                .json(&body)
                .send()
                .await
                .unwrap();
            let problem = crate::helpers::assert_problem(res, StatusCode::BAD_REQUEST).await;
            assert_eq!(problem["field"], field, "{problem}");
        }
    });
}
