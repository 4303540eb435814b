//! `xmpp-hosting cert …`: a hosted domain's key and certificate (self-signed, POSH, CSR, import
//! of a CA-signed one, the files each server reads). The rules are the core's; this only parses
//! and prints. The private key is never printed: `export` writes it to a 0600 file.

use std::path::PathBuf;

use clap::Subcommand;
use xmpp_hosting_core::certificates::{CertificateInfo, GenerateOptions, KeyKind, Layout, PoshService, DEFAULT_DAYS};
use xmpp_hosting_core::{Error, Hosting, Result};

use crate::output::{print_line, table, time, Answer, Output};

#[derive(Subcommand)]
pub enum CertCommand {
    /// Make a new key and self-signed certificate for the domain and its service names.
    Generate {
        domain: String,
        /// ecdsa (P-256, the default) or rsa (2048 bits).
        #[arg(long, default_value = "ecdsa")]
        key: String,
        /// Days of validity (1 to 3650).
        #[arg(long, default_value_t = DEFAULT_DAYS, allow_hyphen_values = true)]
        days: i64,
    },
    /// The served certificate: names, validity, fingerprints; --pem prints it with its chain
    /// (never the key).
    Show {
        domain: String,
        #[arg(long)]
        pem: bool,
    },
    /// The POSH file the customer publishes on https://DOMAIN/.well-known/posh/; with --check
    /// FILE ("-" for stdin), compares the file they published with the served certificate
    /// (exit 3 when it does not match).
    Posh {
        domain: String,
        #[arg(long, default_value = "client", value_parser = ["client", "server"])]
        service: String,
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
    },
    /// A certificate signing request (PEM) from the domain's key, for a CA to sign.
    Csr { domain: String },
    /// Serve a CA-signed certificate (PEM file: the certificate, then its chain; "-" for stdin).
    Import { domain: String, file: PathBuf },
    /// Write the certificate and key where a server reads them: prosody (DIR/DOMAIN.crt and
    /// .key) or ejabberd (DIR/DOMAIN.pem for certfiles).
    Export {
        domain: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_parser = ["prosody", "ejabberd"])]
        layout: String,
    },
    /// Days left for every domain's certificate; a failed check (exit 1) when one has fewer
    /// than 7, as `prosodyctl check certs` and `ejabberdctl xmpp_hosting_cert_check` exit.
    Check,
    /// Obtain now a CA-signed certificate for DOMAIN and *.DOMAIN by ACME DNS-01 through the
    /// customer's `_acme-challenge` CNAME (see `provider set acme.…`), and keep renewing it;
    /// with --due instead, renew every ACME certificate that is due (for cron; exit 3 when one
    /// failed).
    Acme {
        #[arg(required_unless_present = "due", conflicts_with = "due")]
        domain: Option<String>,
        #[arg(long)]
        due: bool,
    },
}

impl CertCommand {
    pub fn reads_only(&self) -> bool {
        matches!(
            self,
            CertCommand::Show { .. } | CertCommand::Posh { .. } | CertCommand::Csr { .. } | CertCommand::Check
        )
    }
}

fn read_input(file: &PathBuf) -> Result<String> {
    let read =
        if file.as_os_str() == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(file) };
    read.map_err(|e| Error::InvalidArgument(format!("cannot read {}: {e}", file.display())))
}

fn print_info(info: &CertificateInfo) {
    let rows = vec![
        vec!["domain".into(), info.domain.clone()],
        vec!["source".into(), info.source.as_str().into()],
        vec!["key".into(), info.key.as_str().into()],
        vec!["valid from".into(), time(Some(info.not_before))],
        vec!["valid until".into(), format!("{} ({} days left)", time(Some(info.not_after)), info.days_left)],
        vec!["sha-256".into(), info.fingerprint.sha256_hex.clone()],
        vec!["sha-256 base64".into(), info.fingerprint.sha256_base64.clone()],
        vec!["names".into(), info.names.join(", ")],
        vec!["services covered".into(), none_if_empty(&info.services_covered)],
        vec!["services not covered".into(), none_if_empty(&info.services_not_covered)],
        vec!["chain".into(), format!("{} certificate(s) after it", info.chain_length)],
    ];
    let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    for r in &rows {
        print_line(format_args!("{:<width$}  {}", r[0], r[1]));
    }
}

