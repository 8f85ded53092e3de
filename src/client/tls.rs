//! TLS of the client commands: the system's roots plus `--cacert`, checked
//! by webpki, and one thing more that curl and Python `requests` accept:
//! a self-signed certificate given with `--cacert` that the server presents
//! as its own, even though it says CA:TRUE (`openssl req -x509 -newkey …`
//! writes such certificates). webpki refuses a CA certificate as an end
//! entity (`CaUsedAsEndEntity`); OpenSSL accepts it when it is a trust
//! anchor itself, so every client command must too.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The rustls configuration of every client command: the system's roots,
/// and the certificates of `cacert` (PEM) if given.
pub fn client_config(cacert: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    // An unreadable system store is not fatal: --cacert may be all we need.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let extra = match cacert {
        Some(path) => read_certificates(path)?,
        None => Vec::new(),
    };
    for cert in &extra {
        roots
            .add(cert.clone())
            .context("--cacert holds a certificate that cannot be a trust anchor")?;
    }
    // A machine without a CA store (the container image) still probes
    // plain-HTTP URLs; HTTPS is then refused at the handshake.
    let webpki = match roots.is_empty() {
        true => None,
        false => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .context("building the certificate verifier")?,
        ),
    };
    let verifier = Verifier {
        webpki,
        anchors_as_servers: extra,
        algorithms: provider.signature_verification_algorithms,
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("reading the CA certificate {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// webpki's verdict, except that a presented certificate byte-identical to
/// one given with `--cacert` is accepted when webpki's only objection is
/// that it is a CA. webpki checks the validity period before the basic
/// constraints, so that objection means the dates passed; the name is
/// checked here, and the handshake signature, as always, with the
/// certificate's key.
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    anchors_as_servers: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Err(CertificateError::UnknownIssuer.into());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(e) if is_ca_used_as_end_entity(&e) && self.is_given_anchor(end_entity) => {
                let cert = ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&cert, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl Verifier {
    fn is_given_anchor(&self, presented: &CertificateDer<'_>) -> bool {
        self.anchors_as_servers
            .iter()
            .any(|c| c.as_ref() == presented.as_ref())
    }
}

fn is_ca_used_as_end_entity(e: &rustls::Error) -> bool {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}
