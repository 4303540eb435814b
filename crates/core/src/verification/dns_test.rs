//! The DNS tester: the records a customer must create, each with what was found.

use serde::Serialize;

use crate::dns::{plain, DnsClient, DnsProblem, DnsSettings, ExpectedSrv, Srv};

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

fn srv_row(name: String, want: &ExpectedSrv, found: Result<Vec<Srv>, DnsProblem>) -> DnsRow {
    let expected = srv_text(&want.target, want.port, want.priority, want.weight);
    match found {
        Err(problem) => {
            DnsRow { name, rtype: "SRV", expected, found: vec![], status: RowStatus::Error, problem: Some(problem) }
        }
        Ok(records) => {
            let ok = records.iter().any(|s| s.target == plain(&want.target) && s.port == want.port);
            let status = match (ok, records.is_empty()) {
                (true, _) => RowStatus::Ok,
                (false, true) => RowStatus::Missing,
                (false, false) => RowStatus::Wrong,
            };
            let found = records.iter().map(|s| srv_text(&s.target, s.port, s.priority, s.weight)).collect();
            DnsRow { name, rtype: "SRV", expected, found, status, problem: None }
        }
    }
}

fn cname_row(name: String, want: &str, found: Result<Option<String>, DnsProblem>) -> DnsRow {
    let expected = plain(want);
    match found {
        Err(problem) => {
            DnsRow { name, rtype: "CNAME", expected, found: vec![], status: RowStatus::Error, problem: Some(problem) }
        }
        Ok(None) => DnsRow { name, rtype: "CNAME", expected, found: vec![], status: RowStatus::Missing, problem: None },
        Ok(Some(target)) => {
            let status = if target == expected { RowStatus::Ok } else { RowStatus::Wrong };
            DnsRow { name, rtype: "CNAME", expected, found: vec![target], status, problem: None }
        }
    }
}

/// Looks up every expected record of `domain`.
pub(crate) async fn run(client: &DnsClient, settings: &DnsSettings, domain: &str) -> DnsReport {
    let mut rows = Vec::new();
    let srvs = [
        ("_xmpp-client._tcp", &settings.xmpp_client),
        ("_xmpps-client._tcp", &settings.xmpps_client),
        ("_xmpp-server._tcp", &settings.xmpp_server),
    ];
    for (label, want) in srvs {
        if let Some(want) = want {
            let name = format!("{label}.{domain}");
            let found = client.srv(&name).await;
            rows.push(srv_row(name, want, found));
        }
    }
    for c in &settings.cnames {
        let name = format!("{}.{domain}", c.label);
        let found = client.cname(&name).await;
        rows.push(cname_row(name, &c.target, found));
    }
    DnsReport { domain: domain.to_string(), rows }
}
