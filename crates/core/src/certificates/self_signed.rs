//! A new key and a self-signed certificate for a domain and its service names.
//!
//! Validity is explicit (rcgen's default runs from 1975 to 4096, which no client should be asked
//! to trust): from an hour before now (a client whose clock is a little behind still accepts it)
//! to `days` days after, 365 by default like `prosodyctl cert generate`.

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose, SerialNumber};
use serde::Serialize;

use super::keys::{DomainKey, KeyKind};
use super::{CertificateError, CertificateInfo, CertificateNames, Fingerprint, Source, StoredCertificate};
use crate::{Hosting, Result, Timestamp};

pub const DEFAULT_DAYS: i64 = 365;
/// Ten years: longer is a certificate nobody will remember to replace.
pub const MAX_DAYS: i64 = 3650;
/// How far before "now" a new certificate starts, for clients whose clock is behind.
const BACKDATE: i64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GenerateOptions {
    pub key: KeyKind,
    pub days: i64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { key: KeyKind::Ecdsa, days: DEFAULT_DAYS }
    }
}

pub(crate) fn time_of(t: Timestamp) -> Result<time::OffsetDateTime, CertificateError> {
    time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| CertificateError::Internal(format!("time {t}: {e}")))
}

/// The parameters shared by the self-signed certificate and the CSR: subject CN (Prosody 0.12
/// still falls back to it), the names, TLS server and client use (servers present the same
/// certificate on s2s connections, where it authenticates them as clients).
pub(crate) fn params_for(names: &CertificateNames, kind: KeyKind) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names.domain.as_str());
    params.distinguished_name = dn;
    params.custom_extensions.push(names.subject_alt_name());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = match kind {
        KeyKind::Ecdsa => vec![KeyUsagePurpose::DigitalSignature],
        KeyKind::Rsa => vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment],
    };
    params
}

/// Makes a self-signed certificate for `names` with `key`, valid from `now - 1h` for `days`.
pub(crate) fn make(
    names: &CertificateNames,
    key: &DomainKey,
    days: i64,
    now: Timestamp,
) -> Result<(String, Timestamp, Timestamp), CertificateError> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(CertificateError::InvalidDays(days));
    }
    let mut params = params_for(names, key.kind);
    let (not_before, not_after) = (now - BACKDATE, now + days * 86_400);
    params.not_before = time_of(not_before)?;
    params.not_after = time_of(not_after)?;
    // A random positive serial: rcgen's default derives it from the key, so two certificates of
    // one key would share a serial, which clients caching by issuer and serial trip over.
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| CertificateError::Internal(format!("no randomness: {e}")))?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let pair = key.key_pair()?;
    let cert = params.self_signed(&pair).map_err(|e| CertificateError::Internal(format!("signing failed: {e}")))?;
    Ok((cert.pem(), not_before, not_after))
}

impl Hosting {
    /// Makes a new key and a self-signed certificate for `domain` and its service names, and
    /// serves it from now on (replacing any earlier key and certificate: a CSR made before no
    /// longer fits).
    pub fn generate_certificate(&self, domain: &str, options: GenerateOptions) -> Result<CertificateInfo> {
        let names = self.certificate_names(domain)?;
        let now = self.now();
        let stored = new_self_signed(&names, options, now)?;
        self.store().write(|tx| {
            // The domain may have been removed meanwhile; the foreign key would refuse the row.
            crate::store::certificates::upsert(tx, &stored)
        })?;
        self.describe_at(&stored, &names, now)
    }
}

