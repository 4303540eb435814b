//! Pre-authenticated subscription (XEP-0379): someone who already has an account, here or on
//! any server, opens a roster invite and sends the inviter a subscription request carrying the
//! invite's token. The inviter's server approves it on the inviter's behalf, and the invite's
//! use is spent, the same use a new account would have spent registering with it.

use serde::Serialize;

use super::{audit, bare_jid_on, token, AuditAction, InviteKind, InviteStatus};
use crate::store::invites as sql;
use crate::verification::is_suspended;
use crate::{Domain, DomainName, Error, Hosting, Result, Timestamp};

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
        let hash = token::hash(token);
        // Anyone on the federation can send a token: only one that could be approved is worth
        // the write lock, which another process (the command line, a backup) may be holding.
        if let Err(reason) = self.store().read(|c| usable_invite(c, &domain, &inviter, &hash, now))? {
            return ignored(reason);
        }
        self.store().write(|tx| {
            // Again: the use may have been spent, or the domain suspended, since the read.
            let invite_id = match usable_invite(tx, &domain, &inviter, &hash, now)? {
                Ok(id) => id,
                Err(reason) => return ignored(reason),
            };
            if !sql::claim_use(tx, invite_id, now)? {
                return ignored(IgnoredToken::InvalidInvite);
            }
            let detail = format!("subscription to {inviter} pre-approved");
            audit(tx, now, domain.name.as_str(), invite_id, AuditAction::Redeemed, Some(&contact), Some(&detail))?;
            Ok(SubscriptionDecision::Approved { invite_id })
        })
    }
}

/// The id of the active roster invite of `inviter` whose token hashes to `hash`, or why there is
/// none that could approve a subscription.
fn usable_invite(
    c: &rusqlite::Connection,
    domain: &Domain,
    inviter: &str,
    hash: &[u8; 32],
    now: Timestamp,
) -> Result<std::result::Result<i64, IgnoredToken>> {
    if is_suspended(c, domain)? {
        return Ok(Err(IgnoredToken::DomainSuspended));
    }
    let invite = sql::invite_by_hash(c, &domain.name, hash)?;
    let Some(invite) = invite.filter(|i| i.status(now) == InviteStatus::Active) else {
        return Ok(Err(IgnoredToken::InvalidInvite));
    };
    if invite.kind != InviteKind::Roster {
        return Ok(Err(IgnoredToken::NotARosterInvite));
    }
    if invite.inviter.as_deref() != Some(inviter) {
        return Ok(Err(IgnoredToken::OtherInviter));
    }
    Ok(Ok(invite.id))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::invites::{Creator, NewInvite};
    use crate::test_store::TestStore;
    use crate::{NowOrLater, OpenOptions};

    #[test]
    fn a_token_that_approves_nothing_never_waits_for_another_process_write_lock() {
        let store = TestStore::new("preauth-lock");
        let options = OpenOptions { busy_timeout: Duration::from_secs(2), ..OpenOptions::default() };
        let h = Hosting::open_with(&store.path, &options).unwrap();
        h.add_domain("example.org").unwrap();
        h.set_domain_setting("example.org", "registration.users_may_invite", "true").unwrap();
        let mut roster = NewInvite::account("example.org");
        (roster.kind, roster.created_by) = (InviteKind::Roster, Creator::User("alice@example.org".into()));
        let roster = h.create_invite(&roster).unwrap();
        let account = h.create_invite(&NewInvite::account("example.org")).unwrap();

        // Another process (the command line, a backup) holds the store's write lock.
        let other = rusqlite::Connection::open(&store.path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let decide = |to: &str, token: &str| {
            let started = Instant::now();
            let decision = h.preauthorize_subscription(to, "mallory@elsewhere.example", token);
            let took = started.elapsed();
            assert!(took < Duration::from_millis(500), "{to} {token}: waited {took:?} for the lock");
            decision.unwrap()
        };
        let ignored = |reason| SubscriptionDecision::Ignored { reason };
        assert_eq!(decide("alice@example.org", "AAAAAAAAAAAAAAAA"), ignored(IgnoredToken::InvalidInvite));
        assert_eq!(decide("alice@example.org", &account.token), ignored(IgnoredToken::NotARosterInvite));
        assert_eq!(decide("carol@example.org", &roster.token), ignored(IgnoredToken::OtherInviter));

        // The one token that approves something needs the lock: on the server's loop it goes to
        // the worker, which approves it once the lock is free.
        let (to, token) = ("alice@example.org".to_string(), roster.token.clone());
        let approve = move |w: &Hosting| w.preauthorize_subscription(&to, "bob@elsewhere.example", &token);
        let NowOrLater::Later(pending) = h.now_or_later(approve).unwrap() else {
            panic!("approved while another process held the write lock");
        };
        other.execute_batch("COMMIT").unwrap();
        let approved = pending.wait().unwrap();
        assert_eq!(approved, SubscriptionDecision::Approved { invite_id: roster.invite.id });
    }
}
