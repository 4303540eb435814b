//! DNS lookups for verification and the DNS tester, on the worker (see `worker.rs`).
//!
//! A fresh resolver per check run and no answer cache: a customer who has just fixed a record
//! must see the fix at the next check, not an hour later.

mod settings;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::DnsError;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use serde::Serialize;

pub use settings::{DnsSettings, ExpectedCname, ExpectedSrv};

use crate::{Error, Result};

/// Why a lookup gave no answer, as opposed to an answer that says "no such record".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum DnsProblem {
    /// No nameserver answered within the timeout.
    Timeout,
    /// An answer that is an error (SERVFAIL, REFUSED, a broken response...).
    Failure(String),
    /// DNSSEC validation says the answer was forged or broken: it proves nothing either way.
    Bogus,
}

/// What DNSSEC validation says of an answer (only reported when validation is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DnssecStatus {
    /// Signed, with a chain of trust from a trust anchor.
    Secure,
    /// Provably unsigned (or no chain of trust is expected).
    Insecure,
    /// Signatures that fail, or missing DNSSEC data that should be there.
    Bogus,
    /// The validator could not tell (the DNSSEC records could not be fetched).
    Indeterminate,
}

impl From<Proof> for DnssecStatus {
    fn from(p: Proof) -> Self {
        match p {
            Proof::Secure => DnssecStatus::Secure,
            Proof::Insecure => DnssecStatus::Insecure,
            Proof::Bogus => DnssecStatus::Bogus,
            _ => DnssecStatus::Indeterminate,
        }
    }
}

/// The weakest status of a set of records: one bogus record makes the answer bogus.
fn weakest(proofs: impl Iterator<Item = Proof>) -> DnssecStatus {
    let mut status = DnssecStatus::Secure;
    for p in proofs {
        status = match (status, DnssecStatus::from(p)) {
            (DnssecStatus::Bogus, _) | (_, DnssecStatus::Bogus) => DnssecStatus::Bogus,
            (DnssecStatus::Indeterminate, _) | (_, DnssecStatus::Indeterminate) => DnssecStatus::Indeterminate,
            (DnssecStatus::Insecure, _) | (_, DnssecStatus::Insecure) => DnssecStatus::Insecure,
            _ => DnssecStatus::Secure,
        };
    }
    status
}

/// A looked-up value with its DNSSEC status (`None` when validation is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer<T> {
    pub value: T,
    pub dnssec: Option<DnssecStatus>,
}

pub(crate) type Lookup<T> = std::result::Result<Answer<T>, DnsProblem>;

/// An SRV record as found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Srv {
    pub target: String,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
}

/// A resolver configured from the provider's settings. Cheap to clone (the resolver is shared),
/// so each lookup of a check run can be its own task.
#[derive(Clone)]
pub(crate) struct DnsClient {
    resolver: TokioResolver,
    /// With the provider's own trust anchor: the zones it anchors, and a resolver that does not
    /// validate, for names under none of them. No chain of trust is expected there (the anchor
    /// replaces the root's keys), so their answers are insecure, not bogus.
    outside: Option<(TokioResolver, std::sync::Arc<Vec<String>>)>,
    validate: bool,
    /// The most a lookup may take, retries and TCP fallback included: `timeout_ms` × `attempts`.
    deadline: Duration,
}

