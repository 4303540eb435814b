//! Import of a CA-signed certificate with its chain, as the customer brings it back from the CSR.
//!
//! Accepted only when every server could serve it at once and every client could check it: it
//! covers the domain, it is for the domain's own key, it is valid now and each certificate of the
//! chain is signed by the next. Anything else is refused with the reason (see
//! [`CertificateError`]); nothing is stored then. Parsing is x509-parser's.

use base64::Engine;
use x509_parser::pem::Pem;
use x509_parser::prelude::*;

use super::keys::DomainKey;
use super::{dns_names, human_time, names, CertificateError, CertificateInfo, CertificateNames, Fingerprint, Source};
use crate::{Hosting, Result, Timestamp};

/// An accepted certificate, ready to store.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub cert_pem: String,
    pub chain_pem: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub sha256_hex: String,
}

/// PEM text of one DER block (64-character lines, as RFC 7468 writes them).
pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn subject_of(c: &X509Certificate<'_>) -> String {
    c.subject().to_string()
}

/// Checks `text` (PEM: the certificate first, then its chain) against the domain and its key.
pub(crate) fn check(
    names: &CertificateNames,
    key: &DomainKey,
    text: &str,
    now: Timestamp,
) -> Result<Accepted, CertificateError> {
    let mut blocks = Vec::new();
    for block in Pem::iter_from_buffer(text.as_bytes()) {
        let block = block.map_err(|e| CertificateError::Garbage(format!("{e:?}")))?;
        if block.label.contains("PRIVATE KEY") {
            return Err(CertificateError::ContainsPrivateKey);
        }
        if block.label != "CERTIFICATE" {
            return Err(CertificateError::Garbage(format!("unexpected {:?} block", block.label)));
        }
        blocks.push(block.contents);
    }
    if blocks.is_empty() {
        return Err(if text.contains("-----BEGIN") {
            CertificateError::Empty
        } else {
            CertificateError::Garbage("no -----BEGIN CERTIFICATE----- block found".into())
        });
    }
    let mut certs = Vec::with_capacity(blocks.len());
    for (i, der) in blocks.iter().enumerate() {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| CertificateError::Garbage(format!("certificate {} of the file: {e}", i + 1)))?;
        if !rest.is_empty() {
            return Err(CertificateError::Garbage(format!("certificate {} of the file has trailing bytes", i + 1)));
        }
        certs.push(cert);
    }
    let leaf = &certs[0];
    let domain = names.domain.as_str();
    let dns = dns_names(leaf);
    if !dns.iter().any(|p| names::name_covers(p, domain)) {
        return Err(CertificateError::OtherDomain { domain: domain.to_string(), names: dns });
    }
    let pair = key.key_pair()?;
    if leaf.public_key().subject_public_key.data.as_ref() != pair.public_key_raw() {
        return Err(CertificateError::OtherKey { domain: domain.to_string() });
    }
    let (not_before, not_after) = (leaf.validity().not_before.timestamp(), leaf.validity().not_after.timestamp());
    if now < not_before {
        return Err(CertificateError::NotYetValid(human_time(not_before)));
    }
    if now > not_after {
        return Err(CertificateError::Expired(human_time(not_after)));
    }
    for (i, pair) in certs.windows(2).enumerate() {
        let (child, parent) = (&pair[0], &pair[1]);
        let broken = |why: String| {
            CertificateError::BrokenChain(format!(
                "certificate {} ({}) {why} certificate {} ({})",
                i + 1,
                subject_of(child),
                i + 2,
                subject_of(parent)
            ))
        };
        if child.issuer().as_raw() != parent.subject().as_raw() {
            return Err(broken("was not issued by".into()));
        }
        if child.verify_signature(Some(parent.public_key())).is_err() {
            return Err(broken("is not signed by the key of".into()));
        }
        let parent_end = parent.validity().not_after.timestamp();
        if now > parent_end || now < parent.validity().not_before.timestamp() {
            return Err(CertificateError::BrokenChain(format!(
                "certificate {} ({}) of the chain is not valid now (it ends {})",
                i + 2,
                subject_of(parent),
                human_time(parent_end)
            )));
        }
    }
    let chain_pem: String = blocks[1..].iter().map(|d| to_pem("CERTIFICATE", d)).collect();
    Ok(Accepted {
        cert_pem: to_pem("CERTIFICATE", &blocks[0]),
        chain_pem,
        not_before,
        not_after,
        sha256_hex: Fingerprint::of_der(&blocks[0]).sha256_hex,
    })
}

