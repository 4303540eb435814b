//! `xmpp-hosting invite …`

use clap::{Args, Subcommand, ValueEnum};
use xmpp_hosting_core::invites::{Creator, Expiry, InviteKind, NewInvite};
use xmpp_hosting_core::{Error, Hosting, Result};

use crate::output::{table, time, Output};

#[derive(Subcommand)]
pub enum InviteCommand {
    /// Create an invite and print its token, URI and landing URL (the token is shown only now).
    Create(CreateArgs),
    /// List a domain's invites with their remaining uses and expiry.
    List { domain: String },
    /// Revoke an invite by its id.
    Revoke { domain: String, id: i64 },
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
    /// Lifetime in seconds, or "never"; the domain's default (7 days) when absent.
    #[arg(long)]
    expires_in: Option<String>,
    #[arg(long)]
    note: Option<String>,
}

pub fn run(h: &Hosting, out: &Output, cmd: InviteCommand) -> Result<()> {
    match cmd {
        InviteCommand::Create(a) => {
            let expiry = match a.expires_in.as_deref() {
                None => Expiry::Default,
                Some("never") => Expiry::Never,
                Some(s) => Expiry::After(s.parse().map_err(|_| {
                    Error::InvalidArgument(format!("--expires-in takes seconds or \"never\", not {s:?}"))
                })?),
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
            let now = h.now();
            out.show(&h.invites(&domain)?, |list| {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|i| {
                        vec![
                            i.id.to_string(),
                            i.kind.as_str().into(),
                            format!("{:?}", i.status(now)).to_lowercase(),
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
        InviteCommand::Revoke { domain, id } => {
            out.show(&h.revoke_invite(&domain, id, &Creator::Admin)?, |i| println!("revoked invite {}", i.id))
        }
        InviteCommand::Purge => out.show(&h.purge_invites()?, |r| {
            println!(
                "removed {} invite(s); gave back {} stale registration(s)",
                r.invites_removed, r.stale_registrations_failed
            )
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
