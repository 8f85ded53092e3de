//! Kid parsing against its grammar: `<caller>/<key-name>`, each name 1 to
//! 64 ASCII letters, digits and `_ . - +`, starting with a letter or digit.

use asapd::domain::kid::Kid;
use proptest::prelude::*;

use crate::support::config;

fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+'))
}

fn model(kid: &str) -> bool {
    kid.split_once('/')
        .is_some_and(|(caller, key)| is_name(caller) && is_name(key))
}

/// Mostly strings close to a kid, so both answers are common.
fn kid_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.+-]{0,66}/[A-Za-z0-9_.+-]{0,66}",
        "[A-Za-z0-9_.+/ -]{0,20}",
        ".{0,80}",
    ]
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn a_kid_is_accepted_exactly_when_the_grammar_says(kid in kid_like()) {
        let parsed = Kid::parse(&kid);
        prop_assert_eq!(parsed.is_ok(), model(&kid), "{:?}: {:?}", kid, parsed.as_ref().err());
        if let Ok(parsed) = parsed {
            prop_assert_eq!(parsed.as_str(), kid.as_str());
            prop_assert_eq!(parsed.caller(), kid.split_once('/').unwrap().0);
            // The serde form (JSON bodies, database rows) is the same parser.
            let json = serde_json::to_string(&kid).unwrap();
            prop_assert_eq!(serde_json::from_str::<Kid>(&json).ok(), Some(parsed));
        } else {
            prop_assert_eq!(parsed.unwrap_err().field, "kid");
        }
    }
}
