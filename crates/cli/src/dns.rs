//! `xmpp-hosting dns …`: the DNS tester and re-verification.

use clap::Subcommand;
use xmpp_hosting_core::{Hosting, Result};

use crate::output::{table, Output};

#[derive(Subcommand)]
pub enum DnsCommand {
    /// Check the records a customer's domain needs (SRV, CNAME) and print the table, with each
    /// answer's DNSSEC status when the provider validates; exit 3 when a record is not right,
    /// 1 when no record is expected yet (provider set dns.xmpp_client …).
    Check { domain: String },
    /// Re-check verified and lost domains whose time has come (what the servers' timers run).
    Recheck {
        #[arg(long, default_value_t = xmpp_hosting_core::housekeeping::RECHECK_BATCH)]
        limit: u32,
    },
}

impl DnsCommand {
    /// Whether the command only reads the store (it is then opened read-only).
    pub fn reads_only(&self) -> bool {
        matches!(self, Self::Check { .. })
    }
}

pub fn run(h: &Hosting, out: &Output, cmd: DnsCommand) -> Result<bool> {
    match cmd {
        DnsCommand::Check { domain } => {
            let report = h.dns_test(&domain)?.wait()?;
            out.show(&report, |r| {
                let rows: Vec<Vec<String>> = r
                    .rows
                    .iter()
                    .map(|row| {
                        let found = match &row.problem {
                            Some(p) => format!("DNS error: {p:?}"),
                            None => row.found.join(", "),
                        };
                        // "-" when the provider does not validate DNSSEC (dns.dnssec off).
                        let dnssec = row.dnssec.map_or_else(|| "-".to_string(), |s| format!("{s:?}").to_lowercase());
                        vec![
                            row.name.clone(),
                            row.rtype.into(),
                            format!("{:?}", row.status).to_lowercase(),
                            dnssec,
                            row.expected.clone(),
                            found,
                        ]
                    })
                    .collect();
                table(&["NAME", "TYPE", "RESULT", "DNSSEC", "EXPECTED", "FOUND"], &rows);
            });
            // Scripts can tell a correct zone from the exit status.
            Ok(report.all_ok())
        }
        DnsCommand::Recheck { limit } => {
            let claims = h.recheck_due(limit)?.wait()?;
            // Each claim and the summary in the core's words, as the servers' commands print them.
            out.show(&claims, |cs| {
                for c in cs {
                    println!("{}", c.describe());
                }
                println!("{}", xmpp_hosting_core::texts::ClaimsSummary::of(cs).text);
            });
            Ok(true)
        }
    }
}
