//! Certificates for hosted domains (issue 14): the three ways conversations.im's domain hosting
//! offers a customer to make clients trust the provider's server for the customer's domain.
//!
//! - [`self_signed`]: a key and a self-signed certificate for the domain and its service names,
//!   whose fingerprint ([`fingerprint`]) the customer compares when a client asks;
//! - [`posh`]: the POSH files (RFC 7711) the customer publishes on their own https site, and a
//!   check of what they published;
//! - [`csr`] and [`import`]: a CSR from the domain's key, and the CA-signed certificate the
//!   customer brings back, accepted only when it fits (key, names, validity, chain);
//! - [`export`]: the files each server reads, and [`Hosting::certificate_expiry`] for days left;
//! - [`install`]: a server's certificate directory kept equal to the store, and [`expiry`]: the
//!   housekeeping step that renews self-signed certificates and warns about the others.
//!
//! The private key lives in the store (see the 0011 migration) and leaves the core only as a file
//! of mode 0600 written by [`export`]: no value returned here contains it.

pub mod csr;
pub mod expiry;
pub mod export;
pub mod fingerprint;
pub mod import;
pub mod install;
pub(crate) mod keys;
pub mod names;
pub mod posh;
pub mod self_signed;

use serde::Serialize;
use x509_parser::prelude::*;

pub use expiry::{CertificateCheck, CertificateUpkeep};
pub use export::Layout;
pub use fingerprint::Fingerprint;
pub use install::{InstallReport, InstallTarget};
pub use keys::KeyKind;
pub use names::CertificateNames;
pub use posh::{PoshCheck, PoshService};
pub use self_signed::{GenerateOptions, DEFAULT_DAYS, MAX_DAYS};

use crate::{DomainName, Error, Hosting, Result, Timestamp};
use keys::DomainKey;

/// Why a certificate operation was refused. Every refusal of an import has its own variant so
/// that a caller (and a test) can tell them apart; the message says it in the admin's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    #[error("{domain} has no certificate yet: run `cert generate {domain}` first")]
    NoCertificate { domain: String },
    #[error("not a PEM certificate: {0}")]
    Garbage(String),
    #[error("the file holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)")]
    Empty,
    #[error("the file holds a private key: upload only the certificate and its chain; the domain's key never leaves the provider")]
    ContainsPrivateKey,
    #[error("the certificate is for another domain: it covers {}, not {domain}", if names.is_empty() { "no DNS name".to_string() } else { names.join(", ") })]
    OtherDomain { domain: String, names: Vec<String> },
    #[error("the certificate was issued for another key, not {domain}'s: sign the CSR from `cert csr {domain}`")]
    OtherKey { domain: String },
    #[error("the certificate expired on {0}")]
    Expired(String),
    #[error("the certificate is not valid before {0}")]
    NotYetValid(String),
    #[error("the chain does not link: {0}")]
    BrokenChain(String),
    #[error("validity of {0} days: give 1 to {max} days", max = MAX_DAYS)]
    InvalidDays(i64),
    #[error("unknown key type {0:?}: use ecdsa or rsa")]
    UnknownKeyKind(String),
    #[error("not a POSH file: {0}")]
    InvalidPosh(String),
    #[error("cannot write the certificate files: {0}")]
    Export(String),
    #[error("{0}")]
    Internal(String),
}

impl CertificateError {
    /// The core's stable error code for this refusal (see `Error::code`).
    pub fn code(&self) -> &'static str {
        match self {
            CertificateError::NoCertificate { .. } => "not-found",
            CertificateError::Internal(_) => "internal",
            _ => "invalid-argument",
        }
    }
}

/// Where a domain's served certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Made here; the customer compares its fingerprint or publishes POSH.
    SelfSigned,
    /// Signed by a CA from the domain's CSR, uploaded by the customer.
    Imported,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::SelfSigned => "self-signed",
            Source::Imported => "imported",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "self-signed" => Some(Source::SelfSigned),
            "imported" => Some(Source::Imported),
            _ => None,
        }
    }
}

/// One domain's key and certificate as stored. Holds the private key: crate-private.
#[derive(Debug, Clone)]
pub(crate) struct StoredCertificate {
    pub domain: String,
    pub key: DomainKey,
    pub source: Source,
    pub cert_pem: String,
    pub chain_pem: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub sha256_hex: String,
    pub updated_at: Timestamp,
}

impl StoredCertificate {
    /// The certificate followed by its chain: what a server sends and `cert show --pem` prints.
    pub fn full_chain_pem(&self) -> String {
        let mut out = self.cert_pem.clone();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&self.chain_pem);
        out
    }
}

/// What may be shown about a domain's certificate (never the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    pub domain: String,
    pub source: Source,
    pub key: KeyKind,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: i64,
    pub fingerprint: Fingerprint,
    /// The certificate's dNSNames.
    pub names: Vec<String>,
    /// The domain's service names this certificate covers, and those it does not.
    pub services_covered: Vec<String>,
    pub services_not_covered: Vec<String>,
    /// Certificates sent after it (intermediates).
    pub chain_length: usize,
    pub updated_at: Timestamp,
}

