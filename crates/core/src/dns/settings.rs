//! The provider's DNS values: where to ask, and what customers' zones must say.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::DomainName;

/// An SRV record a customer must publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedSrv {
    pub target: String,
    pub port: u16,
    #[serde(default = "one")]
    pub priority: u16,
    #[serde(default = "one")]
    pub weight: u16,
}

fn one() -> u16 {
    1
}

/// A CNAME a customer must publish: `<label>.<domain>` pointing to `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedCname {
    pub label: String,
    pub target: String,
}

/// `ProviderSettings::dns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsSettings {
    /// The provider's zone: the CNAME proof points to `<token>.v.<provider_zone>`.
    pub provider_zone: Option<String>,
    /// The name under the customer's domain that holds the proof.
    pub verification_label: String,
    /// `address:port` of the nameservers to ask; empty means the system's resolvers.
    pub nameservers: Vec<String>,
    pub timeout_ms: u64,
    pub attempts: usize,
    /// Validate DNSSEC and report each answer's status.
    pub dnssec: bool,
    /// A file of DNSKEY records to trust (zone file syntax), when the root's keys are not the
    /// anchor: a private zone, a lab, the tests. Only used when `dnssec` is on.
    pub dnssec_trust_anchor: Option<String>,
    /// Seconds between re-checks of a verified domain.
    pub recheck_interval: u64,
    /// Seconds a domain may stay `lost` before it is `suspended`.
    pub grace_period: u64,
    /// How many domains are checked at once.
    pub concurrency: usize,
    /// `_xmpp-client._tcp` (5222), `_xmpps-client._tcp` (443), `_xmpp-server._tcp` (5269).
    pub xmpp_client: Option<ExpectedSrv>,
    pub xmpps_client: Option<ExpectedSrv>,
    pub xmpp_server: Option<ExpectedSrv>,
    /// share, proxy, conference...
    pub cnames: Vec<ExpectedCname>,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            provider_zone: None,
            verification_label: "xmpp-hosting-verification".into(),
            nameservers: Vec::new(),
            timeout_ms: 3000,
            attempts: 2,
            dnssec: false,
            dnssec_trust_anchor: None,
            recheck_interval: 24 * 3600,
            grace_period: 7 * 24 * 3600,
            concurrency: 64,
            xmpp_client: None,
            xmpps_client: None,
            xmpp_server: None,
            cnames: Vec::new(),
        }
    }
}

impl DnsSettings {
    /// Values that parse but cannot work, by their path under `dns.` and why (see
    /// `settings::JsonSettings::problems`): refused when set, so an admin learns it at once
    /// rather than from the first check that fails.
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut problem = |path: &str, why: String| out.push((path.to_string(), why));
        if let Some(zone) = &self.provider_zone {
            if let Err(e) = DomainName::parse(zone) {
                problem("provider_zone", format!("{zone:?} is not a DNS zone: {e}"));
            }
        }
        if let Some(why) = label_problem(&self.verification_label) {
            problem("verification_label", format!("{:?} {why}", self.verification_label));
        }
        for ns in &self.nameservers {
            match ns.parse::<SocketAddr>() {
                Ok(addr) if addr.port() != 0 => {}
                Ok(_) => problem("nameservers", format!("{ns:?}: port 0 is not a port to ask")),
                Err(_) => problem(
                    "nameservers",
                    format!(
                        "{ns:?} is not an address:port (a port is 1 to 65535; e.g. 192.0.2.53:53 or [2001:db8::53]:53)"
                    ),
                ),
            }
        }
        for (path, value) in [
            ("timeout_ms", self.timeout_ms),
            ("attempts", self.attempts as u64),
            ("concurrency", self.concurrency as u64),
        ] {
            if value == 0 {
                problem(path, "must be at least 1".into());
            }
        }
        if let Some(path) = &self.dnssec_trust_anchor {
            if let Some(why) = trust_anchor_problem(path) {
                problem("dnssec_trust_anchor", format!("{path:?} {why}"));
            }
        }
        for (path, srv) in [
            ("xmpp_client", &self.xmpp_client),
            ("xmpps_client", &self.xmpps_client),
            ("xmpp_server", &self.xmpp_server),
        ] {
            let Some(srv) = srv else { continue };
            if let Err(e) = DomainName::parse(&srv.target) {
                problem(path, format!("target {:?} is not a host name: {e}", srv.target));
            }
            if srv.port == 0 {
                problem(path, "port 0 is not a port clients can connect to".into());
            }
        }
        for c in &self.cnames {
            if let Some(why) = c.label.split('.').find_map(label_problem) {
                problem("cnames", format!("label {:?} {why}", c.label));
            }
            if let Err(e) = DomainName::parse(&c.target) {
                problem("cnames", format!("target {:?} of {:?} is not a host name: {e}", c.target, c.label));
            }
        }
        out
    }
}

/// Why `label` cannot be one DNS label under a customer's domain (`_` is allowed: it is usual
/// for service labels).
fn label_problem(label: &str) -> Option<&'static str> {
    if label.is_empty() || label.len() > 63 {
        Some("is not a DNS label (1 to 63 characters)")
    } else if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Some("is not a DNS label (letters, digits, '-' and '_' only)")
    } else {
        None
    }
}

/// Why the file at `path` cannot be the DNSSEC trust anchor, if it cannot.
fn trust_anchor_problem(path: &str) -> Option<String> {
    if !std::path::Path::new(path).is_absolute() {
        return Some("is not an absolute path (the servers and the CLI run in different directories)".into());
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    match super::anchored_zones(&text) {
        Ok(zones) if zones.is_empty() => Some("holds no DNSKEY record".into()),
        Ok(_) => None,
        Err(e) => Some(format!("is not a file of DNSKEY records: {e}")),
    }
}
