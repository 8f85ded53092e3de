//! The documents a trusted issuer serves: its JWKS, its OIDC Discovery
//! document and its `Cache-Control` header. Whatever an issuer (or
//! someone between it and asapd) sends, parsing answers without panicking,
//! keeps only keys it can use, and reads equivalent spellings alike.

use asapd::crypto::KeyPair;
use asapd::domain::algorithm::Algorithm;
use asapd::federation::documents::{max_age, parse_discovery, parse_jwks};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::config;

/// JSON values of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        prop_oneof![
            Just("RSA"),
            Just("EC"),
            Just("oct"),
            Just("P-256"),
            Just("RS256"),
            Just("sig")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::hash_map(
                prop_oneof![
                    Just("keys".to_owned()),
                    Just("kty".to_owned()),
                    Just("n".to_owned()),
                    Just("e".to_owned()),
                    Just("crv".to_owned()),
                    Just("x".to_owned()),
                    Just("y".to_owned()),
                    Just("alg".to_owned()),
                    Just("use".to_owned()),
                    Just("kid".to_owned()),
                    Just("issuer".to_owned()),
                    Just("jwks_uri".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn any_jwks_or_discovery_document_parses_without_panicking(doc in any_json(), junk in prop::collection::vec(any::<u8>(), 0..64)) {
        let text = doc.to_string();
        let _ = parse_jwks(text.as_bytes());
        let _ = parse_jwks(&junk);
        if let Ok(uri) = parse_discovery(text.as_bytes(), "https://issuer.example") {
            prop_assert!(uri.starts_with("https://"));
        }
        let _ = parse_discovery(&junk, "https://issuer.example");
    }

    #[test]
    fn a_usable_key_is_kept_among_any_others(others in prop::collection::vec(any_json(), 0..5), at in 0usize..5) {
        let pair = KeyPair::generate(Algorithm::ES256).unwrap();
        let good = pair.public.jwk("good", Algorithm::ES256);
        let mut keys = others;
        keys.insert(at.min(keys.len()), good);
        let set = parse_jwks(json!({ "keys": keys }).to_string().as_bytes()).unwrap();
        prop_assert!(set.has(Some("good")));
    }

    #[test]
    fn max_age_reads_equivalent_spellings_alike(secs in 0u64..10_000_000, upper in any::<bool>(), spaces in " {0,3}", extra in prop_oneof![Just(""), Just("public, "), Just("must-revalidate, ")]) {
        let name = if upper { "MAX-AGE" } else { "max-age" };
        let header = format!("{extra}{spaces}{name}={secs}{spaces}");
        prop_assert_eq!(max_age(&header), Some(secs));
        prop_assert_eq!(max_age(&format!("{header}, no-store")), Some(0));
    }

    #[test]
    fn max_age_never_panics(header in ".{0,80}") {
        let _ = max_age(&header);
    }
}

/// Tokens shaped like a JWT (three base64url parts, JSON or not), or not.
fn presented_token() -> impl Strategy<Value = String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let part = prop_oneof![
        any_json().prop_map(|v| URL_SAFE_NO_PAD.encode(v.to_string())),
        "[A-Za-z0-9_-]{0,40}",
        ".{0,20}",
    ];
    prop_oneof![
        (part.clone(), part.clone(), part).prop_map(|(h, p, s)| format!("{h}.{p}.{s}")),
        ".{0,80}",
    ]
}

/// Black-box: whatever is presented as a subject token or a Bearer token
/// gets an answer below 500 that names what is wrong.
#[test]
fn any_presented_token_is_refused_below_500() {
    use reqwest::Method;
    let f = crate::support::Fixture::new();
    f.check(presented_token(), |f, token| {
        let (exchange, bearer) = f.rt.block_on(async {
            let form = [
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", token.as_str()),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("audience", "svc-b"),
            ];
            let exchange = f
                .app
                .request(Method::POST, "/oauth2/token")
                .form(&form)
                .send()
                .await
                .unwrap();
            let exchange = (
                exchange.status(),
                exchange.json::<Value>().await.unwrap_or(Value::Null),
            );
            let bearer = f
                .app
                .request(Method::POST, "/v1/tokens")
                .header("authorization", format!("Bearer {token}"))
                .json(&json!({"audience": "svc-b"}))
                .send()
                .await;
            let bearer = match bearer {
                // reqwest refuses to send a header value with control characters.
                Err(_) => None,
                Ok(res) => Some((
                    res.status(),
                    res.json::<Value>().await.unwrap_or(Value::Null),
                )),
            };
            (exchange, bearer)
        });
        prop_assert!(
            exchange.0.is_client_error(),
            "exchange {}: {}",
            exchange.0,
            exchange.1
        );
        prop_assert!(exchange.1["error"].is_string(), "{}", exchange.1);
        if let Some((status, body)) = bearer {
            prop_assert!(status.is_client_error(), "bearer {}: {}", status, body);
            prop_assert!(body["detail"].is_string(), "{}", body);
        }
        Ok(())
    });
}
