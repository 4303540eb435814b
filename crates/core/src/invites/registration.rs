//! The registration gate: decides whether an account may be created, and spends an invite's use
//! only when the server reports that the account exists.

use rusqlite::Connection;
use serde::Serialize;

use super::policy::{normalize_username, Refusal, RegistrationPolicy};
use super::{audit, token, AuditAction, InviteKind, InviteStatus};
use crate::store::invites as sql;
use crate::verification::is_suspended;
use crate::{DomainName, Error, Hosting, Result, Timestamp};

const DAY: i64 = 24 * 3600;

/// A client asks to register `username` on `domain`.
#[derive(Debug, Clone, Copy)]
pub struct RegistrationRequest<'a> {
    pub domain: &'a str,
    pub username: &'a str,
    /// The client's address, for the per-IP limits of `open` domains.
    pub ip: Option<&'a str>,
    /// The invite token the client presented (XEP-0401 `<preauth/>` or XEP-0445), if any.
    pub token: Option<&'a str>,
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum RegistrationDecision {
    /// Go ahead, then report the outcome with [`Hosting::finish_registration`].
    Allowed(RegistrationTicket),
    Refused(Refusal),
}

/// A registration in progress. Whatever the server does, it must finish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationTicket {
    pub id: i64,
    /// The username, case-folded.
    pub username: String,
    /// The invite whose use this registration holds.
    pub invite_id: Option<i64>,
    pub invite_kind: Option<InviteKind>,
    /// For roster invites: the bare JID the new account and the inviter subscribe each other with.
    pub roster_with: Option<String>,
    /// A password reset of an existing account, not a new account.
    pub reset: bool,
}

impl Hosting {
    /// Decides a registration. When allowed, the invite's use (if any) is held and the attempt
    /// counts against the per-IP limits until [`Hosting::finish_registration`] says how it ended.
    pub fn begin_registration(&self, req: &RegistrationRequest<'_>) -> Result<RegistrationDecision> {
        let domain = self.require_domain(req.domain)?;
        let settings = &domain.settings.registration;
        let name = &domain.name;
        let refuse = |r| Ok(RegistrationDecision::Refused(r));
        let Some(username) = normalize_username(req.username) else { return refuse(Refusal::InvalidUsername) };
        if settings.policy == RegistrationPolicy::Closed {
            return refuse(Refusal::RegistrationClosed);
        }
        if settings.is_blocked(&username) {
            return refuse(Refusal::UsernameBlocked);
        }
        let ip = req.ip.filter(|ip| !ip.is_empty()).map(canonical_ip);
        let ip = ip.as_deref();
        let now = self.now();

        self.store().write(|tx| {
            if is_suspended(tx, &domain)? {
                return refuse(Refusal::DomainSuspended);
            }
            let (invite_id, invite_kind, roster_with) = match req.token {
                Some(t) => {
                    let invite =
                        if token::is_well_formed(t) { sql::invite_by_hash(tx, name, &token::hash(t))? } else { None };
                    let Some(invite) = invite.filter(|i| i.status(now) == InviteStatus::Active) else {
                        return refuse(Refusal::InvalidInvite);
                    };
                    if invite.username.as_ref().is_some_and(|u| *u != username) {
                        return refuse(Refusal::UsernameMismatch);
                    }
                    if invite.username.is_none() && settings.is_reserved(&username) {
                        return refuse(Refusal::UsernameReserved);
                    }
                    if invite.username.is_none() && sql::username_held_by_invite(tx, name, &username, now)? {
                        return refuse(Refusal::UsernameReserved);
                    }
                    if !sql::claim_use(tx, invite.id, now)? {
                        return refuse(Refusal::InvalidInvite);
                    }
                    (Some(invite.id), Some(invite.kind), invite.inviter)
                }
                None => {
                    if settings.policy == RegistrationPolicy::Invite {
                        return refuse(Refusal::InviteRequired);
                    }
                    if settings.is_reserved(&username) || sql::username_held_by_invite(tx, name, &username, now)? {
                        return refuse(Refusal::UsernameReserved);
                    }
                    if let Some(ip) = ip {
                        if let Some(refusal) = ip_limits(tx, name, settings, ip, now)? {
                            return refuse(refusal);
                        }
                    }
                    (None, None, None)
                }
            };
            let id = sql::insert_registration(tx, name, &username, ip, invite_id, now)?;
            Ok(RegistrationDecision::Allowed(RegistrationTicket {
                id,
                username,
                invite_id,
                invite_kind,
                roster_with,
                reset: invite_kind == Some(InviteKind::Reset),
            }))
        })
    }

    /// Reports how a registration ended. When the account was not created, the invite's use is
    /// given back and the attempt no longer counts against the address.
    pub fn finish_registration(&self, ticket_id: i64, created: bool) -> Result<()> {
        let now = self.now();
        self.store().write(|tx| settle(tx, ticket_id, created, now, "registration failed"))
    }
}

/// Records the outcome of a pending registration: a created account redeems the invite's use,
/// a failed one gives it back.
pub(super) fn settle(tx: &Connection, id: i64, created: bool, now: Timestamp, why: &str) -> Result<()> {
    let (domain, username, invite_id) =
        sql::pending_registration(tx, id)?.ok_or_else(|| Error::not_found("pending registration", id.to_string()))?;
    sql::finish_registration(tx, id, created, now)?;
    let Some(invite_id) = invite_id else { return Ok(()) };
    if created {
        let jid = format!("{username}@{domain}");
        audit(tx, now, &domain, invite_id, AuditAction::Redeemed, Some(&jid), None)
    } else {
        sql::return_use(tx, invite_id)?;
        audit(tx, now, &domain, invite_id, AuditAction::Returned, Some(&username), Some(why))
    }
}

/// An address as the per-IP limits count it. A dual-stack listener shows an IPv4 client as
/// `::ffff:a.b.c.d` (ejabberd does; Prosody and the CLI see `a.b.c.d`): both are one client, so
/// the mapped form counts as the IPv4 address, and every address is written one way (`::1`, not
/// `0:0:0:0:0:0:0:1`). Text that is not an address is counted as given.
pub fn canonical_ip(ip: &str) -> String {
    match ip.trim().parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        Ok(v4) => v4.to_string(),
        Err(_) => ip.to_string(),
    }
}

/// The per-IP abuse limits of `open` registration. A limit of 0 is no limit, as an unset one:
/// "at most 0 a day" would close registration, which `closed` says plainly.
fn ip_limits(
    tx: &Connection,
    domain: &DomainName,
    settings: &super::RegistrationSettings,
    ip: &str,
    now: Timestamp,
) -> Result<Option<Refusal>> {
    let min_between = settings.min_seconds_between_per_ip.filter(|&s| s > 0);
    let max_per_day = settings.max_per_ip_per_day.filter(|&n| n > 0);
    if min_between.is_none() && max_per_day.is_none() {
        return Ok(None);
    }
    let recent = sql::registrations_from_ip(tx, domain, ip, now - DAY)?;
    if let (Some(min), Some(&last)) = (min_between, recent.last()) {
        let min = min.min(DAY as u64) as i64;
        if now - last < min {
            return Ok(Some(Refusal::TooSoon { retry_at: last + min }));
        }
    }
    if let Some(max) = max_per_day {
        let max = max as usize;
        if recent.len() >= max {
            // Room frees up when the oldest registration that still counts leaves the window
            // (max >= 1 here, so the index is inside `recent`).
            let oldest_counting = recent[recent.len() - max];
            return Ok(Some(Refusal::TooMany { retry_at: oldest_counting + DAY }));
        }
    }
    Ok(None)
}
