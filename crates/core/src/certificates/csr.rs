//! A certificate signing request from the domain's own key, for the customer to have signed by
//! a CA and upload back (`import`). It asks for the same names as the self-signed certificate.

use super::self_signed::params_for;
use super::CertificateError;
use crate::{Hosting, Result};

impl Hosting {
    /// The CSR (PEM) for `domain` and its service names, signed with the domain's key. The domain
    /// needs a key first (`generate_certificate`), so that the certificate served until the CA's
    /// arrives and the CA's share the key, and nothing changes for clients but the issuer.
    pub fn certificate_csr(&self, domain: &str) -> Result<String> {
        let stored = self.stored_certificate(domain)?;
        let names = self.certificate_names(domain)?;
        let pair = stored.key.key_pair()?;
        let csr = params_for(&names, stored.key.kind)
            .serialize_request(&pair)
            .map_err(|e| CertificateError::Internal(format!("CSR signing failed: {e}")))?;
        Ok(csr.pem().map_err(|e| CertificateError::Internal(format!("CSR encoding failed: {e}")))?)
    }
}

#[cfg(test)]
mod tests {
    use crate::certificates::GenerateOptions;
    use crate::Hosting;
    use x509_parser::prelude::*;

    #[test]
    fn csr_carries_the_domain_key_and_names() {
        let h = Hosting::open_in_memory().unwrap();
        h.add_domain("example.org").unwrap();
        assert_eq!(h.certificate_csr("example.org").unwrap_err().code(), "not-found");
        h.generate_certificate("example.org", GenerateOptions::default()).unwrap();
        let pem = h.certificate_csr("example.org").unwrap();
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        assert_eq!(p.label, "CERTIFICATE REQUEST");
        let (_, csr) = X509CertificationRequest::from_der(&p.contents).unwrap();
        csr.verify_signature().unwrap();
        let cert_der = crate::certificates::first_der(&h.certificate_pem("example.org").unwrap()).unwrap();
        let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
        assert_eq!(csr.certification_request_info.subject_pki.raw, cert.public_key().raw);
        let mut dns = Vec::new();
        for ext in csr.requested_extensions().unwrap() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for n in &san.general_names {
                    if let GeneralName::DNSName(d) = n {
                        dns.push(d.to_string());
                    }
                }
            }
        }
        assert_eq!(dns, ["example.org", "conference.example.org", "proxy.example.org", "share.example.org"]);
    }
}
