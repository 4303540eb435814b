//! `xmpp-hosting retention …`: how long each domain keeps archives and uploads, the sweeps
//! that delete what expired, and their audit log. The rules are the core's; this only parses
//! and prints.

use std::io::IsTerminal;
use std::sync::Arc;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use xmpp_hosting_core::retention::{Kind, Period, Progress, SweepOptions, SweepRecord};
use xmpp_hosting_core::{Error, Hosting, Result};

use crate::output::{table, time, Output};

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Show a domain's retention policy (with --user, how long that user's own archive is kept).
    Show {
        domain: String,
        #[arg(long)]
        user: Option<String>,
    },
    /// Set how long something is kept: `retention set example.org archive 30d` (archive, muc,
    /// uploads, backups; "1w", "30d", "1y", seconds, or "never"). With --user, that user's own
    /// shorter archive retention ("default" removes it).
    Set {
        domain: String,
        what: String,
        /// Taken as written ("-1d" too), so the core says what is wrong with it.
        #[arg(allow_hyphen_values = true)]
        value: String,
        #[arg(long)]
        user: Option<String>,
    },
    /// Delete what has expired now (each kind with a period, or only --kind); --dry-run counts
    /// what would go. Exit 3 when something could not be deleted.
    Sweep {
        domain: String,
        #[arg(long, value_parser = ["archive", "muc", "uploads"])]
        kind: Option<String>,
        #[arg(long)]
        dry_run: bool,
        /// An upload directory besides the ones the servers registered (repeat for several).
        #[arg(long = "upload-root", value_name = "DIR")]
        upload_roots: Vec<String>,
    },
    /// The audit log of sweeps, newest first (of one domain, or of all).
    Log {
        domain: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

impl RetentionCommand {
    pub fn reads_only(&self) -> bool {
        matches!(self, RetentionCommand::Show { .. } | RetentionCommand::Log { .. })
    }
}

/// A kind the sweep did not run, and why.
#[derive(Serialize)]
struct Skipped {
    kind: Kind,
    reason: String,
}

#[derive(Serialize)]
struct SweepOutcome {
    sweeps: Vec<SweepRecord>,
    skipped: Vec<Skipped>,
}

/// Runs a retention command; `false` (exit 3) when a sweep left files it could not delete.
pub fn run(h: &Hosting, out: &Output, cmd: RetentionCommand) -> Result<bool> {
    match cmd {
        RetentionCommand::Show { domain, user: None } => {
            let policy = h.retention_policy(&domain)?;
            out.show(&policy, |p| {
                let rows: Vec<Vec<String>> = [
                    ("archive", p.archive, "one-to-one archives"),
                    ("muc", p.muc, "group chat archives"),
                    ("uploads", p.uploads, "uploaded files"),
                    ("backups", p.backups, "backups (published, not swept)"),
                ]
                .into_iter()
                .map(|(name, period, what)| vec![name.to_string(), period.to_string(), what.to_string()])
                .collect();
                table(&["KIND", "KEPT FOR", "WHAT"], &rows);
            });
        }
        RetentionCommand::Show { domain, user: Some(user) } => {
            let period = h.user_archive_retention(&domain, &user)?;
            #[derive(Serialize)]
            struct UserRetention {
                archive: Period,
            }
            out.show(&UserRetention { archive: period }, |r| {
                println!("{user}@{domain}: archive kept for {}", r.archive)
            });
        }
        RetentionCommand::Set { domain, what, value, user: Some(user) } => {
            if what != "archive" {
                return Err(Error::InvalidArgument(format!(
                    "a user chooses only their own archive's retention, not {what:?}"
                )));
            }
            let value = (value != "default").then_some(value.as_str());
            h.set_user_archive_retention(&domain, &user, value)?;
            let period = h.user_archive_retention(&domain, &user)?;
            #[derive(Serialize)]
            struct UserRetention {
                archive: Period,
            }
            out.show(&UserRetention { archive: period }, |r| {
                println!("{user}@{domain}: archive kept for {}", r.archive)
            });
        }
        RetentionCommand::Set { domain, what, value, user: None } => {
            let policy = h.set_retention(&domain, &what, &value)?;
            out.show(&policy, |p| {
                let period = match what.as_str() {
                    "archive" => p.archive,
                    "muc" => p.muc,
                    "uploads" => p.uploads,
                    _ => p.backups,
                };
                println!("{domain}: {what} kept for {period}; takes effect at the next sweep");
            });
        }
        RetentionCommand::Sweep { domain, kind, dry_run, upload_roots } => {
            let policy = h.retention_policy(&domain)?;
            // Without --kind, a kind the core cannot sweep (yet) is skipped with the reason and
            // does not stop the others; asked for alone, the reason is the answer.
            let every_kind = kind.is_none();
            let kinds: Vec<Kind> = match kind {
                Some(k) => vec![Kind::parse(&k)?],
                None => Kind::ALL.into_iter().filter(|&k| policy.period(k) != Period::Never).collect(),
            };
            if kinds.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "{domain} keeps everything for ever: set a period first (retention set {domain} uploads 30d)"
                )));
            }
            let terminal = std::io::stderr().is_terminal() && !out.json;
            let mut outcome = SweepOutcome { sweeps: Vec::new(), skipped: Vec::new() };
            for k in kinds {
                let bar = terminal.then(|| sweep_bar(&domain, k));
                let progress = bar.clone().map(|bar| -> Progress {
                    Arc::new(move |rec: &SweepRecord| {
                        bar.set_position(rec.deleted.max(0) as u64);
                        bar.set_message(format!("{} steps, longest {} ms", rec.steps, rec.longest_step_us / 1000));
                    })
                });
                let options = SweepOptions { dry_run, progress, ..Default::default() };
                let result = h.retention_sweep(&domain, k, &upload_roots, &options);
                if let Some(bar) = bar {
                    bar.finish();
                }
                match result {
                    Ok(rec) => outcome.sweeps.push(rec),
                    Err(e @ Error::InvalidArgument(_)) if every_kind => {
                        outcome.skipped.push(Skipped { kind: k, reason: e.to_string() })
                    }
                    Err(e) => return Err(e),
                }
            }
            let clean = outcome.sweeps.iter().all(|s| s.failed == 0);
            out.show(&outcome, |o| {
                for s in &o.sweeps {
                    println!("{}", s.describe());
                }
                for s in &o.skipped {
                    println!("{}: skipped: {}", s.kind.as_str(), s.reason);
                }
            });
            return Ok(clean);
        }
        RetentionCommand::Log { domain, limit } => {
            let log = h.retention_log(domain.as_deref(), limit)?;
            out.show(&log, |log| {
                let rows: Vec<Vec<String>> = log
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.to_string(),
                            time(Some(s.started_at)),
                            s.domain.clone(),
                            s.kind.as_str().to_string(),
                            time(Some(s.cutoff)),
                            if s.dry_run { format!("{} (dry run)", s.state.as_str()) } else { s.state.as_str().into() },
                            s.deleted.to_string(),
                            s.bytes.to_string(),
                            s.failed.to_string(),
                            format!("{:.1}", s.duration_us as f64 / 1000.0),
                            format!("{:.2}", s.longest_step_us as f64 / 1000.0),
                            s.parts.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID",
                        "STARTED",
                        "DOMAIN",
                        "KIND",
                        "CUTOFF",
                        "STATE",
                        "DELETED",
                        "BYTES",
                        "FAILED",
                        "MS",
                        "LONGEST MS",
                        "PARTS",
                    ],
                    &rows,
                );
                for s in log.iter().filter(|s| !s.errors.is_empty()) {
                    println!("#{}: {}", s.id, s.errors.join("; "));
                }
            });
        }
    }
    Ok(true)
}

/// A terminal's view of one running sweep: items deleted so far, steps and the longest one. The
/// total is not known up front (counting it would cost a pass over the data), so it spins.
fn sweep_bar(domain: &str, kind: Kind) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_prefix(format!("Sweeping {} of {domain}", kind.what()));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix}: {pos} deleted, {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
