//! Atlassian Connect's query string hash (`qsh`): binds a token to one
//! HTTP request (README, "Binding a token to one request").
//!
//! A receiver recomputes the hash from the request it got and compares, so
//! only the exact algorithm counts. The reference is npm `atlassian-jwt`
//! 2.0.3, `createQueryStringHash(fromMethodAndUrl(method, url))`, which
//! parses the URL with Node's legacy `url.parse(url, true)` and
//! `querystring.parse`. This module reproduces that on a validated subset of
//! request targets and refuses the rest, rather than guess at the corners
//! where Node's parsers are lenient (malformed `%`, whitespace, `//host`).
//! `tests/interop/test_qsh.py` checks it against the npm package.

use std::cmp::Ordering;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use super::InvalidField;

/// Longest accepted `url`, in bytes: far above any real request target,
/// and a bound on the work one token request can ask for.
pub const MAX_URL_BYTES: usize = 8192;

/// Node's `querystring.parse` stops after this many `&`-separated pieces
/// (its `maxKeys`) and ignores the rest; asapd refuses such a URL instead of
/// silently hashing part of it.
pub const MAX_QUERY_PARTS: usize = 1000;

/// Longest accepted method name.
const MAX_METHOD_LEN: usize = 32;

/// Connect percent-encodes everything but RFC 3986's unreserved characters
/// (OAuth 1 rules): `encodeURIComponent`, then `!'()*` too.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The characters Node's legacy parser escapes in a path it takes the slow
/// way (a `#` or an `@` in the path): `autoEscapeStr` in Node's `url.js`.
/// Whitespace and `\` are on its list too, but asapd refuses those first.
const AUTO_ESCAPED: [(char, &str); 9] = [
    ('"', "%22"),
    ('\'', "%27"),
    ('<', "%3C"),
    ('>', "%3E"),
    ('^', "%5E"),
    ('`', "%60"),
    ('{', "%7B"),
    ('|', "%7C"),
    ('}', "%7D"),
];

/// Connect's canonical request for one `method` and `url`:
/// `METHOD&path&sorted-query`. Valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest(String);

impl CanonicalRequest {
    /// Validates `method` (an HTTP token) and `url` (a request target:
    /// `/path[?query][#fragment]`, as sent on the wire, so spaces are `%20`,
    /// or `+` in the query) and builds the canonical request. Errors name
    /// the field, `method` or `url`.
    pub fn parse(method: &str, url: &str) -> Result<Self, InvalidField> {
        let method = canonical_method(method)?;
        check_url(url)?;
        // Node keeps the fragment out of both the path and the query.
        let (target, fragment) = match url.split_once('#') {
            Some((target, _)) => (target, true),
            None => (url, false),
        };
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        if path.contains('\\') {
            return Err(url_error(
                "a backslash in the path (Node's parser turns it into /); percent-encode it as %5C",
            ));
        }
        // Node's fast path (no `#`, no `@` before the query) keeps the path
        // as given; the slow one escapes a few characters first.
        let slow = fragment || path.contains('@');
        let path = canonical_path(path, slow);
        let query = canonical_query(query.unwrap_or(""))?;
        Ok(Self(format!("{method}&{path}&{query}")))
    }

