//! Client helpers of the `asapd` command: `asapd token` asks a running
//! asapd for a token, `asapd verify` checks a token the way an ASAP
//! verifier does, against a key repository URL. They talk HTTP(S) like any
//! other client and share nothing with the server but the domain rules.

pub mod token;
pub mod verify;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// An HTTP client that trusts the system's roots and, if given, `cacert`
/// (the dev certificate of `serve --dev`, a private CA). Redirects are not
/// followed: ASAP verifiers do not follow them either.
pub fn http_client(cacert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a crypto provider of its own: use the one
    // the server already links (aws-lc-rs) instead of pulling in ring.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("asapd/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = cacert {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading the CA certificate {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().context("building the HTTP client")
}
