//! `xmpp-hosting housekeeping …`: the core's housekeeping pass, for deployments without a server
//! timer (a cron job), or to run it now. A server's module runs the same pass from its timer.

use clap::Subcommand;
use xmpp_hosting_core::housekeeping::{LogLevel, Step};
use xmpp_hosting_core::{Hosting, Housekeeping, Result, Schedule};

use crate::output::Output;

#[derive(Subcommand)]
pub enum HousekeepingCommand {
    /// Run every step now: store checkpoint, re-checks of customers' domains that are due, the
    /// purge of unusable invites, the upload ledger's upkeep.
    Run {
        /// A directory uploads live in, swept for deleted files (repeat for several; none: the
        /// ledger is purged, no file is looked for).
        #[arg(long = "upload-root", value_name = "DIR")]
        upload_roots: Vec<String>,
    },
    /// Print the schedule the servers' timers follow (seconds between runs of each step).
    Schedule,
}

/// Runs the pass; `false` (exit 3) when a step failed.
pub fn run(h: &Hosting, out: &Output, cmd: HousekeepingCommand) -> Result<bool> {
    match cmd {
        HousekeepingCommand::Run { upload_roots } => {
            // A fresh pass has every step due. The CLI has no account store: registrations
            // that never finished wait for a server to answer for their accounts.
            let report = Housekeeping::new(h.clone(), Schedule::default()).run(&upload_roots, &[]);
            out.show(&report, |r| {
                let ran: Vec<&str> = r.ran.iter().map(|s| s.as_str()).collect();
                println!("Ran: {}", ran.join(", "));
                for line in &r.log {
                    match line.level {
                        LogLevel::Debug => {} // "Ran:" above says it
                        LogLevel::Info => println!("{}", line.text),
                        LogLevel::Warn => println!("warning: {}", line.text),
                    }
                }
                // The admins' notices are among the warnings: here the admin is the one reading.
            });
            Ok(report.failures.is_empty())
        }
        HousekeepingCommand::Schedule => {
            let schedule = Schedule::default();
            out.show(&schedule, |s| {
                for step in Step::ALL {
                    println!("{:<15} every {} s", step.as_str(), s.interval(step));
                }
                println!("{:<15} {} domains a pass", "recheck_batch", s.recheck_batch);
            });
            Ok(true)
        }
    }
}
