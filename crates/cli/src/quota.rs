//! `xmpp-hosting quota …`: upload limits and usage.

use clap::Subcommand;
use serde::Serialize;
use xmpp_hosting_core::quotas::{UploadLimits, UploadUsage, UserUploadLimits};
use xmpp_hosting_core::{Hosting, Result};

use crate::output::{table, Output};

#[derive(Subcommand)]
pub enum QuotaCommand {
    /// Show a domain's (or one user's) limits and usage.
    Show {
        domain: String,
        #[arg(long)]
        user: Option<String>,
    },
    /// Set one limit: `quota set example.org user_daily 100000000` (bytes; `null` removes it).
    /// With --user, set that user's exception (max_file_size, storage, daily, weekly, monthly).
    Set {
        domain: String,
        limit: String,
        value: String,
        #[arg(long)]
        user: Option<String>,
    },
    /// Remove one user's exceptions.
    Clear { domain: String, user: String },
    /// Storage used by all domains together.
    Global,
    /// Recount storage from the files and open slots the ledger holds and list the scopes whose
    /// running totals differ (exit 3 when any does); --repair sets them to the recount.
    Audit {
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Serialize)]
struct Report {
    domain: String,
    user: Option<String>,
    limits: UploadLimits,
    user_limits: Option<UserUploadLimits>,
    usage: UploadUsage,
}

/// Runs a quota command; `false` when an audit found drift (the caller exits 3).
pub fn run(h: &Hosting, out: &Output, cmd: QuotaCommand) -> Result<bool> {
    match cmd {
        QuotaCommand::Show { domain, user } => {
            let d = h.require_domain(&domain)?;
            let user_limits = match &user {
                Some(u) => h.user_upload_limits(&domain, u)?,
                None => None,
            };
            let report = Report {
                usage: h.upload_usage(&domain, user.as_deref())?,
                domain: d.name.to_string(),
                user,
                limits: d.settings.uploads,
                user_limits,
            };
            out.show(&report, print_report);
        }
        QuotaCommand::Set { domain, limit, value, user } => {
            let report = h.set_upload_limit(&domain, user.as_deref(), &limit, &value)?;
            let scope = user.map_or_else(|| domain.clone(), |u| format!("{u}@{domain}"));
            out.show(&report, |_| println!("{scope}: {limit} = {value}"));
        }
        QuotaCommand::Clear { domain, user } => {
            h.set_user_upload_limits(&domain, &user, None)?;
            out.show(&serde_json::json!({ "cleared": user }), |_| println!("{user}@{domain}: exceptions removed"));
        }
        QuotaCommand::Global => {
            let limit = h.provider_settings()?.uploads.storage;
            let usage = h.global_upload_usage()?;
            out.show(&serde_json::json!({ "storage_limit": limit, "usage": usage }), |_| {
                println!("stored {} bytes, reserved {} bytes, limit {}", usage.stored, usage.reserved, bytes(limit))
            });
        }
        QuotaCommand::Audit { repair } => {
            let drifts = h.audit_upload_ledger(repair)?;
            out.show(&drifts, |drifts| {
                let rows: Vec<Vec<String>> = drifts
                    .iter()
                    .map(|d| {
                        let scope = match d.scope.as_str() {
                            "user" => format!("{}@{}", d.username, d.domain),
                            "domain" => d.domain.clone(),
                            _ => "(all domains)".into(),
                        };
                        vec![
                            scope,
                            format!("{} -> {}", d.stored, d.counted_stored),
                            format!("{} -> {}", d.reserved, d.counted_reserved),
                        ]
                    })
                    .collect();
                match (rows.is_empty(), repair) {
                    (true, _) => println!("the running totals match the files and slots"),
                    (false, fixed) => {
                        table(&["SCOPE", "STORED", "RESERVED"], &rows);
                        println!("{}", if fixed { "repaired" } else { "not repaired (use --repair)" });
                    }
                }
            });
            return Ok(drifts.is_empty() || repair);
        }
    }
    Ok(true)
}

fn bytes(limit: Option<u64>) -> String {
    limit.map_or_else(|| "none".into(), |b| b.to_string())
}

fn print_report(r: &Report) {
    let who = r.user.as_ref().map_or_else(|| r.domain.clone(), |u| format!("{u}@{}", r.domain));
    println!("{who}");
    let l = &r.limits;
    let u = r.user_limits.clone().unwrap_or_default();
    let user_rows = [
        ("max file size", u.max_file_size.or(l.max_file_size), None),
        ("storage", u.storage.or(l.user_storage), Some(r.usage.stored)),
        ("daily", u.daily.or(l.user_daily), Some(r.usage.daily)),
        ("weekly", u.weekly.or(l.user_weekly), Some(r.usage.weekly)),
        ("monthly", u.monthly.or(l.user_monthly), Some(r.usage.monthly)),
    ];
    let domain_rows = [
        ("max file size", l.max_file_size, None),
        ("storage", l.domain_storage, Some(r.usage.stored)),
        ("daily", l.domain_daily, Some(r.usage.daily)),
        ("weekly", l.domain_weekly, Some(r.usage.weekly)),
        ("monthly", l.domain_monthly, Some(r.usage.monthly)),
    ];
    let rows: Vec<Vec<String>> = if r.user.is_some() { &user_rows } else { &domain_rows }
        .iter()
        .map(|(name, limit, used)| {
            vec![name.to_string(), bytes(*limit), used.map_or_else(String::new, |u| u.to_string())]
        })
        .collect();
    table(&["LIMIT", "BYTES", "USED"], &rows);
    println!("reserved by open slots: {} bytes", r.usage.reserved);
}
