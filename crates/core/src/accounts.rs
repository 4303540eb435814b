//! What goes when a server removes a user account: nothing may go on acting in its name, and an
//! account registered later under the same name must not inherit anything.

use serde::Serialize;

use crate::invites::normalize_username;
use crate::store::{invites, quotas};
use crate::{Error, Hosting, Result};

/// What [`Hosting::account_removed`] took away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AccountRemoval {
    /// Contact invites into the account's roster, invites it created, password resets for it.
    pub invites_revoked: usize,
    /// Whether the account had upload exceptions (they are gone).
    pub upload_limits_cleared: bool,
}

impl Hosting {
    /// The server removed `username`'s account on `domain`. Its invites are revoked and its
    /// upload exceptions dropped, in one transaction. Its files leave the ledger as the server
    /// deletes them (the upkeep's sweep notices). A domain the store does not host has nothing
    /// to remove, which is not an error: servers call this for every account they remove.
    pub fn account_removed(&self, domain: &str, username: &str) -> Result<AccountRemoval> {
        let Some(domain) = self.domain(domain)? else { return Ok(AccountRemoval::default()) };
        let user = normalize_username(username)
            .ok_or_else(|| Error::InvalidArgument(format!("{username:?} is not a username")))?;
        let name = domain.name.as_str();
        let jid = format!("{user}@{name}");
        let now = self.now();
        self.store().write(|tx| {
            let ids = invites::invites_acting_for(tx, name, &jid, &user, now)?;
            for &id in &ids {
                invites::revoke(tx, id, now, "server")?;
                let detail = format!("account {jid} removed");
                crate::invites::audit_revoked(tx, now, name, id, &detail)?;
            }
            // Only what was set before the removal: made late, it must leave a new account's.
            let had_limits = quotas::drop_user_limits_set_by(tx, name, &user, now)?;
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
}
