//! Fetching an issuer's documents: HTTPS only, the system's roots plus the
//! issuer's own `ca_pem`, a time limit and a size limit, since the other
//! end is outside asapd's control.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{ACCEPT, CACHE_CONTROL};
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use crate::crypto::ca_pem::parse_ca_pem;
use crate::error_chain::Chain;

/// The system's trust anchors, read once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// The HTTP client of one issuer: it trusts the system's roots and, for
/// this issuer only, the certificates of `ca_pem`.
pub(super) fn client(ca_pem: Option<&str>, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(pem) = ca_pem {
        for cert in parse_ca_pem(pem).map_err(|m| format!("ca_pem {m}"))? {
            roots
                .add(cert)
                .map_err(|e| format!("ca_pem holds an unusable certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .https_only(true)
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("asapd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// A fetched document and its `Cache-Control` header.
pub(super) struct Fetched {
    pub body: Vec<u8>,
    pub cache_control: Option<String>,
}

/// `GET url`, expecting 200 and at most `max_bytes` of body. The error
/// says what went wrong in words an operator can act on.
pub(super) async fn get(
    client: &reqwest::Client,
    url: &str,
    max_bytes: usize,
) -> Result<Fetched, String> {
    let mut res = client
        .get(url)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", Chain(&e)))?;
    if res.status() != reqwest::StatusCode::OK {
        return Err(format!("GET {url} answered {}", res.status()));
    }
    if res.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(format!(
            "GET {url}: the document is larger than {max_bytes} bytes"
        ));
    }
    let cache_control = res
        .headers()
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {}", Chain(&e)))?
    {
        if body.len() + chunk.len() > max_bytes {
            return Err(format!(
                "GET {url}: the document is larger than {max_bytes} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        body,
        cache_control,
    })
}
