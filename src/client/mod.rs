//! Client helpers of the `asapd` command: `asapd token` asks a running
//! asapd for a token, `asapd verify` checks a token the way an ASAP
//! verifier does, against a key repository URL. They talk HTTP(S) like any
//! other client and share nothing with the server but the domain rules.

pub mod admin;
pub mod admin_cli;
pub mod health;
mod tail;
mod tls;
pub mod token;
pub mod verify;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// Makes aws-lc-rs the process's rustls provider, once. reqwest is built
/// without a provider of its own (it would bring ring next to the
/// server's aws-lc-rs) and refuses to build a client until one is set.
pub fn install_crypto_provider() {
    // Err only means one is installed already, which is as good.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// An HTTP client that trusts the system's roots and, if given, `cacert`
/// (the dev certificate of `serve --dev`, a private CA, or a self-signed
/// server certificate: see `tls`). Redirects are not followed: ASAP
/// verifiers do not follow them either.
pub fn http_client(cacert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("asapd/", env!("CARGO_PKG_VERSION")))
        .use_preconfigured_tls(tls::client_config(cacert)?)
        .build()
        .context("building the HTTP client")
}

/// A failed request as the user should read it: `what` (e.g. `GET url`),
/// then a fix when the TLS handshake failed, then the whole cause. An
/// untrusted certificate is what a first run against `serve --dev` hits.
pub(crate) fn request_failed(err: reqwest::Error, what: String) -> anyhow::Error {
    let hint = match tls_failure(&err) {
        Some(rustls::Error::InvalidCertificate(_)) => Some(
            "the server's TLS certificate is not trusted; pass --cacert FILE with the \
             certificate or CA that signed it (serve --dev: <data-dir>/dev-cert.pem)",
        ),
        Some(_) => Some(
            "the TLS handshake failed; for a server with a private CA pass --cacert FILE, \
             and use http:// for a server that speaks plain HTTP",
        ),
        None => None,
    };
    let err = anyhow::Error::new(err);
    match hint {
        Some(hint) => err.context(format!("{what}: {hint}")),
        None => err.context(what),
    }
}

/// The rustls error somewhere in `err`'s causes. tokio-rustls wraps it in
/// an `io::Error` (hyper-util in another), and `io::Error::source()` skips
/// what it wraps, hence the walk through `get_ref`.
fn tls_failure<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}