    /// The canonical request, e.g. `GET&/rest/api&a=1&b=x%20y`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `qsh` claim: lower-case hex SHA-256 of the canonical request.
    pub fn qsh(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

fn method_error(message: impl Into<String>) -> InvalidField {
    InvalidField::new("method", message)
}

fn url_error(message: impl Into<String>) -> InvalidField {
    InvalidField::new("url", message)
}

/// An HTTP method token, upper-cased. ASCII only, so this upper-casing is
/// the same as JavaScript's `toUpperCase`.
fn canonical_method(method: &str) -> Result<String, InvalidField> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if method.is_empty() || method.len() > MAX_METHOD_LEN || !method.chars().all(tchar) {
        return Err(method_error(format!(
            "an HTTP method such as GET or POST: 1 to {MAX_METHOD_LEN} letters, digits or \
             !#$%&'*+-.^_`|~"
        )));
    }
    Ok(method.to_ascii_uppercase())
}

/// The shape checks that keep Node's parser on the paths modelled here.
fn check_url(url: &str) -> Result<(), InvalidField> {
    if url.len() > MAX_URL_BYTES {
        return Err(url_error(format!(
            "{} bytes is more than the {MAX_URL_BYTES} allowed",
            url.len()
        )));
    }
    if !url.starts_with('/') || url.starts_with("//") {
        return Err(url_error(
            "the request target as sent on the wire: a path starting with a single /, with an \
             optional ?query, e.g. /rest/api/2/issue?fields=summary",
        ));
    }
    // Node trims and re-escapes whitespace; a request line holds none.
    if url
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\u{feff}')
    {
        return Err(url_error(
            "whitespace or a control character; percent-encode it (a space is %20, or + in the \
             query)",
        ));
    }
    Ok(())
}

/// The path, not decoded: `&` encoded (it separates the parts of the
/// canonical request) and one trailing `/` dropped.
fn canonical_path(path: &str, slow: bool) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match AUTO_ESCAPED.iter().find(|(e, _)| *e == c) {
            Some((_, escaped)) if slow => out.push_str(escaped),
            _ if c == '&' => out.push_str("%26"),
            _ => out.push(c),
        }
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
}

/// `querystring.parse`, then Connect's sort and encoding: `jwt` left out,
/// keys sorted, a repeated key's values sorted and joined with `,`.
fn canonical_query(query: &str) -> Result<String, InvalidField> {
    let parts: Vec<&str> = if query.is_empty() {
        Vec::new()
    } else {
        query.split('&').collect()
    };
    if parts.len() > MAX_QUERY_PARTS {
        return Err(url_error(format!(
            "{} query parameters are more than the {MAX_QUERY_PARTS} allowed",
            parts.len()
        )));
    }
    let mut params: Vec<(String, Vec<String>)> = Vec::new();
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let (key, value) = (decode(key)?, decode(value)?);
        match params.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(value),
            None => params.push((key, vec![value])),
        }
    }
    // `__proto__` is dropped by atlassian-jwt itself, after lodash copied it.
    params.retain(|(k, _)| k != "jwt" && k != "__proto__");
    params.sort_by(|a, b| js_order(&a.0, &b.0));
    let encoded: Vec<String> = params
        .into_iter()
        .map(|(key, mut values)| {
            values.sort_by(|a, b| js_order(a, b));
            let values: Vec<String> = values.iter().map(|v| encode(v)).collect();
            format!("{}={}", encode(&key), values.join(","))
        })
        .collect();
    Ok(encoded.join("&"))
}

/// JavaScript's default `sort()` order: by UTF-16 code units, which differs
/// from Rust's code-point order for characters above U+FFFF.
fn js_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// `+` is a space, then percent-decoding. Node falls back to a lossy decoder
/// for a malformed `%` or bytes that are not UTF-8; asapd refuses those.
fn decode(component: &str) -> Result<String, InvalidField> {
    let bytes = component.as_bytes();
    let malformed = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err(url_error(format!(
            "the query part {component:?} has a % not followed by two hex digits; encode a \
             literal % as %25"
        )));
    }
    let spaced = component.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            url_error(format!(
                "the query part {component:?} percent-encodes bytes that are not UTF-8"
            ))
        })
}

