//! The audit query's parsers: cursors (sealed positions a client hands
//! back) and filters. Any string is refused or accepted without a panic,
//! and only this asapd's own cursors are accepted.

use asapd::audit::query::{decode_cursor, encode_cursor, validate};
use asapd::crypto::MasterKey;
use asapd::store::audit::AuditFilter;
use proptest::prelude::*;

use crate::support::config;

fn key(byte: u8) -> MasterKey {
    MasterKey::from_bytes(&[byte; 32])
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn a_cursor_is_its_position_and_nothing_else_is_a_cursor(
        position in any::<i64>(),
        junk in prop_oneof![".{0,40}", "[A-Za-z0-9_-]{0,60}"],
        flip in any::<prop::sample::Index>(),
    ) {
        let cursor = encode_cursor(&key(1), position);
        prop_assert_eq!(decode_cursor(&key(1), &cursor).ok(), Some(position));
        prop_assert!(decode_cursor(&key(2), &cursor).is_err(), "another key's cursor");
        let mut forged = cursor.into_bytes();
        let at = flip.index(forged.len());
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        prop_assert!(decode_cursor(&key(1), &forged).is_err(), "a changed cursor");
        prop_assert!(decode_cursor(&key(1), &junk).is_err(), "{:?} taken for a cursor", junk);
    }

    #[test]
    fn any_filter_is_checked_without_a_panic(
        action in prop::option::of(prop_oneof![".{0,20}", "(token|caller|key)\\.(issued|created|denied)"]),
        outcome in prop::option::of(prop_oneof![".{0,10}", "(success|denied|failure)"]),
        actor in prop::option::of(".{0,20}"),
        target in prop::option::of(".{0,20}"),
        from_ms in prop::option::of(any::<i64>()),
        to_ms in prop::option::of(any::<i64>()),
    ) {
        let filter = AuditFilter { action, outcome, actor, target, from_ms, to_ms };
        if validate(&filter).is_ok() {
            let controls = |v: &Option<String>| v.as_deref().is_some_and(|v| v.chars().any(char::is_control));
            prop_assert!(!controls(&filter.actor) && !controls(&filter.target));
            if let (Some(from), Some(to)) = (filter.from_ms, filter.to_ms) {
                prop_assert!(from < to);
            }
        }
    }
}
