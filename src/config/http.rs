//! `[http]`: request limits and client address resolution.

use serde::{Deserialize, Serialize};

use crate::domain::group::Cidr;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Peers whose forwarding header is believed (load balancers).
    pub trusted_proxies: Vec<Cidr>,
    /// Header carrying the client address when the peer is trusted.
    pub forwarded_header: String,
    /// Seconds a client has to send a whole request body once its head
    /// arrived; a slower one gets 408 and the connection is closed, so
    /// trickled bodies cannot hold connections open.
    pub body_timeout_secs: u64,
    /// How long a client has to send a request head before a 408.
    pub request_head_timeout_ms: u64,
    /// The URL clients reach asapd at (`https://asapd.example.com`), as
    /// the server metadata publishes it: the token endpoint is this plus
    /// `/oauth2/token`, and client assertions may name either as `aud`.
    /// Unset: the metadata is built from each request's scheme and Host,
    /// and client assertions must name `tokens.audience` instead.
    pub public_url: Option<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            workers: 0,
            trusted_proxies: Vec::new(),
            forwarded_header: "X-Forwarded-For".into(),
            body_timeout_secs: 10,
            request_head_timeout_ms: 5000,
            public_url: None,
        }
    }
}

impl HttpSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(format!(
                "http.max_body_bytes must be between 1024 and 16777216, got {}",
                self.max_body_bytes
            ));
        }
        if !(1..=300).contains(&self.body_timeout_secs) {
            return Err(format!(
                "http.body_timeout_secs must be between 1 and 300, got {}",
                self.body_timeout_secs
            ));
        }
        // Down to 100 ms for tests; up to 10 minutes, past which a slow
        // client only holds a connection.
        if !(100..=600_000).contains(&self.request_head_timeout_ms) {
            return Err(format!(
                "http.request_head_timeout_ms must be between 100 and 600000, got {}",
                self.request_head_timeout_ms
            ));
        }
        if let Some(public) = &self.public_url {
            check_public_url(public)?;
        }
        actix_web::http::header::HeaderName::try_from(self.forwarded_header.as_str()).map_err(
            |_| {
                format!(
                    "http.forwarded_header {:?} is not a valid header name",
                    self.forwarded_header
                )
            },
        )?;
        Ok(())
    }
}

impl HttpSettings {
    /// `public_url` without a trailing `/`.
    pub fn public_base(&self) -> Option<&str> {
        self.public_url.as_deref().map(|u| u.trim_end_matches('/'))
    }
}

fn check_public_url(public: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "http.public_url {public:?} {why}; set it to the URL clients reach asapd at, \
             such as https://asapd.example.com"
        ))
    };
    match url::Url::parse(public) {
        Err(_) => bad("is not a URL"),
        Ok(u) if !matches!(u.scheme(), "https" | "http") => bad("is not http(s)"),
        Ok(u) if u.query().is_some() || u.fragment().is_some() => bad("has a query or fragment"),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => bad("has no host"),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_head_timeout_is_bounded() {
        let with = |ms| HttpSettings {
            request_head_timeout_ms: ms,
            ..HttpSettings::default()
        };
        assert_eq!(HttpSettings::default().request_head_timeout_ms, 5000);
        assert!(with(100).validate().is_ok());
        assert!(with(600_000).validate().is_ok());
        for bad in [0, 99, 600_001] {
            let e = with(bad).validate().unwrap_err();
            assert!(e.contains("http.request_head_timeout_ms"), "{e}");
        }
    }

    #[test]
    fn the_public_url_is_an_http_url_without_query() {
        let with = |u: &str| HttpSettings {
            public_url: Some(u.into()),
            ..HttpSettings::default()
        };
        assert!(with("https://asapd.example.com/").validate().is_ok());
        assert_eq!(with("https://a.b/x/").public_base(), Some("https://a.b/x"));
        for bad in ["asapd", "ftp://a", "https://a/?x=1", "https://a/#f"] {
            let e = with(bad).validate().unwrap_err();
            assert!(e.contains("http.public_url"), "{e}");
        }
    }
}
