//! What goes when a server removes a user account: nothing may go on acting in its name, and an
//! account registered later under the same name must not inherit anything.

use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::invites::normalize_username;
use crate::store::{invites, quotas};
use crate::{Error, Hosting, NowOrLater, Result};

/// What [`Hosting::account_removed`] took away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AccountRemoval {
    /// Contact invites into the account's roster, invites it created, password resets for it.
    pub invites_revoked: usize,
    /// Whether the account had upload exceptions (they are gone).
    pub upload_limits_cleared: bool,
}

/// A server's request to forget a removed account, made at once or tried again later behind
/// another process's lock ([`Hosting::now_or_in_background`], whose clock stops at the request).
/// Times are whole seconds, so "as of when it was asked" alone could not tell the removed
/// account's invites and exceptions from those a new account of the same name made in the same
/// second (registered at once, it may have made them before a lock held elsewhere came free):
/// the first try also notes the newest invite and exception numbers in the store (a read, which
/// waits for no writer), and every later try, a clone of the request, takes only what is
/// numbered up to them. Numbers only rise (see [`invites::last_invite_id`],
/// [`quotas::last_user_limits_seq`]).
#[derive(Debug, Clone)]
pub struct AccountRemovalRequest {
    domain: String,
    username: String,
    /// What the store held at the first try; shared by the request's clones (each retry is one).
    seen: Arc<OnceLock<Seen>>,
}

/// The newest invite id and user-exception number when a removal was first tried.
#[derive(Debug, Clone, Copy)]
struct Seen {
    last_invite: i64,
    last_limits: i64,
}

impl AccountRemovalRequest {
    pub fn new(domain: &str, username: &str) -> Self {
        AccountRemovalRequest { domain: domain.to_string(), username: username.to_string(), seen: Arc::default() }
    }

    /// What the store held at the request's first try: read now if this is it.
    fn seen(&self, h: &Hosting) -> Result<Seen> {
        if let Some(seen) = self.seen.get() {
            return Ok(*seen);
        }
        let seen = h.store().read(|c| {
            Ok(Seen { last_invite: invites::last_invite_id(c)?, last_limits: quotas::last_user_limits_seq(c)? })
        })?;
        Ok(*self.seen.get_or_init(|| seen))
    }
}

impl Hosting {
    /// The server removed `username`'s account on `domain`. Its invites are revoked and its
    /// upload exceptions dropped, in one transaction. Its files leave the ledger as the server
    /// deletes them (the upkeep's sweep notices). A domain the store does not host has nothing
    /// to remove, which is not an error: servers call this for every account they remove.
    pub fn account_removed(&self, domain: &str, username: &str) -> Result<AccountRemoval> {
        self.remove_account(&AccountRemovalRequest::new(domain, username))
    }