impl Hosting {
    /// Serves the CA-signed certificate in `pem` (the certificate, then its chain) for `domain`,
    /// once it passes every check; the result says which service names it covers and which not.
    pub fn import_certificate(&self, domain: &str, pem: &str) -> Result<CertificateInfo> {
        let mut stored = self.stored_certificate(domain)?;
        let names = self.certificate_names(domain)?;
        let accepted = check(&names, &stored.key, pem, self.now())?;
        let key_checked = stored.key.clone();
        stored.source = Source::Imported;
        stored.cert_pem = accepted.cert_pem;
        stored.chain_pem = accepted.chain_pem;
        stored.not_before = accepted.not_before;
        stored.not_after = accepted.not_after;
        stored.sha256_hex = accepted.sha256_hex;
        stored.updated_at = self.now();
        self.store().write(|tx| {
            // A `generate` in another process since the check would have replaced the key.
            match crate::store::certificates::select(tx, &stored.domain)? {
                Some(now) if now.key == key_checked => crate::store::certificates::upsert(tx, &stored),
                _ => Err(CertificateError::OtherKey { domain: stored.domain.clone() }.into()),
            }
        })?;
        self.describe(&stored, &names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::{GenerateOptions, KeyKind};
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

    const NOW: Timestamp = 1_800_000_000;

    fn hosting() -> Hosting {
        let h = Hosting::open_in_memory().unwrap().with_clock(crate::ManualClock::new(NOW));
        h.add_domain("example.org").unwrap();
        h.generate_certificate("example.org", GenerateOptions::default()).unwrap();
        h
    }

    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.not_before = ::time::OffsetDateTime::from_unix_timestamp(NOW - 86_400).unwrap();
        p.not_after = ::time::OffsetDateTime::from_unix_timestamp(NOW + 3650 * 86_400).unwrap();
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    }

    fn intermediate(name: &str, root: &CertifiedIssuer<'static, KeyPair>) -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.not_before = ::time::OffsetDateTime::from_unix_timestamp(NOW - 86_400).unwrap();
        p.not_after = ::time::OffsetDateTime::from_unix_timestamp(NOW + 3650 * 86_400).unwrap();
        CertifiedIssuer::signed_by(p, KeyPair::generate().unwrap(), root).unwrap()
    }

    /// A leaf for `names` on `key`, valid between the two offsets from NOW, signed by `issuer`.
    fn leaf(names: &[&str], key: &KeyPair, from: i64, to: i64, issuer: &CertifiedIssuer<'static, KeyPair>) -> String {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.not_before = ::time::OffsetDateTime::from_unix_timestamp(NOW + from).unwrap();
        p.not_after = ::time::OffsetDateTime::from_unix_timestamp(NOW + to).unwrap();
        p.signed_by(key, issuer).unwrap().pem()
    }

    fn domain_key(h: &Hosting) -> KeyPair {
        h.stored_certificate("example.org").unwrap().key.key_pair().unwrap()
    }

    fn refusal(h: &Hosting, pem: &str) -> CertificateError {
        let before = h.certificate("example.org").unwrap();
        match h.import_certificate("example.org", pem) {
            Err(crate::Error::Certificate(e)) => {
                assert_eq!(h.certificate("example.org").unwrap(), before, "a refusal stored something");
                e
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_ca_signed_chain_imports_and_says_what_it_covers() {
        let h = hosting();
        let root = ca("Test Root");
        let inter = intermediate("Test Intermediate", &root);
        let key = domain_key(&h);
        let cert = leaf(&["example.org", "conference.example.org"], &key, -60, 90 * 86_400, &inter);
        let info = h.import_certificate("example.org", &format!("{cert}{}", inter.pem())).unwrap();
        assert_eq!(info.source, Source::Imported);
        assert_eq!(info.chain_length, 1);
        assert_eq!(info.days_left, 90);
        assert_eq!(info.services_covered, ["conference.example.org"]);
        assert_eq!(info.services_not_covered, ["proxy.example.org", "share.example.org"]);
        assert_eq!(h.certificate("example.org").unwrap(), info);
        // What the servers get: the certificate first, then the chain.
        let served = h.certificate_pem("example.org").unwrap();
        assert_eq!(served.matches("BEGIN CERTIFICATE").count(), 2);
        // A wildcard covers every service name.
        let wild = leaf(&["example.org", "*.example.org"], &key, -60, 86_400 * 10, &root);
        let info = h.import_certificate("example.org", &wild).unwrap();
        assert!(info.services_not_covered.is_empty());
        assert_eq!(info.key, KeyKind::Ecdsa);
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let h = hosting();
        let root = ca("Test Root");
        let inter = intermediate("Test Intermediate", &root);
        let other_root = ca("Other Root");
        let key = domain_key(&h);
        let ok = |from, to| leaf(&["example.org"], &key, from, to, &inter);

        let e = refusal(&h, &leaf(&["other.org", "*.example.org"], &key, -60, 86_400, &root));
        assert!(matches!(&e, CertificateError::OtherDomain { names, .. } if names == &["other.org", "*.example.org"]));
        assert!(e.to_string().contains("covers other.org, *.example.org, not example.org"), "{e}");

        let e = refusal(&h, &leaf(&["example.org"], &KeyPair::generate().unwrap(), -60, 86_400, &root));
        assert!(matches!(e, CertificateError::OtherKey { .. }), "{e}");

        let e = refusal(&h, &ok(-10 * 86_400, -86_400));
        assert!(matches!(&e, CertificateError::Expired(_)), "{e}");
        assert!(e.to_string().contains("expired on 2027-01-"), "{e}");

        let e = refusal(&h, &ok(86_400, 10 * 86_400));
        assert!(matches!(e, CertificateError::NotYetValid(_)), "{e}");

        // The intermediate given is not the one that signed: issuer names differ.
        let other_inter = intermediate("Other Intermediate", &other_root);
        let e = refusal(&h, &format!("{}{}", ok(-60, 86_400), other_inter.pem()));
        assert!(matches!(&e, CertificateError::BrokenChain(m) if m.contains("was not issued by")), "{e}");
        // Same name, another key: the signature does not verify.
        let impostor = intermediate("Test Intermediate", &other_root);
        let e = refusal(&h, &format!("{}{}", ok(-60, 86_400), impostor.pem()));
        assert!(matches!(&e, CertificateError::BrokenChain(m) if m.contains("is not signed by")), "{e}");

        let e = refusal(&h, "hello, this is not a certificate");
        assert!(matches!(e, CertificateError::Garbage(_)), "{e}");
        let e = refusal(&h, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert!(matches!(e, CertificateError::Garbage(_)), "{e}");
        let e = refusal(&h, &format!("{}{}", ok(-60, 86_400), key.serialize_pem()));
        assert!(matches!(e, CertificateError::ContainsPrivateKey), "{e}");
        assert_eq!(crate::Error::from(e).code(), "invalid-argument");
    }

    #[test]
    fn a_new_key_since_the_csr_is_refused() {
        let h = hosting();
        let root = ca("Test Root");
        let old_key = domain_key(&h);
        h.generate_certificate("example.org", GenerateOptions::default()).unwrap();
        let e = refusal(&h, &leaf(&["example.org"], &old_key, -60, 86_400, &root));
        assert!(matches!(e, CertificateError::OtherKey { .. }), "{e}");
    }
}
