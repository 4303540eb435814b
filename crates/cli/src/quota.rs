//! `xmpp-hosting quota …`: upload limits and usage.

use clap::Subcommand;
use xmpp_hosting_core::{texts, Hosting, Result};

use crate::output::{table, Output};

#[derive(Subcommand)]
pub enum QuotaCommand {
    /// Show a domain's (or one user's) limits and usage; for a domain also the limits each user
    /// has by default, for a user their exceptions.
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

/// Runs a quota command; `false` when an audit found drift (the caller exits 3).
pub fn run(h: &Hosting, out: &Output, cmd: QuotaCommand) -> Result<bool> {
    match cmd {
        // The core merges the limits and words the report, as on the servers' command lines.
        QuotaCommand::Show { domain, user } => {
            out.show(&h.upload_quota_view(&domain, user.as_deref())?, |view| println!("{}", view.describe()));
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
            let report = h.global_upload_report()?;
            out.show(&report, |r| {
                let limit = r.limits.storage.map_or_else(|| "no limit".into(), |b| format!("{b} bytes"));
                println!("stored {} bytes, reserved {} bytes, limit {limit}", r.usage.stored, r.usage.reserved)
            });
        }
        QuotaCommand::Audit { repair } => {
            let drifts = h.audit_upload_ledger(repair)?;
            out.show(&drifts, |drifts| {
                // The scope's name and the verdicts are the core's words, as on both servers.
                let rows: Vec<Vec<String>> = drifts
                    .iter()
                    .map(|d| {
                        vec![
                            d.scope_name(),
                            format!("{} -> {}", d.stored, d.counted_stored),
                            format!("{} -> {}", d.reserved, d.counted_reserved),
                        ]
                    })
                    .collect();
                if rows.is_empty() {
                    println!("{}", texts::AUDIT_MATCHES);
                } else {
                    table(&["SCOPE", "STORED", "RESERVED"], &rows);
                    println!("{}", texts::audit_outcome(repair));
                }
            });
            return Ok(drifts.is_empty() || repair);
        }
    }
    Ok(true)
}