    /// [`Hosting::account_removed`] for a server's event loop: at once when nobody else holds
    /// the store's write lock, else by the core's worker, which tries until it is free; only
    /// what the account had when the server asked goes, however late the lock came free (see
    /// [`AccountRemovalRequest`]).
    pub fn account_removed_now_or_in_background(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<NowOrLater<AccountRemoval>> {
        let request = AccountRemovalRequest::new(domain, username);
        self.now_or_in_background(move |h| h.remove_account(&request))
    }

    /// One try of a removal request (see [`AccountRemovalRequest`]): a server that retries
    /// writes itself (ejabberd's background writes) makes every try with a clone of the request
    /// it built when the server asked.
    pub fn remove_account(&self, request: &AccountRemovalRequest) -> Result<AccountRemoval> {
        let seen = request.seen(self)?;
        let Some(domain) = self.domain(&request.domain)? else { return Ok(AccountRemoval::default()) };
        let user = normalize_username(&request.username)
            .ok_or_else(|| Error::InvalidArgument(format!("{:?} is not a username", request.username)))?;
        let name = domain.name.as_str();
        let jid = format!("{user}@{name}");
        let now = self.now();
        self.store().write(|tx| {
            let ids = invites::invites_acting_for(tx, name, &jid, &user, now, seen.last_invite)?;
            for &id in &ids {
                invites::revoke(tx, id, now, "server")?;
                let detail = format!("account {jid} removed");
                crate::invites::audit_revoked(tx, now, name, id, &detail)?;
            }
            // Only what was set before the removal: made late, it must leave a new account's.
            let had_limits = quotas::drop_user_limits_set_by(tx, name, &user, now, seen.last_limits)?;
            Ok(AccountRemoval { invites_revoked: ids.len(), upload_limits_cleared: had_limits })
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::invites::{Creator, InviteKind, NewInvite, RegistrationDecision, RegistrationRequest};
    use crate::quotas::UserUploadLimits;
    use crate::Hosting;

    #[test]
    fn a_removed_account_leaves_nothing_acting_in_its_name() {
        let h = Hosting::open_in_memory().unwrap();
        h.add_domain("example.org").unwrap();
        h.set_domain_setting("example.org", "registration.users_may_invite", "true").unwrap();
        let invite = |kind, username: Option<&str>, inviter: Option<&str>, by: Creator| {
            let mut new = NewInvite::account("example.org");
            (new.kind, new.username, new.inviter, new.created_by) =
                (kind, username.map(Into::into), inviter.map(Into::into), by);
            h.create_invite(&new).unwrap()
        };
        let theirs = invite(InviteKind::Roster, None, None, Creator::User("alice@example.org".into()));
        let into_roster = invite(InviteKind::Roster, None, Some("alice@example.org"), Creator::Admin);
        let reset = invite(InviteKind::Reset, Some("alice"), None, Creator::Admin);
        let someone_elses = invite(InviteKind::Roster, None, Some("bob@example.org"), Creator::Admin);
        let for_a_newcomer = invite(InviteKind::Account, None, None, Creator::Admin);
        let vip = UserUploadLimits { daily: Some(1), ..Default::default() };
        h.set_user_upload_limits("example.org", "alice", Some(&vip)).unwrap();

        let removed = h.account_removed("example.org", "Alice").unwrap();
        assert_eq!((removed.invites_revoked, removed.upload_limits_cleared), (3, true));
        for gone in [&theirs, &into_roster, &reset] {
            assert!(h.check_invite("example.org", &gone.token).unwrap().is_none());
        }
        for kept in [&someone_elses, &for_a_newcomer] {
            assert!(h.check_invite("example.org", &kept.token).unwrap().is_some());
        }
        assert_eq!(h.user_upload_limits("example.org", "alice").unwrap(), None);
        // A new alice registers with an account invite and inherits nothing.
        let req = RegistrationRequest {
            domain: "example.org",
            username: "alice",
            ip: None,
            token: Some(&for_a_newcomer.token),
        };
        assert!(matches!(h.begin_registration(&req).unwrap(), RegistrationDecision::Allowed(_)));
        let audit = h.invite_audit("example.org", 50).unwrap();
        assert_eq!(
            audit.iter().filter(|a| a.detail.as_deref() == Some("account alice@example.org removed")).count(),
            3
        );
        // Twice, or on a domain the store does not host: nothing to do.
        assert_eq!(h.account_removed("example.org", "alice").unwrap().invites_revoked, 0);
        assert_eq!(h.account_removed("elsewhere.example", "alice").unwrap().invites_revoked, 0);
        assert_eq!(h.account_removed("example.org", "").unwrap_err().code(), "invalid-argument");
    }

    #[test]
    fn a_late_removal_spares_what_a_new_account_of_the_same_name_made_in_the_same_second() {
        use crate::test_store::TestStore;
        use crate::{ManualClock, OpenOptions};
        const T: i64 = 1_700_000_000;
        let store = TestStore::new("late-removal-same-second");
        // A server's handle that does not wait for another process's lock, its clock stopped in
        // the one second everything below happens in.
        let options = OpenOptions { busy_timeout: std::time::Duration::ZERO, ..OpenOptions::default() };
        let h = Hosting::open_with(&store.path, &options).unwrap().with_clock(ManualClock::new(T));
        h.add_domain("example.org").unwrap();
        h.set_domain_setting("example.org", "registration.users_may_invite", "true").unwrap();
        let mut theirs = NewInvite::account("example.org");
        (theirs.kind, theirs.created_by) = (InviteKind::Roster, Creator::User("alice@example.org".into()));
        let old = h.create_invite(&theirs).unwrap();
        let limits = |storage| UserUploadLimits { storage: Some(storage), ..Default::default() };
        h.set_user_upload_limits("example.org", "alice", Some(&limits(1_000))).unwrap();

        // The server removes alice while another process holds the store's lock: the first try
        // fails, and is tried again (a clone of the request, as the worker's tries are) once the
        // lock is free.
        let asked = super::AccountRemovalRequest::new("example.org", "alice");
        let other = rusqlite::Connection::open(&store.path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert!(h.remove_account(&asked).unwrap_err().is_busy());
        other.execute_batch("ROLLBACK").unwrap();
        // Meanwhile, in the same second, a new alice registered, made a contact invite, and was
        // given an exception of her own.
        let new = h.create_invite(&theirs).unwrap();
        h.set_user_upload_limits("example.org", "alice", Some(&limits(2_000))).unwrap();

        let done = h.remove_account(&asked.clone()).unwrap();
        assert_eq!(done, super::AccountRemoval { invites_revoked: 1, upload_limits_cleared: false });
        assert!(h.check_invite("example.org", &old.token).unwrap().is_none(), "the old alice's invite stayed");
        assert!(h.check_invite("example.org", &new.token).unwrap().is_some(), "the new alice's invite was revoked");
        let kept = h.user_upload_limits("example.org", "alice").unwrap();
        assert_eq!(kept.and_then(|l| l.storage), Some(2_000), "the new alice's exception was dropped");
    }
}
