//! Hostile input, found by machines: property tests of every parser that
//! takes input from outside asapd. Each property holds for any input:
//! no panic, no 5xx, and the same answer for equivalent inputs.
//!
//! `PROPTEST_CASES` sets how many cases each property tries; the default
//! is small so that `make test` stays quick, and `make fuzz` runs the same
//! properties with many more. A failing case is shrunk to a small one and
//! printed; keep it as a plain regression test next to the fix.
//!
//! The library's parsers are called directly (qsh, kids, key import, JSON
//! bodies, audit cursors); what only exists inside the HTTP layer (the
//! admin gate, `If-None-Match`, the OAuth2 form, audit query strings) is
//! reached black-box through a spawned app (`http_*.rs`).

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod audit;
mod body;
mod federation;
mod http_bodies;
mod http_paths;
mod keys;
mod kid;
mod public_keys;
mod qsh;
mod support;
