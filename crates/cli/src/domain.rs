//! `xmpp-hosting domain …`

use clap::Subcommand;
use xmpp_hosting_core::verification::ClaimState;
use xmpp_hosting_core::{Domain, DomainName, Error, Hosting, Result};

use crate::output::{table, time, Output};

#[derive(Subcommand)]
pub enum DomainCommand {
    /// Start hosting a domain (Unicode or ASCII form).
    Add { name: String },
    /// List hosted domains.
    List,
    /// Show one domain with its settings.
    Show { name: String },
    /// Stop hosting a domain and delete everything stored for it; customers' claims on it end
    /// (recorded in its history), so no later proof brings it back.
    Remove { name: String },
    /// Start a customer's claim on a domain and print the DNS record that proves it.
    Claim {
        name: String,
        #[arg(long)]
        account: String,
    },
    /// Look for the proof now and record the outcome; says what was found instead of the proof,
    /// and exits 3 unless the claim is verified.
    Verify {
        name: String,
        #[arg(long)]
        account: String,
    },
    /// Count ACCOUNT's claim as verified without a proof (lifting a suspension), recorded with
    /// REASON in the domain's history; the next check that finds no proof starts the grace
    /// period again.
    Override {
        name: String,
        #[arg(long)]
        account: String,
        #[arg(long)]
        reason: String,
    },
    /// List claims (of one domain, or all) with their verification state.
    Claims { name: Option<String> },
    /// Show the recorded verification state changes of a domain.
    History { name: String },
    /// Change one setting: `domain set example.org registration.policy open`
    /// (VALUE is JSON such as 3, true, ["a","b"], null, or else a plain string).
    Set { name: String, setting: String, value: String },
    /// Show a domain's settings, or change one: `domain settings example.org shared_roster on`
    /// (everyone is in everybody else's contact list; `off` takes it back). Any setting `set`
    /// takes is taken here too.
    Settings { name: String, setting: Option<String>, value: Option<String> },
}

impl DomainCommand {
    /// Whether the command only reads the store (it is then opened read-only).
    pub fn reads_only(&self) -> bool {
        matches!(
            self,
            Self::List
                | Self::Show { .. }
                | Self::Claims { .. }
                | Self::History { .. }
                | Self::Settings { setting: None, .. }
        )
    }
}

/// Runs a domain command; `false` when a verification did not verify (the caller exits 3).
pub fn run(h: &Hosting, out: &Output, cmd: DomainCommand) -> Result<bool> {
    match cmd {
        DomainCommand::Add { name } => out.show(&h.add_domain(&name)?, |d| println!("added {}", label(d))),
        DomainCommand::List => out.show(&h.domains()?, |ds| {
            let rows: Vec<Vec<String>> = ds
                .iter()
                .map(|d| {
                    vec![
                        label(d),
                        format!("{:?}", d.settings.registration.policy).to_lowercase(),
                        time(Some(d.created_at)),
                    ]
                })
                .collect();
            table(&["DOMAIN", "REGISTRATION", "ADDED"], &rows);
        }),
        DomainCommand::Show { name } => out.show(&h.require_domain(&name)?, |d| {
            println!("domain:   {}", label(d));
            println!("added:    {}", time(Some(d.created_at)));
            println!("updated:  {}", time(Some(d.updated_at)));
            println!("settings: {}", serde_json::to_string_pretty(&d.settings).expect("serialisable"));
        }),
        DomainCommand::Claim { name, account } => {
            let claim = h.claim_domain(&name, &account)?;
            let how = h.verification_instructions(&claim.domain, &account)?;
            // The core words it, as prosodyctl and ejabberdctl print it.
            out.show(&serde_json::json!({ "claim": claim, "instructions": how }), |_| {
                println!("{}", claim.describe_with(&how))
            })
        }
        DomainCommand::Verify { name, account } => {
            let claim = h.verify_domain(&name, &account)?.wait()?;
            let verified = claim.state == ClaimState::Verified;
            out.show(&claim, |c| println!("{}", c.describe()));
            return Ok(verified);
        }
        DomainCommand::Override { name, account, reason } => {
            let claim = h.override_claim(&name, &account, &reason)?;
            out.show(&claim, |c| {
                println!("{} for {}: {} (operator override recorded)", c.domain, c.account, c.state.as_str())
            })
        }
        DomainCommand::Claims { name } => out.show(&h.claims(name.as_deref())?, |claims| {
            let rows: Vec<Vec<String>> = claims
                .iter()
                .map(|c| {
                    vec![
                        c.domain.clone(),
                        c.account.clone(),
                        c.state.as_str().into(),
                        time(c.last_checked_at),
                        c.last_error
                            .as_ref()
                            .map(|e| format!("DNS: {e}"))
                            .or_else(|| c.finding.clone())
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            table(&["DOMAIN", "ACCOUNT", "STATE", "CHECKED", "WHY"], &rows);
        }),
        DomainCommand::History { name } => out.show(&h.claim_history(&name)?, |events| {
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    let from = e.from.map_or("-", |s| s.as_str());
                    vec![time(Some(e.at)), e.account.clone(), format!("{from} -> {}", e.to.as_str()), e.reason.clone()]
                })
                .collect();
            table(&["AT", "ACCOUNT", "CHANGE", "REASON"], &rows);
        }),
        DomainCommand::Set { name, setting, value } => {
            out.show(&h.set_domain_setting(&name, &setting, &value)?, |d| println!("{} {setting} = {value}", d.name))
        }
        DomainCommand::Settings { name, setting: None, .. } => out.show(&h.require_domain(&name)?.settings, |s| {
            println!("{}", serde_json::to_string_pretty(s).expect("serialisable"))
        }),
        DomainCommand::Settings { name, setting: Some(setting), value } => {
            let value = value.ok_or_else(|| {
                Error::InvalidArgument(format!("give a value for {setting}: domain settings {name} {setting} VALUE"))
            })?;
            out.show(&h.set_domain_setting(&name, &setting, &value)?, |d| println!("{} {setting} = {value}", d.name))
        }
        DomainCommand::Remove { name } => {
            h.remove_domain(&name)?;
            // Report the name as it was stored, whichever form was typed.
            let removed = DomainName::parse(&name)?;
            out.show(&serde_json::json!({ "removed": removed.as_str() }), |_| {
                println!("removed {}", name_with_unicode(removed.as_str(), &removed.to_unicode()))
            });
        }
    }
    Ok(true)
}

/// The ASCII name, with the Unicode form beside it when they differ.
fn label(d: &Domain) -> String {
    name_with_unicode(d.name.as_str(), &d.unicode_name)
}

fn name_with_unicode(ascii: &str, unicode: &str) -> String {
    if ascii == unicode {
        ascii.to_owned()
    } else {
        format!("{ascii} ({unicode})")
    }
}
