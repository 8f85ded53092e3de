//! The JSON body reader with every request body type asapd takes: any
//! bytes are answered without a panic, and spellings of the same JSON
//! (whitespace, member order, `60.0` for `60`) get the same answer.

use asapd::http::admin::callers::{CreateCaller, UpdateCaller};
use asapd::http::admin::groups::{CreateGroup, UpdateGroup};
use asapd::http::admin::keys::{GenerateKey, ImportKey};
use asapd::http::json::parse_json;
use asapd::http::tokens::TokenRequestBody;
use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::support::config;

/// Whether each body type accepts `body`.
fn answers(body: &[u8]) -> [bool; 7] {
    [
        parse_json::<TokenRequestBody>(body).is_ok(),
        parse_json::<CreateCaller>(body).is_ok(),
        parse_json::<UpdateCaller>(body).is_ok(),
        parse_json::<CreateGroup>(body).is_ok(),
        parse_json::<UpdateGroup>(body).is_ok(),
        parse_json::<GenerateKey>(body).is_ok(),
        parse_json::<ImportKey>(body).is_ok(),
    ]
}

/// The members the body types know, so generated objects get past
/// `deny_unknown_fields` and reach the validation of values.
const NAMES: &[&str] = &[
    "audience",
    "lifetime",
    "subject",
    "claims",
    "not_before",
    "request",
    "method",
    "url",
    "name",
    "groups",
    "algorithm",
    "cidrs",
    "rate_limit",
    "per_second",
    "burst",
    "enabled",
    "rotation_period_secs",
    "audiences",
    "max_lifetime",
    "allow_subject",
    "private_key",
    "kid",
    "activate",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![any::<i64>(), -2i64..4000, Just(i64::from(u32::MAX) + 1)].prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            ".{0,12}",
            "(svc-b|reports-\\*|ES256|RS256|PS512|GET|/a\\?b=c|10\\.0\\.0\\.0/8|::1/128|admin|a/b)",
        ]
        .prop_map(Value::from),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(NAMES).prop_map(str::to_owned),
                        ".{0,6}"
                    ],
                    inner
                ),
                0..5,
            )
            .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An object at the top, as every body is.
pub(crate) fn body() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(NAMES), json()), 0..5).prop_map(|members| {
        Value::Object(
            members
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    })
}

/// `value` as JSON text, with `seed` choosing whitespace, the order of
/// members, and `n.0` for integers a double holds exactly.
pub(crate) fn spell(value: &Value, seed: &mut u64) -> String {
    let mut pick = |n: u64| {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 33) % n
    };
    let space = [" ", "", "\n\t", "  \r\n"][pick(4) as usize];
    match value {
        Value::Number(n) if n.as_i64().is_some_and(|i| i.abs() < 1 << 53) && pick(2) == 0 => {
            format!("{n}.0")
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|v| spell(v, seed)).collect();
            format!("[{space}{}{space}]", items.join(&format!(",{space}")))
        }
        Value::Object(members) => {
            let mut members: Vec<(&String, &Value)> = members.iter().collect();
            if pick(2) == 0 {
                members.reverse();
            }
            let members: Vec<String> = members
                .into_iter()
                .map(|(k, v)| {
                    format!(
                        "{}{space}:{space}{}",
                        Value::from(k.as_str()),
                        spell(v, seed)
                    )
                })
                .collect();
            format!("{{{space}{}{space}}}", members.join(&format!("{space},")))
        }
        other => other.to_string(),
    }
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn any_bytes_are_answered_without_a_panic(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            "[{}\\[\\]\":,0-9.eE+-a-z ]{0,40}".prop_map(String::into_bytes),
        ],
    ) {
        answers(&body);
    }

    #[test]
    fn spellings_of_the_same_json_get_the_same_answer(body in body(), a in any::<u64>(), b in any::<u64>()) {
        let (mut a, mut b) = (a, b);
        let (one, other) = (spell(&body, &mut a), spell(&body, &mut b));
        prop_assert_eq!(answers(one.as_bytes()), answers(other.as_bytes()), "{} vs {}", one, other);
    }
}