fn encode(value: &str) -> String {
    utf8_percent_encode(value, NOT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(method: &str, url: &str) -> String {
        CanonicalRequest::parse(method, url)
            .unwrap()
            .as_str()
            .to_owned()
    }

    #[test]
    fn method_is_upper_cased_and_the_jwt_parameter_left_out() {
        let c = CanonicalRequest::parse(
            "get",
            "/rest/api/2/project?expand=description&jwt=ignored&a=b&JWT=kept",
        )
        .unwrap();
        assert_eq!(
            c.as_str(),
            "GET&/rest/api/2/project&JWT=kept&a=b&expand=description"
        );
    }

    #[test]
    fn query_is_sorted_decoded_and_re_encoded() {
        assert_eq!(canonical("GET", "/a?b=2&a=1"), "GET&/a&a=1&b=2");
        assert_eq!(canonical("GET", "/a?x=2&x=1&x=10"), "GET&/a&x=1,10,2");
        assert_eq!(canonical("GET", "/a?q=a+b%20c"), "GET&/a&q=a%20b%20c");
        assert_eq!(
            canonical("GET", "/a?q=%2B*!'()"),
            "GET&/a&q=%2B%2A%21%27%28%29"
        );
        assert_eq!(canonical("GET", "/a?e=&f&=g"), "GET&/a&=g&e=&f=");
        assert_eq!(
            canonical("GET", "/a?q=%C3%BC&r=ü"),
            "GET&/a&q=%C3%BC&r=%C3%BC"
        );
        assert_eq!(canonical("GET", "/a?&&x=1&"), "GET&/a&x=1");
        assert_eq!(canonical("GET", "/a?__proto__=1&k=a=b"), "GET&/a&k=a%3Db");
    }

    #[test]
    fn path_keeps_its_encoding_loses_a_trailing_slash_and_escapes_ampersands() {
        assert_eq!(canonical("post", "/"), "POST&/&");
        assert_eq!(canonical("GET", "/a/"), "GET&/a&");
        assert_eq!(canonical("GET", "/a//"), "GET&/a/&");
        assert_eq!(canonical("GET", "/a&b/%7e?"), "GET&/a%26b/%7e&");
        assert_eq!(canonical("GET", "/ü/{x}"), "GET&/ü/{x}&");
        // `#` sends Node's parser the slow way, which escapes `{`.
        assert_eq!(canonical("GET", "/{x}?a=1#f?b=2"), "GET&/%7Bx%7D&a=1");
        assert_eq!(canonical("GET", "/u@h/'x'"), "GET&/u@h/%27x%27&");
    }

    #[test]
    fn keys_sort_by_utf16_code_units_like_javascript() {
        // By code point U+FF5E comes first; in UTF-16 U+1F600 does (its
        // first unit, 0xD83D, is below 0xFF5E). npm agrees with the latter.
        assert_eq!(
            canonical("GET", "/a?%F0%9F%98%80=1&%EF%BD%9E=2"),
            "GET&/a&%F0%9F%98%80=1&%EF%BD%9E=2"
        );
    }

    #[test]
    fn refuses_what_node_would_parse_loosely_naming_the_field() {
        for (method, url, field) in [
            ("", "/a", "method"),
            ("GE T", "/a", "method"),
            ("GÉT", "/a", "method"),
            ("GET", "", "url"),
            ("GET", "a/b", "url"),
            ("GET", "//host/a", "url"),
            ("GET", "https://host/a", "url"),
            ("GET", "/a b", "url"),
            ("GET", "/a\n", "url"),
            ("GET", "/a\\b", "url"),
            ("GET", "/a?q=100%", "url"),
            ("GET", "/a?q=%zz", "url"),
            ("GET", "/a?q=%FF", "url"),
            ("GET", "/a?q=%ED%A0%80", "url"),
        ] {
            let e = CanonicalRequest::parse(method, url).unwrap_err();
            assert_eq!(e.field, field, "{method} {url}");
        }
        let many = format!("/a?{}", "x=1&".repeat(MAX_QUERY_PARTS));
        assert_eq!(
            CanonicalRequest::parse("GET", &many).unwrap_err().field,
            "url"
        );
        let long = format!("/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(
            CanonicalRequest::parse("GET", &long).unwrap_err().field,
            "url"
        );
    }

    #[test]
    fn qsh_is_lower_case_hex_sha256() {
        // sha256("GET&/&") computed with coreutils' sha256sum.
        let c = CanonicalRequest::parse("GET", "/").unwrap();
        assert_eq!(c.as_str(), "GET&/&");
        assert_eq!(
            c.qsh(),
            "c88caad15a1c1a900b8ac08aa9686f4e8184539bea1deda36e2f649430df3239"
        );
    }
}
