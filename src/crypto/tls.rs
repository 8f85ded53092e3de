//! TLS: loading a certificate chain and key, and the `--dev` self-signed
//! certificate that lets HTTPS-only ASAP verifiers talk to a local asapd.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Writes a self-signed certificate for localhost and 127.0.0.1 unless one
/// is already there, so clients can keep trusting it across restarts.
pub fn ensure_dev_certificate(cert_path: &Path, key_path: &Path) -> anyhow::Result<bool> {
    if cert_path.exists() && key_path.exists() {
        return Ok(false);
    }
    // Half a pair (one file deleted by hand) is useless: make a new pair.
    // The old key is only the dev certificate's, never a signing key.
    for stale in [cert_path, key_path] {
        match std::fs::remove_file(stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", stale.display()));
            }
            _ => {}
        }
    }
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified =
        rcgen::generate_simple_self_signed(names).context("generating the dev TLS certificate")?;
    crate::fsutil::write_private(key_path, certified.signing_key.serialize_pem().as_bytes())
        .with_context(|| format!("writing {}", key_path.display()))?;
    std::fs::write(cert_path, certified.cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    Ok(true)
}

/// A rustls server config from PEM files.
pub fn server_config(cert_path: &Path, key_path: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("reading TLS certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("reading TLS private key {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not form a usable pair")
}