fn none_if_empty(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Runs a cert command. The answer is no (exit 3) for a POSH file that does not match and a
/// failed ACME renewal; `cert check` is a check like the servers' own, failed (exit 1) when a
/// certificate is close to expiry (the core's rule, [`Hosting::check_certificates`]).
pub fn run(h: &Hosting, out: &Output, cmd: CertCommand) -> Result<Answer> {
    match cmd {
        CertCommand::Generate { domain, key, days } => {
            let key = KeyKind::parse(&key)?;
            let info = h.generate_certificate(&domain, GenerateOptions { key, days })?;
            out.show(&info, print_info);
        }
        CertCommand::Show { domain, pem: true } => print!("{}", h.certificate_pem(&domain)?),
        CertCommand::Show { domain, pem: false } => {
            let info = h.certificate(&domain)?;
            match h.acme_status(&domain)? {
                None => out.show(&info, print_info),
                Some(acme) => {
                    let mut shown = serde_json::to_value(&info).expect("serialisable");
                    shown["acme"] = serde_json::to_value(&acme).expect("serialisable");
                    out.show(&shown, |_| {
                        print_info(&info);
                        print_line(format_args!("acme  {}", acme.describe()));
                    })
                }
            }
        }
        CertCommand::Posh { domain, service, check: None } => {
            let service = PoshService::parse(&service).unwrap_or(PoshService::Client);
            print_line(format_args!("{}", h.certificate_posh(&domain, service)?));
        }
        CertCommand::Posh { domain, check: Some(file), .. } => {
            let result = h.check_certificate_posh(&domain, &read_input(&file)?)?;
            let matches = result.matches;
            out.show(&result, |r| {
                match &r.matched {
                    Some(hash) => print_line(format_args!("{domain}: the published file matches ({hash})")),
                    None => print_line(format_args!("{domain}: the published file does not match")),
                }
                for p in &r.problems {
                    print_line(format_args!("  - {p}"));
                }
            });
            return Ok(matches.into());
        }
        CertCommand::Csr { domain } => print!("{}", h.certificate_csr(&domain)?),
        CertCommand::Import { domain, file } => {
            let info = h.import_certificate(&domain, &read_input(&file)?)?;
            out.show(&info, print_info);
        }
        CertCommand::Export { domain, dir, layout } => {
            let layout = Layout::parse(&layout).unwrap_or(Layout::Prosody);
            let files = h.export_certificate(&domain, &dir, layout)?;
            let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            out.show(&files, |f| f.iter().for_each(|f| print_line(format_args!("wrote {f}"))));
        }
        CertCommand::Acme { domain: Some(domain), .. } => {
            let info = h.acme_issue(&domain)?.wait()?;
            out.show(&info, print_info);
        }
        CertCommand::Acme { domain: None, .. } => {
            let renewals = h.acme_renew_due()?;
            let ok = renewals.iter().all(|r| r.error.is_none());
            out.show(&renewals, |all| {
                if all.is_empty() {
                    print_line(format_args!("no ACME certificate is due for renewal"));
                }
                for r in all {
                    match (&r.renewed, &r.notice) {
                        (Some(info), _) => print_line(format_args!(
                            "{}: renewed, valid until {} ({})",
                            r.domain,
                            time(Some(info.not_after)),
                            info.fingerprint.sha256_hex
                        )),
                        (None, Some(notice)) => print_line(format_args!("{notice}")),
                        (None, None) => print_line(format_args!("{}: not renewed", r.domain)),
                    }
                }
            });
            return Ok(ok.into());
        }
        CertCommand::Check => {
            let check = h.check_certificates()?;
            // JSON: the list of expiries, as before; the exit status carries the verdict.
            out.show(&check.expiries, |all| {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|e| {
                        vec![
                            e.domain.clone(),
                            e.source.as_str().into(),
                            time(Some(e.not_after)),
                            e.days_left.to_string(),
                        ]
                    })
                    .collect();
                table(&["domain", "source", "expires", "days left"], &rows);
                print_line(format_args!("{}", check.verdict));
            });
            return Ok(if check.ok { Answer::Yes } else { Answer::CheckFailed });
        }
    }
    Ok(Answer::Yes)
}
