//! qsh canonicalisation against a simple model of Connect's rules: the
//! method upper-cased; the path as sent with `&` as `%26` and one trailing
//! `/` dropped; the query decoded, `jwt` left out, names sorted (UTF-16
//! order, as JavaScript sorts), a name's values sorted and joined with `,`,
//! everything but `A-Z a-z 0-9 - . _ ~` percent-encoded.
//!
//! The URL is spelled from the model's request in many equivalent ways
//! (parameter order, `+` or `%20`, upper- or lower-case hex, characters
//! encoded or not, a fragment, a `jwt` parameter): every spelling must give
//! the model's canonical request.

use std::cmp::Ordering;

use asapd::domain::qsh::CanonicalRequest;
use proptest::prelude::*;

use crate::support::config;

#[derive(Debug, Clone)]
struct Request {
    method: String,
    /// Path characters that need no model of Node's slow path.
    path: String,
    params: Vec<(String, String)>,
}

/// Choices for one spelling of a request, drawn per character.
#[derive(Debug, Clone)]
struct Spelling {
    choices: Vec<u8>,
    order: Vec<usize>,
    fragment: Option<String>,
    jwt: Option<String>,
}

fn method() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

/// `/`, or non-empty segments (`//` would be a host to Node).
fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_owned()),
        "(/[A-Za-z0-9._~!$()*+,;=:&%-]{1,6}){1,4}/?",
    ]
}

fn component() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..6).prop_map(String::from_iter)
}

fn request() -> impl Strategy<Value = Request> {
    let param = (
        prop_oneof![component(), "[a-c]{1,2}", Just("jwt".to_owned())],
        component(),
    );
    (method(), path(), prop::collection::vec(param, 0..6)).prop_map(|(method, path, params)| {
        Request {
            method,
            path,
            params,
        }
    })
}

fn spelling() -> impl Strategy<Value = Spelling> {
    (
        prop::collection::vec(any::<u8>(), 64),
        Just((0..6).collect::<Vec<usize>>()).prop_shuffle(),
        prop::option::of("[A-Za-z0-9/?&=%#-]{0,8}"),
        prop::option::of("[A-Za-z0-9.]{0,8}"),
    )
        .prop_map(|(choices, order, fragment, jwt)| Spelling {
            choices,
            order,
            fragment,
            jwt,
        })
}

/// What Connect computes for `request`.
fn model(request: &Request) -> String {
    let mut path = request.path.replace('&', "%26");
    if path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    let mut names: Vec<&String> = Vec::new();
    for (name, _) in &request.params {
        if name != "jwt" && name != "__proto__" && !names.contains(&name) {
            names.push(name);
        }
    }
    names.sort_by(|a, b| js_order(a, b));
    let query: Vec<String> = names
        .iter()
        .map(|name| {
            let mut values: Vec<&String> = request
                .params
                .iter()
                .filter(|(n, _)| n == *name)
                .map(|(_, v)| v)
                .collect();
            values.sort_by(|a, b| js_order(a, b));
            let values: Vec<String> = values.iter().map(|v| encode(v)).collect();
            format!("{}={}", encode(name), values.join(","))
        })
        .collect();
    format!(
        "{}&{path}&{}",
        request.method.to_ascii_uppercase(),
        query.join("&")
    )
}

fn js_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One wire spelling of `request`, chosen by `spelling`.
fn spell(request: &Request, spelling: &Spelling) -> String {
    let mut choice = spelling.choices.iter().copied().cycle();
    let mut next = move || choice.next().unwrap_or(0);
    let mut parts: Vec<String> = Vec::new();
    // `order` is a permutation of 0..6, and there are at most 5 parameters.
    let order = spelling.order.iter().filter(|&&i| i < request.params.len());
    for &i in order {
        let (name, value) = &request.params[i];
        let name = spell_component(name, &mut next);
        parts.push(format!("{name}={}", spell_component(value, &mut next)));
    }
    if let Some(jwt) = &spelling.jwt {
        let at = usize::from(next()) % (parts.len() + 1);
        parts.insert(at, format!("jwt={jwt}"));
    }
    let mut url = request.path.clone();
    if !parts.is_empty() {
        url = format!("{url}?{}", parts.join("&"));
    }
    if let Some(fragment) = &spelling.fragment {
        url = format!("{url}#{fragment}");
    }
    url
}

/// A query name or value: each character as itself where that means the
/// same, or percent-encoded (either hex case); a space as `+` or `%20`.
fn spell_component(text: &str, next: &mut impl FnMut() -> u8) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let literal_ok = !(c.is_control()
            || c.is_whitespace()
            || matches!(c, '&' | '=' | '+' | '%' | '#' | '\u{feff}'));
        let pick = next();
        if c == ' ' && pick.is_multiple_of(2) {
            out.push('+');
        } else if literal_ok && !pick.is_multiple_of(3) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                if pick.is_multiple_of(5) {
                    out.push_str(&format!("%{b:02x}"));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn any_method_and_url_is_answered_without_a_panic(method in ".{0,40}", url in ".{0,200}") {
        let _ = CanonicalRequest::parse(&method, &url);
    }

    #[test]
    fn urls_near_the_accepted_shape_are_answered_without_a_panic(
        url in "/[A-Za-z0-9%+&=?#/@\\\\.]{0,60}",
    ) {
        if let Ok(canonical) = CanonicalRequest::parse("GET", &url) {
            let qsh = canonical.qsh();
            prop_assert!(qsh.len() == 64 && qsh.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn every_spelling_gives_the_model_s_canonical_request(
        request in request(),
        spelling in spelling(),
    ) {
        let url = spell(&request, &spelling);
        let canonical = CanonicalRequest::parse(&request.method, &url);
        prop_assert!(canonical.is_ok(), "{url:?} refused: {:?}", canonical.err());
        let canonical = canonical.unwrap();
        prop_assert_eq!(canonical.as_str(), model(&request), "url {:?}", url);
    }
}
