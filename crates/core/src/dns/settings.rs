//! The provider's DNS values: where to ask, and what customers' zones must say.

use serde::{Deserialize, Serialize};

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
