//! Pre-authenticated subscription (XEP-0379): someone who already has an account, here or on
//! any server, opens a roster invite and sends the inviter a subscription request carrying the
//! invite's token. The inviter's server approves it on the inviter's behalf, and the invite's
//! use is spent, the same use a new account would have spent registering with it.

use serde::Serialize;

use super::{audit, bare_jid_on, token, AuditAction, InviteKind, InviteStatus};
use crate::store::invites as sql;
use crate::verification::is_suspended;
use crate::{DomainName, Error, Hosting, Result};

/// The longest JID RFC 7622 allows: three parts of at most 1023 bytes and two separators.
const MAX_JID_LEN: usize = 3071;

/// What the inviter's server does with a subscription request that carries a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum SubscriptionDecision {
    /// Approve the request for the inviter and ask the contact back; the use is spent.
    Approved { invite_id: i64 },
    /// Handle the request as any other: the inviter decides. The token is not a reason to
    /// refuse a subscription, only to skip the question.
    Ignored { reason: IgnoredToken },
}

/// Why a token does not pre-approve a subscription (for the server's log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IgnoredToken {
    /// Unknown, malformed, expired, used up or revoked.
    InvalidInvite,
    /// An account or password-reset invite: it names no one to subscribe to.
    NotARosterInvite,
    /// A roster invite from another user of the domain.
    OtherInviter,
    /// The inviter presenting their own invite.
    OwnInvite,
    /// The domain is suspended (see [`crate::verification`]).
    DomainSuspended,
}

impl Hosting {
    /// Decides a subscription request from `contact` (a bare JID anywhere) to the local user
    /// `inviter` (a bare JID on a hosted domain) that came with `token`.
    pub fn preauthorize_subscription(&self, inviter: &str, contact: &str, token: &str) -> Result<SubscriptionDecision> {
        let host = inviter.split_once('@').map(|(_, host)| host).unwrap_or_default();
        let host = DomainName::parse(host)
            .map_err(|_| Error::InvalidArgument(format!("{inviter:?} is not a bare JID on a hosted domain")))?;
        let domain = self.require_domain(host.as_str())?;
        let inviter = bare_jid_on(inviter, &domain.name)?;
        let contact = contact.trim().to_lowercase();
        if contact.is_empty() || contact.len() > MAX_JID_LEN || contact.contains(['/', ' ']) {
            return Err(Error::InvalidArgument(format!("{contact:?} is not a bare JID")));
        }
        let ignored = |reason| Ok(SubscriptionDecision::Ignored { reason });
        if contact == inviter {
            return ignored(IgnoredToken::OwnInvite);
        }
        if !token::is_well_formed(token) {
            return ignored(IgnoredToken::InvalidInvite);
        }
        let now = self.now();
        self.store().write(|tx| {
            if is_suspended(tx, &domain)? {
                return ignored(IgnoredToken::DomainSuspended);
            }
            let invite = sql::invite_by_hash(tx, &domain.name, &token::hash(token))?;
            let Some(invite) = invite.filter(|i| i.status(now) == InviteStatus::Active) else {
                return ignored(IgnoredToken::InvalidInvite);
            };
            if invite.kind != InviteKind::Roster {
                return ignored(IgnoredToken::NotARosterInvite);
            }
            if invite.inviter.as_deref() != Some(inviter.as_str()) {
                return ignored(IgnoredToken::OtherInviter);
            }
            if !sql::claim_use(tx, invite.id, now)? {
                return ignored(IgnoredToken::InvalidInvite);
            }
            let detail = format!("subscription to {inviter} pre-approved");
            audit(tx, now, domain.name.as_str(), invite.id, AuditAction::Redeemed, Some(&contact), Some(&detail))?;
            Ok(SubscriptionDecision::Approved { invite_id: invite.id })
        })
    }
}
