//! Key import: PEM and base64 DER, PKCS#8 and (RSA) PKCS#1. Any text, and
//! any damage to a real key, is refused without a panic; every encoding of
//! one key imports as the same key.

use std::sync::OnceLock;

use asapd::crypto::KeyPair;
use asapd::domain::algorithm::Algorithm;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use proptest::prelude::*;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;

use crate::support::config;

/// A real key of each family, generated once (RSA takes a while).
struct Fixture {
    algorithm: Algorithm,
    pkcs8: Vec<u8>,
    /// The RSA key as PKCS#1, the other encoding importers accept.
    pkcs1: Option<Vec<u8>>,
    spki: Vec<u8>,
    jwk: serde_json::Value,
}

fn fixtures() -> &'static [Fixture] {
    static KEYS: OnceLock<Vec<Fixture>> = OnceLock::new();
    KEYS.get_or_init(|| {
        [Algorithm::ES256, Algorithm::ES384, Algorithm::RS256]
            .into_iter()
            .map(|algorithm| {
                let pair = KeyPair::generate(algorithm).expect("a key pair");
                let pkcs8 = pair.pkcs8_der().to_vec();
                let pkcs1 = (algorithm == Algorithm::RS256).then(|| {
                    let key = rsa::RsaPrivateKey::from_pkcs8_der(&pkcs8).expect("RSA PKCS#8");
                    key.to_pkcs1_der().expect("PKCS#1").as_bytes().to_vec()
                });
                Fixture {
                    algorithm,
                    pkcs8,
                    pkcs1,
                    spki: pair.public.spki_der.clone(),
                    jwk: pair.public.jwk_members.clone(),
                }
            })
            .collect()
    })
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec())
}

fn pem(label: &str, der: &[u8], line_end: &str) -> String {
    let body: Vec<String> = STANDARD
        .encode(der)
        .as_bytes()
        .chunks(64)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    format!(
        "-----BEGIN {label}-----{line_end}{}{line_end}-----END {label}-----{line_end}",
        body.join(line_end)
    )
}

/// Whitespace (spaces, tabs, newlines) at `cuts` in base64 text: the same
/// DER to a reader that ignores whitespace, as asapd's does.
fn with_whitespace(text: &str, cuts: &[(usize, usize)]) -> String {
    let mut out = text.to_owned();
    for &(at, kind) in cuts {
        let at = at % (out.len() + 1);
        out.insert_str(at, [" ", "\n", "\t", "\r\n"][kind % 4]);
    }
    out
}

/// Every spelling of one fixture's private key that must import.
fn spellings(key: &Fixture, cuts: &[(usize, usize)]) -> Vec<String> {
    let mut out = vec![
        pem("PRIVATE KEY", &key.pkcs8, "\n"),
        pem("PRIVATE KEY", &key.pkcs8, "\r\n"),
        STANDARD.encode(&key.pkcs8),
        with_whitespace(&STANDARD.encode(&key.pkcs8), cuts),
    ];
    if let Some(pkcs1) = &key.pkcs1 {
        out.push(pem("RSA PRIVATE KEY", pkcs1, "\n"));
        out.push(with_whitespace(&STANDARD.encode(pkcs1), cuts));
    }
    out
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn any_text_is_refused_or_imported_without_a_panic(
        algorithm in algorithm(),
        text in prop_oneof![
            ".{0,200}",
            "-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----\n[A-Za-z0-9+/=\n]{0,300}\n-----END (RSA )?PRIVATE KEY-----\n",
            "[A-Za-z0-9+/= \n]{0,400}",
        ],
    ) {
        let _ = KeyPair::import(algorithm, &text);
    }

    #[test]
    fn a_damaged_key_is_refused_or_imported_without_a_panic(
        index in 0..3usize,
        algorithm in algorithm(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        as_pkcs1 in any::<bool>(),
    ) {
        let key = &fixtures()[index];
        let mut der = match (&key.pkcs1, as_pkcs1) {
            (Some(pkcs1), true) => pkcs1.clone(),
            _ => key.pkcs8.clone(),
        };
        for (at, bits) in flips {
            let at = at.index(der.len());
            der[at] ^= bits;
        }
        der.truncate(cut.index(der.len() + 1));
        let _ = KeyPair::import(algorithm, &STANDARD.encode(&der));
        let _ = KeyPair::import(algorithm, &pem("PRIVATE KEY", &der, "\n"));
        let _ = KeyPair::import(algorithm, &pem("RSA PRIVATE KEY", &der, "\n"));
    }

    #[test]
    fn every_encoding_of_a_key_imports_as_that_key(
        index in 0..3usize,
        cuts in prop::collection::vec((any::<usize>(), any::<usize>()), 0..6),
    ) {
        let key = &fixtures()[index];
        for text in spellings(key, &cuts) {
            let imported = KeyPair::import(key.algorithm, &text);
            prop_assert!(imported.is_ok(), "{:?} refused: {:?}", text, imported.err());
            let public = imported.unwrap().public;
            prop_assert_eq!(&public.spki_der, &key.spki);
            prop_assert_eq!(&public.jwk_members, &key.jwk);
        }
    }

    #[test]
    fn a_key_of_another_family_is_refused(index in 0..3usize, algorithm in algorithm()) {
        let key = &fixtures()[index];
        let same_family = algorithm == key.algorithm
            || (key.algorithm == Algorithm::RS256 && matches!(
                algorithm,
                Algorithm::RS256 | Algorithm::PS256
            ));
        let imported = KeyPair::import(algorithm, &STANDARD.encode(&key.pkcs8));
        // A 2048-bit RSA key fits RS256 and PS256 only; a curve, its own
        // algorithm only.
        prop_assert_eq!(imported.is_ok(), same_family, "{:?} as {:?}", key.algorithm, algorithm);
    }
}
