//! Which names a domain's certificate carries, and the subjectAltName extension that says so.
//!
//! rcgen can write dNSName and UTF8String otherNames (XmppAddr) but no IA5String otherName, which
//! SRV-ID (RFC 6125/7712, OID 1.3.6.1.5.5.7.8.7) is. So the whole extension is written here with
//! yasna, rcgen's own DER writer, and handed to rcgen as a custom extension: one writer for all
//! three kinds of name, and no hand-made bytes.

use rcgen::CustomExtension;
use yasna::models::ObjectIdentifier;
use yasna::Tag;

use crate::DomainName;

/// id-on-xmppAddr (RFC 6120 section 13.7.1.4): the XMPP domain as a UTF8String.
pub const OID_XMPP_ADDR: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 8, 5];
/// id-on-dnsSRV (RFC 4985): `_service.domain` as an IA5String.
pub const OID_SRV_NAME: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 8, 7];
const OID_SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];

/// The service labels used when the provider configured no CNAMEs (`dns.cnames`): the three that
/// conversations.im's domain hosting asks its customers for.
pub const DEFAULT_SERVICE_LABELS: [&str; 3] = ["conference", "share", "proxy"];

/// The names one domain's certificate must cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateNames {
    pub domain: DomainName,
    /// `conference.<domain>` and the like, ASCII form.
    pub services: Vec<String>,
}

impl CertificateNames {
    /// The domain with `<label>.<domain>` for each service label.
    pub fn new(domain: DomainName, labels: &[String]) -> Self {
        let mut services: Vec<String> = labels.iter().map(|l| format!("{l}.{}", domain.as_str())).collect();
        services.sort();
        services.dedup();
        CertificateNames { domain, services }
    }

    /// Every dNSName, the domain first.
    pub fn dns_names(&self) -> Vec<String> {
        std::iter::once(self.domain.as_str().to_string()).chain(self.services.iter().cloned()).collect()
    }

    /// The subjectAltName extension: for every name a dNSName and an XmppAddr (services are XMPP
    /// components, reached as JIDs); SRV-IDs `_xmpp-client.` and `_xmpp-server.` for the domain
    /// and `_xmpp-server.` for services (components take no client connections). This is what
    /// Prosody's `util/x509.lua` matches, and what `prosodyctl cert generate` writes.
    pub(crate) fn subject_alt_name(&self) -> CustomExtension {
        let der = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                let mut dns =
                    |name: &str| w.next().write_tagged_implicit(Tag::context(2), |w| w.write_ia5_string(name));
                for name in self.dns_names() {
                    dns(&name);
                }
                let mut other = |oid: &[u64], value: &str, ia5: bool| {
                    w.next().write_tagged_implicit(Tag::context(0), |w| {
                        w.write_sequence(|w| {
                            w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                            w.next().write_tagged(Tag::context(0), |w| {
                                if ia5 {
                                    w.write_ia5_string(value)
                                } else {
                                    w.write_utf8_string(value)
                                }
                            });
                        })
                    })
                };
                // XmppAddr holds the JID as people write it (U-labels), SRV-ID the ASCII form.
                other(OID_XMPP_ADDR, &self.domain.to_unicode(), false);
                for s in &self.services {
                    other(OID_XMPP_ADDR, &DomainName::from_stored(s.clone()).to_unicode(), false);
                }
                other(OID_SRV_NAME, &format!("_xmpp-client.{}", self.domain.as_str()), true);
                other(OID_SRV_NAME, &format!("_xmpp-server.{}", self.domain.as_str()), true);
                for s in &self.services {
                    other(OID_SRV_NAME, &format!("_xmpp-server.{s}"), true);
                }
            })
        });
        CustomExtension::from_oid_content(OID_SUBJECT_ALT_NAME, der)
    }
}

/// Whether the certificate name `pattern` (a dNSName, maybe `*.example.org`) covers `host`, the
/// way RFC 6125 and Prosody match: case-insensitive, a wildcard only as the whole left-most label
/// and standing for exactly one label.
pub fn name_covers(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(rest) => host.split_once('.').is_some_and(|(first, parent)| !first.is_empty() && parent == rest),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_sorted_and_unique() {
        let n = CertificateNames::new(
            DomainName::parse("example.org").unwrap(),
            &["share".into(), "conference".into(), "share".into()],
        );
        assert_eq!(n.dns_names(), ["example.org", "conference.example.org", "share.example.org"]);
    }

    #[test]
    fn wildcards_cover_one_label_only() {
        assert!(name_covers("example.org", "EXAMPLE.org"));
        assert!(name_covers("*.example.org", "share.example.org"));
        assert!(!name_covers("*.example.org", "example.org"));
        assert!(!name_covers("*.example.org", "a.b.example.org"));
        assert!(!name_covers("*.org", "example.com"));
        assert!(!name_covers("other.org", "example.org"));
    }
}
