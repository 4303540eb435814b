//! `xmpp-hosting invite …`

use clap::{Args, Subcommand, ValueEnum};
use xmpp_hosting_core::invites::{parse_invite_id, Creator, Expiry, InviteKind, NewInvite};
use xmpp_hosting_core::{Hosting, Result};

use crate::output::{table, time, Output};

#[derive(Subcommand)]
pub enum InviteCommand {
    /// Create an invite and print its token, URI and landing URL (the token is shown only now).
    Create(CreateArgs),
    /// List a domain's invites with their remaining uses and expiry.
    List { domain: String },
    /// Revoke an invite by its id.
    Revoke {
        domain: String,
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Delete invites nobody can use any more (expired, used up, revoked).
    Purge,
    /// Show the newest entries of a domain's invite history.
    Audit {
        domain: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Account,
    Roster,
    Reset,
}

#[derive(Args)]
pub struct CreateArgs {
    domain: String,
    /// What the invite does.
    #[arg(long, value_enum, default_value = "account")]
    kind: Kind,
    /// The only username it registers (reserved until it expires), or the account to reset.
    #[arg(long)]
    username: Option<String>,
    /// For roster invites: the bare JID the new account is subscribed with.
    #[arg(long)]
    inviter: Option<String>,
    /// How many accounts it may create.
    #[arg(long, default_value_t = 1)]
    uses: u32,
    /// Lifetime in seconds (at most ten years), or "never"; the domain's default (7 days) when absent.
    #[arg(long, allow_hyphen_values = true)]
    expires_in: Option<String>,
    #[arg(long)]
    note: Option<String>,
}

pub fn run(h: &Hosting, out: &Output, cmd: InviteCommand) -> Result<()> {
    match cmd {
        InviteCommand::Create(a) => {
            let expiry = match a.expires_in.as_deref() {
                None => Expiry::Default,
                Some(s) => Expiry::parse(s)?,
            };
            let new = NewInvite {
                domain: a.domain,
                kind: match a.kind {
                    Kind::Account => InviteKind::Account,
                    Kind::Roster => InviteKind::Roster,
                    Kind::Reset => InviteKind::Reset,
                },
                username: a.username,
                inviter: a.inviter,
                uses: a.uses,
                expiry,
                note: a.note,
                created_by: Creator::Admin,
            };
            out.show(&h.create_invite(&new)?, |c| {
                println!("invite {} created on {}", c.invite.id, c.invite.domain);
                println!("token:   {}", c.token);
                println!("uri:     {}", c.uri);
                if let Some(url) = &c.landing_url {
                    println!("link:    {url}");
                }
                println!("uses:    {}", c.invite.uses_total);
                println!("expires: {}", time(c.invite.expires_at));
            });
        }
        InviteCommand::List { domain } => {
            out.show(&h.invite_list(&domain)?, |list| {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|l| {
                        let i = &l.invite;
                        vec![
                            i.id.to_string(),
                            i.kind.as_str().into(),
                            l.status.as_str().into(),
                            format!("{}/{}", i.uses_left, i.uses_total),
                            time(i.expires_at),
                            i.username.clone().unwrap_or_default(),
                            i.created_by.clone(),
                            i.note.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(&["ID", "KIND", "STATUS", "LEFT", "EXPIRES", "USERNAME", "BY", "NOTE"], &rows);
            });
        }
        InviteCommand::Revoke { domain, id } => out
            .show(&h.revoke_invite(&domain, parse_invite_id(&id)?, &Creator::Admin)?, |i| {
                println!("revoked invite {}", i.id)
            }),
        InviteCommand::Purge => out.show(&h.purge_invites()?, |r| {
            println!("removed {} invite(s)", r.invites_removed);
            if r.registrations_unsettled > 0 {
                println!(
                    "{} registration(s) never finished: the server settles them by its account store",
                    r.registrations_unsettled
                );
            }
        }),
        InviteCommand::Audit { domain, limit } => out.show(&h.invite_audit(&domain, limit)?, |entries| {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        time(Some(e.at)),
                        e.invite_id.to_string(),
                        e.action.clone(),
                        e.actor.clone().unwrap_or_default(),
                        e.detail.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table(&["AT", "INVITE", "ACTION", "ACTOR", "DETAIL"], &rows);
        }),
    }
    Ok(())
}
