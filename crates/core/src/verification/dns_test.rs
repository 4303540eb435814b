//! The DNS tester: the records a customer must create, each with what was found.

use serde::Serialize;

use crate::dns::{plain, DnsClient, DnsProblem, DnsSettings, DnssecStatus, ExpectedSrv, Lookup, Srv};

/// Refuses to run the tester when the provider expects no record at all: an empty table with a
/// success status would read as "all correct" to an admin or a script.
pub(crate) fn require_expectations(dns: &DnsSettings, acme_zone: Option<&str>) -> crate::Result<()> {
    if dns.xmpp_client.is_some()
        || dns.xmpps_client.is_some()
        || dns.xmpp_server.is_some()
        || !dns.cnames.is_empty()
        || acme_zone.is_some()
    {
        return Ok(());
    }
    Err(crate::Error::InvalidArgument(
        "nothing to check: no DNS records are expected yet; set the provider settings dns.xmpp_client, \
         dns.xmpps_client, dns.xmpp_server or dns.cnames first (for example dns.xmpp_client \
         {\"target\":\"xmpp.example.net\",\"port\":5222})"
            .into(),
    ))
}

/// How one expected record compares with what DNS says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowStatus {
    Ok,
    Missing,
    /// Something is there, but not the expected value.
    Wrong,
    /// DNS did not answer (timeout, failure): nothing is known.
    Error,
}

/// One row of the table a customer follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRow {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: &'static str,
    pub expected: String,
    pub found: Vec<String>,
    pub status: RowStatus,
    pub problem: Option<DnsProblem>,
    /// The answer's DNSSEC status, when the provider validates.
    pub dnssec: Option<DnssecStatus>,
}

impl DnsRow {
    fn failed(name: String, rtype: &'static str, expected: String, problem: DnsProblem) -> Self {
        let dnssec = (problem == DnsProblem::Bogus).then_some(DnssecStatus::Bogus);
        DnsRow { name, rtype, expected, found: vec![], status: RowStatus::Error, problem: Some(problem), dnssec }
    }
}

/// The table for one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsReport {
    pub domain: String,
    pub rows: Vec<DnsRow>,
}

impl DnsReport {
    pub fn all_ok(&self) -> bool {
        self.rows.iter().all(|r| r.status == RowStatus::Ok)
    }
}

fn srv_text(target: &str, port: u16, priority: u16, weight: u16) -> String {
    format!("{priority} {weight} {port} {}", plain(target))
}

fn srv_row(name: String, want: &ExpectedSrv, found: Lookup<Vec<Srv>>) -> DnsRow {
    let expected = srv_text(&want.target, want.port, want.priority, want.weight);
    match found {
        Err(problem) => DnsRow::failed(name, "SRV", expected, problem),
        Ok(answer) => {
            let records = answer.value;
            let ok = records.iter().any(|s| s.target == plain(&want.target) && s.port == want.port);
            let status = match (ok, records.is_empty()) {
                (true, _) => RowStatus::Ok,
                (false, true) => RowStatus::Missing,
                (false, false) => RowStatus::Wrong,
            };
            let found = records.iter().map(|s| srv_text(&s.target, s.port, s.priority, s.weight)).collect();
            DnsRow { name, rtype: "SRV", expected, found, status, problem: None, dnssec: answer.dnssec }
        }
    }
}

fn cname_row(name: String, want: &str, found: Lookup<Option<String>>) -> DnsRow {
    let expected = plain(want);
    match found {
        Err(problem) => DnsRow::failed(name, "CNAME", expected, problem),
        Ok(answer) => {
            let (status, found) = match answer.value {
                None => (RowStatus::Missing, vec![]),
                Some(target) if target == expected => (RowStatus::Ok, vec![target]),
                Some(target) => (RowStatus::Wrong, vec![target]),
            };
            DnsRow { name, rtype: "CNAME", expected, found, status, problem: None, dnssec: answer.dnssec }
        }
    }
}

/// Looks up every expected record of `domain`, all at once: a dead nameserver costs one
/// timeout per report, not one per row. With an ACME zone (`acme.zone`), the customer's
/// `_acme-challenge` CNAME is one of them (see `acme`).
pub(crate) async fn run(
    client: &DnsClient,
    settings: &DnsSettings,
    acme_zone: Option<&str>,
    domain: &str,
) -> DnsReport {
    let mut tasks = tokio::task::JoinSet::new();
    let srvs = [
        ("_xmpp-client._tcp", &settings.xmpp_client),
        ("_xmpps-client._tcp", &settings.xmpps_client),
        ("_xmpp-server._tcp", &settings.xmpp_server),
    ];
    let mut index = 0;
    for (label, want) in srvs {
        if let Some(want) = want.clone() {
            let (name, client) = (format!("{label}.{domain}"), client.clone());
            tasks.spawn(async move { (index, srv_row(name.clone(), &want, client.srv(&name).await)) });
            index += 1;
        }
    }
    for c in settings.cnames.clone() {
        let (name, client) = (format!("{}.{domain}", c.label), client.clone());
        tasks.spawn(async move { (index, cname_row(name.clone(), &c.target, client.cname(&name).await)) });
        index += 1;
    }
    if let Some(acme) = acme_zone.and_then(|zone| crate::acme::cname_for(domain, zone).ok()) {
        let client = client.clone();
        tasks.spawn(async move { (index, cname_row(acme.name.clone(), &acme.target, client.cname(&acme.name).await)) });
    }
    let mut rows: Vec<(usize, DnsRow)> = tasks.join_all().await;
    rows.sort_by_key(|(i, _)| *i);
    DnsReport { domain: domain.to_string(), rows: rows.into_iter().map(|(_, r)| r).collect() }
}
