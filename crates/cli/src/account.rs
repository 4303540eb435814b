//! `xmpp-hosting account removed DOMAIN USER`: tell the store about an account removed outside a
//! server that would have told it (`prosodyctl deluser` runs without the module, a script, a
//! restore): its invites are revoked and its upload exceptions dropped.

use clap::Subcommand;
use xmpp_hosting_core::{Hosting, Result};

use crate::output::Output;

#[derive(Subcommand)]
pub enum AccountCommand {
    /// The account USER@DOMAIN was removed.
    Removed { domain: String, user: String },
}

pub fn run(h: &Hosting, out: &Output, cmd: AccountCommand) -> Result<()> {
    let AccountCommand::Removed { domain, user } = cmd;
    // The servers tell the store of every account they remove, hosted here or not; an admin
    // naming a domain the store does not host has mistyped it.
    h.require_domain(&domain)?;
    let removed = h.account_removed(&domain, &user)?;
    out.show(&removed, |r| {
        let limits = if r.upload_limits_cleared { ", upload exceptions dropped" } else { "" };
        println!("{user}@{domain}: {} invite(s) revoked{limits}", r.invites_revoked)
    });
    Ok(())
}
