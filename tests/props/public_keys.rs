//! Client key registration: public keys as PEM or JWK. Any text or JSON,
//! and any damage to a real key, is refused without a panic; every
//! spelling of one key parses as that key, under one id; a JWK with any
//! private member is refused naming it.

use std::sync::OnceLock;

use asapd::crypto::public_import;
use asapd::crypto::KeyPair;
use asapd::domain::algorithm::Algorithm;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::config;

/// A real public key of each family, generated once.
struct Fixture {
    spki: Vec<u8>,
    jwk: Value,
}

fn fixtures() -> &'static [Fixture] {
    static KEYS: OnceLock<Vec<Fixture>> = OnceLock::new();
    KEYS.get_or_init(|| {
        [Algorithm::ES256, Algorithm::ES384, Algorithm::RS256]
            .into_iter()
            .map(|algorithm| {
                let pair = KeyPair::generate(algorithm).expect("a key pair");
                Fixture {
                    spki: pair.public.spki_der.clone(),
                    jwk: pair.public.jwk_members.clone(),
                }
            })
            .collect()
    })
}

fn pem(der: &[u8], line_end: &str) -> String {
    let body: Vec<String> = STANDARD
        .encode(der)
        .as_bytes()
        .chunks(64)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----{line_end}{}{line_end}-----END PUBLIC KEY-----{line_end}",
        body.join(line_end)
    )
}

/// Any JSON a client may send as `public_key`, shaped like a JWK often.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "[A-Za-z0-9_-]{0,90}".prop_map(Value::from),
    ];
    let jwk_like = (
        prop::sample::select(vec!["RSA", "EC", "oct", "OKP", ""]),
        prop::sample::select(vec!["P-256", "P-384", "P-521", "x"]),
        "[A-Za-z0-9_-]{0,90}",
        "[A-Za-z0-9_-]{0,90}",
    )
        .prop_map(
            |(kty, crv, a, b)| json!({"kty": kty, "crv": crv, "x": a, "y": b, "n": a, "e": b}),
        );
    prop_oneof![
        leaf.clone(),
        jwk_like,
        prop::collection::btree_map("[a-z]{1,3}", leaf, 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
    ]
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn any_json_is_refused_or_parsed_without_a_panic(value in any_json()) {
        if let Err(e) = public_import::parse(&value) {
            prop_assert!(e.field.starts_with("public_key"), "{}", e.field);
        }
    }

    #[test]
    fn any_pem_like_text_is_refused_without_a_panic(
        text in "-----BEGIN (RSA )?PUBLIC KEY-----\n[A-Za-z0-9+/=\n]{0,300}\n-----END (RSA )?PUBLIC KEY-----\n",
    ) {
        let _ = public_import::parse(&Value::String(text));
    }

    #[test]
    fn a_damaged_key_is_refused_or_parsed_without_a_panic(
        index in 0..3usize,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        member in prop::sample::select(vec!["n", "e", "x", "y"]),
        junk in "[A-Za-z0-9_-]{0,80}",
    ) {
        let key = &fixtures()[index];
        let mut der = key.spki.clone();
        for (at, bits) in flips {
            let at = at.index(der.len());
            der[at] ^= bits;
        }
        der.truncate(cut.index(der.len() + 1));
        let _ = public_import::parse(&Value::String(pem(&der, "\n")));
        let mut jwk = key.jwk.clone();
        jwk[member] = json!(junk);
        let _ = public_import::parse(&jwk);
    }

    #[test]
    fn every_spelling_of_a_key_parses_as_that_key(
        index in 0..3usize,
        crlf in any::<bool>(),
        with_use in any::<bool>(),
        kid in "[a-z0-9/]{0,12}",
    ) {
        let key = &fixtures()[index];
        let from_pem = public_import::parse(&Value::String(pem(&key.spki, if crlf { "\r\n" } else { "\n" })));
        prop_assert!(from_pem.is_ok(), "{:?}", from_pem.err());
        let from_pem = from_pem.unwrap();
        prop_assert_eq!(&from_pem.spki_der, &key.spki);
        let mut jwk = key.jwk.clone();
        jwk["kid"] = json!(kid);
        if with_use {
            jwk["use"] = json!("sig");
        }
        let from_jwk = public_import::parse(&jwk);
        prop_assert_eq!(from_jwk.as_ref().ok(), Some(&from_pem));
    }

    #[test]
    fn a_jwk_with_a_private_member_is_refused_naming_it(
        index in 0..3usize,
        member in prop::sample::select(vec!["d", "p", "q", "dp", "dq", "qi", "oth", "k"]),
        value in "[A-Z0-9]{12,40}",
    ) {
        let mut jwk = fixtures()[index].jwk.clone();
        jwk[member] = json!(value);
        let refused = public_import::parse(&jwk).unwrap_err();
        prop_assert_eq!(refused.field, format!("public_key.{member}"));
        prop_assert!(!refused.message.contains(&value));
    }
}