impl CertificateInfo {
    /// The certificate as the admin commands print it (prosodyctl, ejabberdctl): one "name  value"
    /// line each; never the key.
    pub fn describe(&self) -> String {
        let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
        let rows = [
            ("domain", self.domain.clone()),
            ("source", self.source.as_str().into()),
            ("key", self.key.as_str().into()),
            ("valid from", human_time(self.not_before)),
            ("valid until", format!("{} ({} days left)", human_time(self.not_after), self.days_left)),
            ("sha-256", self.fingerprint.sha256_hex.clone()),
            ("sha-256 base64", self.fingerprint.sha256_base64.clone()),
            ("names", self.names.join(", ")),
            ("services covered", list(&self.services_covered)),
            ("services not covered", list(&self.services_not_covered)),
            ("chain", format!("{} certificate(s) after it", self.chain_length)),
        ];
        rows.iter().map(|(k, v)| format!("{k:<20}  {v}")).collect::<Vec<_>>().join("\n")
    }
}

/// Days left for one domain, as `cert check` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiry {
    pub domain: String,
    pub source: Source,
    pub not_after: Timestamp,
    pub days_left: i64,
}

/// Whole days from `now` to `not_after`, rounded down (an expired certificate has a negative count).
pub fn days_left(not_after: Timestamp, now: Timestamp) -> i64 {
    (not_after - now).div_euclid(86_400)
}

/// A timestamp as people read it in a message (RFC 3339, UTC).
pub(crate) fn human_time(t: Timestamp) -> String {
    ::time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&::time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

/// The DER of the first certificate in `pem`.
pub(crate) fn first_der(pem: &str) -> Result<Vec<u8>, CertificateError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| CertificateError::Internal(format!("stored certificate unreadable: {e}")))?;
    Ok(p.contents)
}

/// The dNSNames of a parsed certificate.
pub(crate) fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                out.push(d.to_string());
            }
        }
    }
    out
}

impl From<CertificateError> for Error {
    fn from(e: CertificateError) -> Self {
        Error::Certificate(e)
    }
}

impl Hosting {
    /// The names `domain`'s certificate must cover: the domain and, for each service label the
    /// provider configured as an expected CNAME (`dns.cnames`), `<label>.<domain>`; the labels
    /// `conference`, `share` and `proxy` when none are configured.
    pub fn certificate_names(&self, domain: &str) -> Result<CertificateNames> {
        let d = self.require_domain(domain)?;
        let configured: Vec<String> = self.provider_settings()?.dns.cnames.into_iter().map(|c| c.label).collect();
        let labels = if configured.is_empty() {
            names::DEFAULT_SERVICE_LABELS.iter().map(|s| s.to_string()).collect()
        } else {
            configured
        };
        Ok(CertificateNames::new(d.name, &labels))
    }

    pub(crate) fn stored_certificate(&self, domain: &str) -> Result<StoredCertificate> {
        let name = DomainName::parse(domain)?;
        self.require_domain(name.as_str())?;
        self.store()
            .read(|c| crate::store::certificates::select(c, name.as_str()))?
            .ok_or_else(|| CertificateError::NoCertificate { domain: name.to_string() }.into())
    }

    /// What may be shown about `domain`'s certificate.
    pub fn certificate(&self, domain: &str) -> Result<CertificateInfo> {
        let stored = self.stored_certificate(domain)?;
        let names = self.certificate_names(domain)?;
        self.describe(&stored, &names)
    }

    /// The certificate and its chain as PEM (never the key).
    pub fn certificate_pem(&self, domain: &str) -> Result<String> {
        Ok(self.stored_certificate(domain)?.full_chain_pem())
    }

    pub(crate) fn describe(&self, s: &StoredCertificate, names: &CertificateNames) -> Result<CertificateInfo> {
        self.describe_at(s, names, self.now())
    }

    /// Like `describe`, with days left counted from `now` (the moment a certificate was made, so
    /// that `generate --days 30` says 30 however long the key took).
    pub(crate) fn describe_at(
        &self,
        s: &StoredCertificate,
        names: &CertificateNames,
        now: Timestamp,
    ) -> Result<CertificateInfo> {
        let der = first_der(&s.cert_pem)?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| CertificateError::Internal(format!("stored certificate unreadable: {e}")))?;
        let dns = dns_names(&cert);
        let (covered, not_covered): (Vec<String>, Vec<String>) =
            names.services.iter().cloned().partition(|svc| dns.iter().any(|p| names::name_covers(p, svc)));
        let chain_length = x509_parser::pem::Pem::iter_from_buffer(s.chain_pem.as_bytes()).count();
        Ok(CertificateInfo {
            domain: s.domain.clone(),
            source: s.source,
            key: s.key.kind,
            not_before: s.not_before,
            not_after: s.not_after,
            days_left: days_left(s.not_after, now),
            fingerprint: Fingerprint::of_der(&der),
            names: dns,
            services_covered: covered,
            services_not_covered: not_covered,
            chain_length,
            updated_at: s.updated_at,
        })
    }

    /// Days left for every domain that has a certificate, soonest first.
    pub fn certificate_expiry(&self) -> Result<Vec<Expiry>> {
        let now = self.now();
        let mut out: Vec<Expiry> = self
            .store()
            .read(crate::store::certificates::select_all)?
            .into_iter()
            .map(|s| Expiry {
                days_left: days_left(s.not_after, now),
                domain: s.domain,
                source: s.source,
                not_after: s.not_after,
            })
            .collect();
        out.sort_by(|a, b| a.not_after.cmp(&b.not_after).then_with(|| a.domain.cmp(&b.domain)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_down() {
        assert_eq!(days_left(86_400 * 3, 0), 3);
        assert_eq!(days_left(86_400 * 3 - 1, 0), 2);
        assert_eq!(days_left(0, 1), -1);
    }
}
