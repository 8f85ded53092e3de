//! Black-box: the admin gate and `If-None-Match`, on a spawned app.
//!
//! Every spelling of an admin path (percent-encoded letters, doubled
//! slashes, `.` and `..` segments, `%2F`) gets the admin API's 401, as the
//! plain path does. Paths go out as raw HTTP/1.1, since an HTTP client
//! library would tidy the dot segments away before sending.

use proptest::prelude::*;
use reqwest::{header, Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Fixture;

const ADMIN_PATHS: &[&str] = &[
    "/v1/admin",
    "/v1/admin/callers",
    "/v1/admin/callers/svc-a/keys",
    "/v1/admin/groups",
    "/v1/admin/audit",
    "/v1/admin/keys/a/b/revoke",
    "/v1/admin/settings/audit-retention",
];

/// `path` spelled with `choices`: letters and digits percent-encoded or
/// not, each `/` after the first as itself, `//`, `/./`, `/x/../` or `%2F`.
fn spell_path(path: &str, choices: &[u8]) -> String {
    let mut pick = choices.iter().copied().cycle();
    let mut out = String::new();
    for (i, c) in path.chars().enumerate() {
        let choice = pick.next().unwrap_or(0);
        match c {
            '/' if i > 0 => {
                out.push_str(["/", "/", "//", "/./", "/x/../", "%2F"][choice as usize % 6])
            }
            c if c.is_ascii_alphanumeric() && choice % 4 == 0 => {
                out.push_str(&format!("%{:02X}", c as u8))
            }
            c if c.is_ascii_alphanumeric() && choice % 4 == 1 => {
                out.push_str(&format!("%{:02x}", c as u8))
            }
            c => out.push(c),
        }
    }
    out
}

/// The status of `method path` sent as written.
async fn raw_status(address: &str, method: &str, path: &str) -> u16 {
    let host = address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let head = String::from_utf8_lossy(&answer);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

#[test]
fn every_spelling_of_an_admin_path_gets_the_admin_api_s_401() {
    let f = Fixture::new();
    let strategy = (
        prop::sample::select(ADMIN_PATHS),
        prop::sample::select(&["GET", "POST", "PUT", "PATCH", "DELETE"][..]),
        prop::collection::vec(any::<u8>(), 1..48),
    );
    f.check(strategy, |f, (path, method, choices)| {
        let spelled = spell_path(path, &choices);
        let status = f.rt.block_on(raw_status(&f.app.address, method, &spelled));
        prop_assert_eq!(status, 401, "{} {} (spelling of {})", method, spelled, path);
        Ok(())
    });
}

/// One entry of an `If-None-Match` list.
#[derive(Debug, Clone)]
enum Tag {
    Current,
    WeakCurrent,
    Any,
    /// An entity tag of visible characters (commas included, as RFC 9110's
    /// `etagc` allows), weak or not.
    Other(String, bool),
    /// Not an entity tag at all.
    Junk(String),
}

fn tag() -> impl Strategy<Value = Tag> {
    prop_oneof![
        1 => Just(Tag::Current),
        1 => Just(Tag::WeakCurrent),
        1 => Just(Tag::Any),
        4 => (prop_oneof!["[!#-~]{0,12}", "[a-c,* ]{0,6}"], any::<bool>())
            .prop_map(|(t, weak)| Tag::Other(t, weak)),
        2 => "[ -~]{0,12}".prop_map(Tag::Junk),
    ]
}

fn header_value(tags: &[Tag], etag: &str, separators: &[u8]) -> String {
    let mut sep = separators.iter().copied().cycle();
    let parts: Vec<String> = tags
        .iter()
        .map(|t| match t {
            Tag::Current => etag.to_owned(),
            Tag::WeakCurrent => format!("W/{etag}"),
            Tag::Any => "*".to_owned(),
            Tag::Other(t, weak) => format!("{}\"{t}\"", if *weak { "W/" } else { "" }),
            Tag::Junk(j) => j.clone(),
        })
        .collect();
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str([",", ", ", " ,\t", " , "][sep.next().unwrap_or(0) as usize % 4]);
        }
        out.push_str(part);
    }
    out
}

/// RFC 9110 §13.1.2: unchanged when the field is `*` or a list that holds
/// the current tag (weak comparison). `*` is valid only alone, so a list
/// that mixes it with tags is not a valid field and can be read either way.
fn model_unchanged(tags: &[Tag]) -> Option<bool> {
    let mut unchanged = false;
    for t in tags {
        match t {
            Tag::Any if tags.len() > 1 => return None,
            Tag::Current | Tag::WeakCurrent | Tag::Any => unchanged = true,
            Tag::Other(..) => {}
            // A list that is not one can be read either way.
            Tag::Junk(_) => return None,
        }
    }
    Some(unchanged)
}

#[test]
fn if_none_match_answers_304_exactly_for_a_list_naming_the_current_tag() {
    let f = Fixture::new();
    let (jwks_etag, key_path) = f.rt.block_on(async {
        let res = f
            .app
            .request(Method::GET, "/.well-known/jwks.json")
            .send()
            .await
            .unwrap();
        let etag = res.headers()[header::ETAG].to_str().unwrap().to_owned();
        let jwks: serde_json::Value = res.json().await.unwrap();
        (
            etag,
            format!("/v1/keys/{}", jwks["keys"][0]["kid"].as_str().unwrap()),
        )
    });
    let key_etag = f.rt.block_on(async {
        let res = f.app.request(Method::GET, &key_path).send().await.unwrap();
        res.headers()[header::ETAG].to_str().unwrap().to_owned()
    });
    let targets = [
        ("/.well-known/jwks.json".to_owned(), jwks_etag),
        (key_path, key_etag),
    ];
    let strategy = (
        0..2usize,
        prop::collection::vec(tag(), 1..5),
        prop::collection::vec(any::<u8>(), 4),
    );
    f.check(strategy, |f, (target, tags, separators)| {
        let (path, etag) = &targets[target];
        let value = header_value(&tags, etag, &separators);
        let res = f.rt.block_on(
            f.app
                .request(Method::GET, path)
                .header(header::IF_NONE_MATCH, &value)
                .send(),
        );
        let res = res.unwrap();
        let status = res.status();
        prop_assert!(
            status == StatusCode::OK || status == StatusCode::NOT_MODIFIED,
            "{status} for {value:?}"
        );
        prop_assert_eq!(res.headers()[header::ETAG].to_str().unwrap(), etag.as_str());
        if let Some(unchanged) = model_unchanged(&tags) {
            prop_assert_eq!(
                status == StatusCode::NOT_MODIFIED,
                unchanged,
                "If-None-Match: {}",
                value
            );
        }
        Ok(())
    });
}

/// Found by the property above: the one entity tag `",*,"` was read as
/// the list `"`, `*`, `"` and so matched everything.
#[test]
fn a_comma_or_star_inside_an_entity_tag_is_part_of_it() {
    let f = Fixture::new();
    f.rt.block_on(async {
        for (value, expected) in [
            ("\",*,\"", StatusCode::OK),
            ("W/\"a, *\", \"b\"", StatusCode::OK),
            ("*", StatusCode::NOT_MODIFIED),
        ] {
            let res = f
                .app
                .request(Method::GET, "/.well-known/jwks.json")
                .header(header::IF_NONE_MATCH, value)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), expected, "If-None-Match: {value}");
        }
    });
}