/// A name in absolute form, lower case, without the trailing dot.
pub(crate) fn plain(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The zones a trust anchor file (DNSKEY records in zone file syntax) anchors, plain (the root
/// is `""`); an error when the file is not such a file.
pub(crate) fn anchored_zones(text: &str) -> std::result::Result<Vec<String>, String> {
    use hickory_resolver::proto::serialize::txt::trust_anchor::{Entry, Parser};
    text.parse::<TrustAnchors>().map_err(|e| e.to_string())?;
    let entries = Parser::new(text).parse().map_err(|e| e.to_string())?;
    let mut zones: Vec<String> = entries
        .into_iter()
        .filter_map(|entry| match entry {
            Entry::DNSKEY(r) => Some(plain(&r.name().to_ascii())),
            // DS records and whatever later versions read: not anchors the resolver uses.
            _ => None,
        })
        .collect();
    zones.sort();
    zones.dedup();
    Ok(zones)
}

/// Whether `name` (plain) is at or below one of `zones` (plain; `""` is the root).
fn covered(zones: &[String], name: &str) -> bool {
    zones
        .iter()
        .any(|z| z.is_empty() || name == z || name.strip_suffix(z.as_str()).is_some_and(|rest| rest.ends_with('.')))
}

impl DnsClient {
    pub(crate) fn new(settings: &DnsSettings) -> Result<Self> {
        // Our own anchor (a file of DNSKEY records) for a zone signed below an unsigned parent,
        // or a lab; without one, hickory trusts the root's keys. (The stub resolver ignores
        // `ResolverOpts::trust_anchor`, so the file is read here.)
        let anchor = match settings.dnssec_trust_anchor.as_deref().filter(|_| settings.dnssec) {
            Some(path) => {
                let bad = |e: String| Error::InvalidArgument(format!("DNSSEC trust anchor {path:?}: {e}"));
                let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
                let anchors = text.parse::<TrustAnchors>().map_err(|e| bad(e.to_string()))?;
                Some((anchors, anchored_zones(&text).map_err(bad)?))
            }
            None => None,
        };
        let (anchors, outside) = match anchor {
            Some((anchors, zones)) if !covered(&zones, "") => {
                (Some(anchors), Some((Self::resolver(settings, false, None)?, std::sync::Arc::new(zones))))
            }
            Some((anchors, _)) => (Some(anchors), None),
            None => (None, None),
        };
        let resolver = Self::resolver(settings, settings.dnssec, anchors)?;
        let deadline =
            Duration::from_millis(settings.timeout_ms.max(1).saturating_mul(settings.attempts.max(1) as u64));
        Ok(DnsClient { resolver, outside, validate: settings.dnssec, deadline })
    }

    fn resolver(settings: &DnsSettings, validate: bool, anchors: Option<TrustAnchors>) -> Result<TokioResolver> {
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_millis(settings.timeout_ms.max(1));
        opts.attempts = settings.attempts;
        opts.cache_size = 0;
        opts.validate = validate;
        opts.num_concurrent_reqs = 1;
        let provider = hickory_resolver::net::runtime::TokioRuntimeProvider::default();
        let builder = if settings.nameservers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| Error::InvalidArgument(format!("system DNS configuration: {e}")))?
        } else {
            let mut servers = Vec::new();
            for ns in &settings.nameservers {
                let addr: SocketAddr = ns
                    .parse()
                    .map_err(|_| Error::InvalidArgument(format!("nameserver {ns:?} is not an address:port")))?;
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                servers.push(server);
            }
            TokioResolver::builder_with_config(ResolverConfig::from_parts(None, vec![], servers), provider)
        };
        let mut builder = builder.with_options(opts);
        if let Some(anchors) = anchors {
            builder = builder.with_trust_anchor(std::sync::Arc::new(anchors));
        }
        builder.build().map_err(|e| Error::InvalidArgument(format!("DNS resolver: {e}")))
    }

    /// The answer's records of type `rtype` with their owner names (RRSIGs and CNAME chains left
    /// out). A bogus answer is an error: it must neither prove a claim nor disprove it.
    async fn records(&self, name: &str, rtype: RecordType) -> Lookup<Vec<(String, RData)>> {
        let name = plain(name);
        match &self.outside {
            Some((resolver, zones)) if !covered(zones, &name) => {
                // Outside every anchored zone: looked up without validation, and insecure.
                let mut answer = Self::lookup(resolver, false, self.deadline, &name, rtype).await?;
                answer.dnssec = Some(DnssecStatus::Insecure);
                Ok(answer)
            }
            _ => Self::lookup(&self.resolver, self.validate, self.deadline, &name, rtype).await,
        }
    }

    async fn lookup(
        resolver: &TokioResolver,
        validate: bool,
        deadline: Duration,
        name: &str,
        rtype: RecordType,
    ) -> Lookup<Vec<(String, RData)>> {
        let fqdn = format!("{name}.");
        let validated = |status: DnssecStatus| validate.then_some(status);
        let Ok(result) = tokio::time::timeout(deadline, resolver.lookup(fqdn.as_str(), rtype)).await else {
            return Err(DnsProblem::Timeout);
        };
        match result {
            Ok(lookup) => {
                let records: Vec<_> = lookup.answers().iter().filter(|r| r.record_type() == rtype).collect();
                let status = weakest(records.iter().map(|r| r.proof));
                if validate && status == DnssecStatus::Bogus {
                    return Err(DnsProblem::Bogus);
                }
                let value = records.into_iter().map(|r| (plain(&r.name.to_ascii()), r.data.clone())).collect();
                Ok(Answer { value, dnssec: validated(status) })
            }
            Err(NetError::Dns(DnsError::Nsec { proof, .. })) => match DnssecStatus::from(proof) {
                DnssecStatus::Bogus => Err(DnsProblem::Bogus),
                status => Ok(Answer { value: Vec::new(), dnssec: validated(status) }),
            },
            Err(NetError::Dns(DnsError::DnssecBogus)) => Err(DnsProblem::Bogus),
            // "No such record" is as trustworthy as the NSEC and SOA records that say so.
            Err(NetError::Dns(DnsError::NoRecordsFound(none))) => {
                let status = match none.authorities.as_deref() {
                    Some(proof) if !proof.is_empty() => weakest(proof.iter().map(|r| r.proof)),
                    _ => DnssecStatus::Indeterminate,
                };
                if validate && status == DnssecStatus::Bogus {
                    return Err(DnsProblem::Bogus);
                }
                Ok(Answer { value: Vec::new(), dnssec: validated(status) })
            }
            Err(NetError::Timeout) => Err(DnsProblem::Timeout),
            Err(e) => Err(DnsProblem::Failure(e.to_string())),
        }
    }

    /// TXT values published at `name` itself, each with its strings joined (a long value is
    /// often split). Values found by following a CNAME at `name` into another name are left out:
    /// they are someone else's records (see `verification`).
    pub(crate) async fn txt(&self, name: &str) -> Lookup<Vec<String>> {
        let owner = plain(name);
        let a = self.records(name, RecordType::TXT).await?;
        let value = a
            .value
            .into_iter()
            .filter_map(|(at, d)| match d {
                RData::TXT(t) if at == owner => Some(t.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect()),
                _ => None,
            })
            .collect();
        Ok(Answer { value, dnssec: a.dnssec })
    }

    /// The CNAME target at `name`, if there is one.
    pub(crate) async fn cname(&self, name: &str) -> Lookup<Option<String>> {
        let a = self.records(name, RecordType::CNAME).await?;
        let value = a.value.into_iter().find_map(|(_, d)| match d {
            RData::CNAME(c) => Some(plain(&c.0.to_ascii())),
            _ => None,
        });
        Ok(Answer { value, dnssec: a.dnssec })
    }

    pub(crate) async fn srv(&self, name: &str) -> Lookup<Vec<Srv>> {
        let a = self.records(name, RecordType::SRV).await?;
        let value = a
            .value
            .into_iter()
            .filter_map(|(_, d)| match d {
                RData::SRV(s) => Some(Srv {
                    target: plain(&s.target.to_ascii()),
                    port: s.port,
                    priority: s.priority,
                    weight: s.weight,
                }),
                _ => None,
            })
            .collect();
        Ok(Answer { value, dnssec: a.dnssec })
    }
}
