//! Private certificate authorities given as PEM (a trusted issuer's
//! `ca_pem`, such as a Kubernetes cluster's own CA): parsed and checked
//! once, when an admin sets them.

use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::CertificateDer;

/// Largest `ca_pem` accepted: a bundle of a few dozen certificates.
pub const MAX_CA_PEM_BYTES: usize = 64 * 1024;

/// The certificates of `text`: only `CERTIFICATE` sections, at least one,
/// each usable as a trust anchor. The message says what is wrong.
pub fn parse_ca_pem(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if text.len() > MAX_CA_PEM_BYTES {
        return Err(format!("is longer than {MAX_CA_PEM_BYTES} bytes"));
    }
    let mut certificates = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes()) {
        let (kind, der) = section.map_err(|e| format!("is not valid PEM: {e}"))?;
        if kind != SectionKind::Certificate {
            return Err(format!(
                "holds a {kind:?} section; only CERTIFICATE sections (the CA's certificates) \
                 belong here"
            ));
        }
        let cert = CertificateDer::from(der);
        webpki::anchor_from_trusted_cert(&cert)
            .map_err(|e| format!("holds a certificate that cannot be a trust anchor: {e}"))?;
        certificates.push(cert);
    }
    if certificates.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_certificates_are_accepted() {
        let cert = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        assert_eq!(parse_ca_pem(&cert.cert.pem()).unwrap().len(), 1);
        assert!(parse_ca_pem("").is_err());
        assert!(parse_ca_pem("hello").is_err());
        assert!(parse_ca_pem(&cert.signing_key.serialize_pem()).is_err());
        let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(parse_ca_pem(junk).is_err());
    }
}