/// A new key and a self-signed certificate for `names`, ready to store. Key generation (RSA
/// takes a while) happens here, before any store lock is taken.
pub(crate) fn new_self_signed(
    names: &CertificateNames,
    options: GenerateOptions,
    now: Timestamp,
) -> Result<StoredCertificate> {
    if !(1..=MAX_DAYS).contains(&options.days) {
        return Err(CertificateError::InvalidDays(options.days).into());
    }
    let key = DomainKey::generate(options.key)?;
    let (cert_pem, not_before, not_after) = make(names, &key, options.days, now)?;
    let der = super::first_der(&cert_pem)?;
    Ok(StoredCertificate {
        domain: names.domain.to_string(),
        key,
        source: Source::SelfSigned,
        cert_pem,
        chain_pem: String::new(),
        not_before,
        not_after,
        sha256_hex: Fingerprint::of_der(&der).sha256_hex,
        updated_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::names::{OID_SRV_NAME, OID_XMPP_ADDR};
    use x509_parser::prelude::*;

    fn hosting() -> Hosting {
        let h = Hosting::open_in_memory().unwrap().with_clock(crate::ManualClock::new(1_800_000_000));
        h.add_domain("example.org").unwrap();
        h
    }

    /// The otherName values of a certificate, decoded with der-parser (the bytes x509-parser
    /// hands back still carry the `[0] EXPLICIT` wrapper).
    fn other_names(cert: &X509Certificate<'_>, oid: &[u64]) -> Vec<(u32, String)> {
        let want = x509_parser::der_parser::oid::Oid::from(oid).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let mut out = Vec::new();
        for n in &san.value.general_names {
            if let GeneralName::OtherName(o, bytes) = n {
                if *o == want {
                    let (_, any) = x509_parser::der_parser::asn1_rs::Any::from_der(bytes).unwrap();
                    let (_, inner) = x509_parser::der_parser::asn1_rs::Any::from_der(any.data).unwrap();
                    out.push((inner.tag().0, String::from_utf8(inner.data.to_vec()).unwrap()));
                }
            }
        }
        out
    }

    #[test]
    fn self_signed_carries_names_validity_and_fingerprint() {
        let h = hosting();
        let info = h.generate_certificate("example.org", GenerateOptions::default()).unwrap();
        assert_eq!(info.source, Source::SelfSigned);
        assert_eq!(info.key, KeyKind::Ecdsa);
        assert_eq!(info.names, ["example.org", "conference.example.org", "proxy.example.org", "share.example.org"]);
        assert!(info.services_not_covered.is_empty());
        assert_eq!(info.not_after - info.not_before, 365 * 86_400 + 3600);
        assert_eq!(info.days_left, 365);

        let pem = h.certificate_pem("example.org").unwrap();
        let der = crate::certificates::first_der(&pem).unwrap();
        assert_eq!(info.fingerprint, Fingerprint::of_der(&der));
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.subject().iter_common_name().next().unwrap().as_str().unwrap(), "example.org");
        assert_eq!(cert.validity().not_after.timestamp(), 1_800_000_000 + 365 * 86_400);
        assert!(cert.verify_signature(None).is_ok());
        // XmppAddr: UTF8String (tag 12); SRV-ID: IA5String (tag 22).
        let xmpp = other_names(&cert, OID_XMPP_ADDR);
        assert!(xmpp.contains(&(12, "example.org".into())), "{xmpp:?}");
        assert!(xmpp.contains(&(12, "conference.example.org".into())));
        let srv = other_names(&cert, OID_SRV_NAME);
        assert!(srv.contains(&(22, "_xmpp-client.example.org".into())), "{srv:?}");
        assert!(srv.contains(&(22, "_xmpp-server.example.org".into())));
        // Two certificates never share a serial.
        let again = h.generate_certificate("example.org", GenerateOptions::default()).unwrap();
        assert_ne!(again.fingerprint, info.fingerprint);
    }

    #[test]
    fn idn_domain_xmpp_addr_is_unicode() {
        let h = hosting();
        h.add_domain("bücher.example").unwrap();
        h.generate_certificate("bücher.example", GenerateOptions::default()).unwrap();
        let der = crate::certificates::first_der(&h.certificate_pem("xn--bcher-kva.example").unwrap()).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(crate::certificates::dns_names(&cert).contains(&"xn--bcher-kva.example".to_string()));
        assert!(other_names(&cert, OID_XMPP_ADDR).contains(&(12, "bücher.example".into())));
    }

    #[test]
    fn service_names_follow_configured_cnames() {
        let h = hosting();
        let mut p = h.provider_settings().unwrap();
        p.dns.cnames = vec![crate::dns::ExpectedCname { label: "muc".into(), target: "muc.provider.example".into() }];
        h.set_provider_settings(&p).unwrap();
        let info = h.generate_certificate("example.org", GenerateOptions::default()).unwrap();
        assert_eq!(info.names, ["example.org", "muc.example.org"]);
    }

    #[test]
    fn refusals() {
        let h = hosting();
        let bad = GenerateOptions { days: 0, ..Default::default() };
        assert!(matches!(
            h.generate_certificate("example.org", bad),
            Err(crate::Error::Certificate(CertificateError::InvalidDays(0)))
        ));
        let long = GenerateOptions { days: MAX_DAYS + 1, ..Default::default() };
        assert!(h.generate_certificate("example.org", long).is_err());
        assert_eq!(h.generate_certificate("nothere.org", GenerateOptions::default()).unwrap_err().code(), "not-found");
        let e = h.certificate("example.org").unwrap_err();
        assert!(matches!(e, crate::Error::Certificate(CertificateError::NoCertificate { .. })), "{e}");
    }

    #[test]
    fn rsa_on_request() {
        let h = hosting();
        let info = h.generate_certificate("example.org", GenerateOptions { key: KeyKind::Rsa, days: 30 }).unwrap();
        assert_eq!(info.key, KeyKind::Rsa);
        assert_eq!(info.days_left, 30);
        let der = crate::certificates::first_der(&h.certificate_pem("example.org").unwrap()).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(cert.verify_signature(None).is_ok());
        match cert.public_key().parsed().unwrap() {
            x509_parser::public_key::PublicKey::RSA(k) => assert_eq!(k.key_size(), 2048),
            other => panic!("not RSA: {other:?}"),
        }
    }

    #[test]
    fn removing_the_domain_removes_its_key() {
        let h = hosting();
        h.generate_certificate("example.org", GenerateOptions::default()).unwrap();
        h.remove_domain("example.org").unwrap();
        assert!(h.certificate_expiry().unwrap().is_empty());
    }
}
