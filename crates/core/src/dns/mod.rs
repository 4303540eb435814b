//! DNS lookups for verification and the DNS tester, on the worker (see `worker.rs`).
//!
//! A fresh resolver per check run and no answer cache: a customer who has just fixed a record
//! must see the fix at the next check, not an hour later.

mod settings;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
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
}

/// An SRV record as found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Srv {
    pub target: String,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
}

/// A resolver configured from the provider's settings.
pub(crate) struct DnsClient {
    resolver: TokioResolver,
}

/// A name in absolute form, lower case, without the trailing dot.
pub(crate) fn plain(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsClient {
    pub(crate) fn new(settings: &DnsSettings) -> Result<Self> {
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_millis(settings.timeout_ms.max(1));
        opts.attempts = settings.attempts;
        opts.cache_size = 0;
        opts.validate = settings.dnssec;
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
        let resolver =
            builder.with_options(opts).build().map_err(|e| Error::InvalidArgument(format!("DNS resolver: {e}")))?;
        Ok(DnsClient { resolver })
    }

    async fn records(&self, name: &str, rtype: RecordType) -> std::result::Result<Vec<RData>, DnsProblem> {
        let fqdn = format!("{}.", plain(name));
        match self.resolver.lookup(fqdn.as_str(), rtype).await {
            Ok(lookup) => Ok(lookup.answers().iter().map(|r| r.data.clone()).collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
            Err(NetError::Timeout) => Err(DnsProblem::Timeout),
            Err(e) => Err(DnsProblem::Failure(e.to_string())),
        }
    }

    /// TXT values at `name`, each with its strings joined (a long value is often split).
    pub(crate) async fn txt(&self, name: &str) -> std::result::Result<Vec<String>, DnsProblem> {
        Ok(self
            .records(name, RecordType::TXT)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::TXT(t) => Some(t.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect()),
                _ => None,
            })
            .collect())
    }

    /// The CNAME target at `name`, if there is one.
    pub(crate) async fn cname(&self, name: &str) -> std::result::Result<Option<String>, DnsProblem> {
        Ok(self.records(name, RecordType::CNAME).await?.into_iter().find_map(|d| match d {
            RData::CNAME(c) => Some(plain(&c.0.to_ascii())),
            _ => None,
        }))
    }

    pub(crate) async fn srv(&self, name: &str) -> std::result::Result<Vec<Srv>, DnsProblem> {
        Ok(self
            .records(name, RecordType::SRV)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::SRV(s) => Some(Srv {
                    target: plain(&s.target.to_ascii()),
                    port: s.port,
                    priority: s.priority,
                    weight: s.weight,
                }),
                _ => None,
            })
            .collect())
    }
}
