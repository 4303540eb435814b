//! The hosted domain's own users: its owner manages them, and "everyone is in everybody else's
//! contact list" (the shared roster).
//!
//! Both servers offer the same XEP-0050 commands (create, list, change password, delete, the
//! registration policy) and carry them out through their own account API (Prosody's usermanager,
//! ejabberd's ejabberd_auth). Who may run them, on which accounts, and what the client is told
//! are decided here, once: an owner of a.example can never list or touch b.example, whichever
//! server and whichever host the command was sent to.
//!
//! The shared roster is a per-domain setting (`shared_roster`); each server enforces it with its
//! own mechanism (Prosody's roster hooks, ejabberd's mod_shared_roster with `@all@`), and asks
//! here who is in the group and what it is called.

use serde::{Deserialize, Serialize};

use crate::invites::normalize_username;
use crate::{Domain, DomainName, Error, Hosting, Result};

/// What the domain's manager asks for (the ad-hoc command run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserAction {
    Create,
    List,
    Password,
    Delete,
    /// Set the domain's registration policy (open, invite, closed).
    Registration,
}

impl std::str::FromStr for UserAction {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "create" => Self::Create,
            "list" => Self::List,
            "password" => Self::Password,
            "delete" => Self::Delete,
            "registration" => Self::Registration,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "{other:?} is not a user command (create, list, password, delete, registration)"
                )))
            }
        })
    }
}

/// One command as the server received it; every field but the first four is what the form said.
/// Bindings fill it from a Lua table or an Erlang map with these field names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserCommand {
    /// The host the command was sent to: the domain whose users are managed.
    pub domain: String,
    /// The bare JID of who sent it, as the server authenticated it.
    pub requester: String,
    /// Whether the server counts the requester as one of the operator's admins (Prosody's
    /// `admins`/`prosody:admin`, ejabberd's `configure` rule): they manage every domain.
    pub operator_admin: bool,
    /// `None` asks only whether the requester manages the domain's users.
    pub action: Option<UserAction>,
    /// The account acted on: a bare JID or a username of the domain.
    pub account: Option<String>,
    pub password: Option<String>,
    /// The password typed again (the form asks twice, as XEP-0133 does).
    pub password_verify: Option<String>,
    /// For [`UserAction::Registration`]: open, invite or closed.
    pub policy: Option<String>,
}

/// Who the command runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagedAs {
    Owner,
    Operator,
}

/// A stanza error (RFC 6120 §8.3) both servers answer the command with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StanzaRefusal {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub condition: &'static str,
    pub text: String,
}

impl StanzaRefusal {
    fn forbidden(text: String) -> Self {
        Self { kind: "auth", condition: "forbidden", text }
    }
    fn bad_request(text: String) -> Self {
        Self { kind: "modify", condition: "bad-request", text }
    }
}

/// What the server does with a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum UserDecision {
    /// Run it through the server's account API. For an action on one account, `username` and
    /// `jid` name it; `if_exists` / `if_missing` are the refusals to answer with when the
    /// server's account store says the account is there / is not (create needs it absent,
    /// password and delete need it present); `done` is the note to answer with on success.
    Allowed {
        domain: String,
        #[serde(rename = "as")]
        managed_as: ManagedAs,
        username: Option<String>,
        jid: Option<String>,
        if_exists: Option<StanzaRefusal>,
        if_missing: Option<StanzaRefusal>,
        done: String,
    },
    /// Answer with this error and do nothing.
    Refused(StanzaRefusal),
}

/// The domain's accounts as the manager is shown them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserList {
    /// Bare JIDs, sorted.
    pub jids: Vec<String>,
    pub text: String,
}

/// The group "everyone is in everybody else's contact list" puts a user's contacts in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedRoster {
    /// A stable identifier for servers that name groups (ejabberd's mod_shared_roster).
    pub id: String,
    /// The group's name as clients show it: the domain's name (Unicode form).
    pub group: String,
    /// The user's contacts from the accounts the server listed: every other account of the
    /// domain, as bare JIDs, sorted. Empty when no accounts were given.
    pub contacts: Vec<String>,
}

/// The group identifier ejabberd's mod_shared_roster stores (nodeprep-safe).
pub const SHARED_ROSTER_ID: &str = "xmpp-hosting-everyone";

/// Seconds between two looks of a running server at [`Hosting::settings_changes`]: a setting
/// switched from the CLI or another process (the shared roster) reaches online users within
/// this. A look is one indexed read of the store, whatever the number of domains.
pub const SETTINGS_WATCH_INTERVAL: u64 = 5;

/// The domains whose settings changed since a server last looked, and where it stands now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingsChanges {
    /// Hand it back to the next call.
    pub revision: i64,
    /// ASCII names, in the order they changed; each once.
    pub domains: Vec<String>,
    /// Those of `domains` whose shared roster was switched on or off (or that were added) since
    /// the last look: the only ones a server must bring online users' rosters in line for. A
    /// change to any other setting (a description, a quota) is not worth pushing every contact
    /// to every online user.
    pub shared_roster_switched: Vec<String>,
    /// Seconds until the server looks again ([`SETTINGS_WATCH_INTERVAL`]).
    pub next_in: u64,
}

/// The shared roster as a server applies it to a user who is online when it is switched: the
/// contacts to add (`on`) or to take out again (`!on`) are the same people, every other account
/// of the domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedRosterSwitch {
    pub on: bool,
    pub id: String,
    pub group: String,
    /// Every account of `accounts` but the user's own, as bare JIDs, sorted.
    pub contacts: Vec<String>,
}

/// A bare JID in the form comparisons use: the username nodeprep'd, the domain in its ASCII
/// form. `None` for text that is not a bare JID of an account (an owner named by an account id
/// rather than a JID never matches an XMPP requester).
fn account_key(jid: &str) -> Option<(String, DomainName)> {
    let (user, domain) = jid.split_once('@')?;
    Some((normalize_username(user)?, DomainName::parse(domain).ok()?))
}

impl Hosting {
    /// Decides a domain-users command: who may run it (the domain's owner while their claim is
    /// not suspended, and the operator's admins), on which account (only the domain's own), and
    /// with which arguments. A refusal is an answer, not an error: the server sends it as the
    /// stanza error it names. Errors are for the store failing.
    pub fn decide_user_command(&self, cmd: &UserCommand) -> Result<UserDecision> {
        Ok(match self.user_command_decision(cmd)? {
            Ok(allowed) => allowed,
            Err(refused) => UserDecision::Refused(refused),
        })
    }

    fn user_command_decision(&self, cmd: &UserCommand) -> Result<std::result::Result<UserDecision, StanzaRefusal>> {
        let Some(domain) = DomainName::parse(&cmd.domain).ok().map(|d| self.domain(d.as_str())).transpose()?.flatten()
        else {
            return Ok(Err(StanzaRefusal::forbidden(format!("{} is not a domain hosted here", cmd.domain))));
        };
        let managed_as = match self.manager_of(&domain, cmd)? {
            Ok(managed_as) => managed_as,
            Err(refused) => return Ok(Err(refused)),
        };
        let name = domain.name.as_str().to_owned();
        let allowed = |username: Option<String>, if_exists, if_missing, done| UserDecision::Allowed {
            domain: name.clone(),
            managed_as,
            jid: username.as_ref().map(|u| format!("{u}@{name}")),
            username,
            if_exists,
            if_missing,
            done,
        };
        // No action: the question is only whether the requester manages the domain's users (a
        // server asks before showing a command's form). A list needs nothing more either.
        let action = match cmd.action {
            None | Some(UserAction::List) => return Ok(Ok(allowed(None, None, None, String::new()))),
            Some(action) => action,
        };
        if action == UserAction::Registration {
            let policy = cmd.policy.as_deref().unwrap_or_default();
            return Ok(match self.set_domain_setting(&name, "registration.policy", policy) {
                Ok(_) => Ok(allowed(None, None, None, format!("Registration on {name} is now {policy}"))),
                Err(Error::InvalidArgument(_)) => Err(StanzaRefusal::bad_request(format!(
                    "{policy:?} is not a registration policy (open, invite or closed)"
                ))),
                Err(e) => return Err(e),
            });
        }
        let username = match self.account_of(&domain, cmd.account.as_deref().unwrap_or_default()) {
            Ok(username) => username,
            Err(refused) => return Ok(Err(refused)),
        };
        let jid = format!("{username}@{name}");
        if matches!(action, UserAction::Create | UserAction::Password) {
            let password = cmd.password.as_deref().unwrap_or_default();
            if password.is_empty() {
                return Ok(Err(StanzaRefusal::bad_request("the password cannot be empty".into())));
            }
            if cmd.password_verify.as_deref().is_some_and(|again| again != password) {
                return Ok(Err(StanzaRefusal::bad_request("the two passwords differ".into())));
            }
        }
        if action == UserAction::Delete && self.is_owner(&domain, &jid) {
            return Ok(Err(StanzaRefusal {
                kind: "cancel",
                condition: "not-allowed",
                text: format!("{jid} owns {name}: the owner's own account is not deleted here"),
            }));
        }
        let taken = StanzaRefusal { kind: "cancel", condition: "conflict", text: format!("{jid} already exists") };
        let missing =
            StanzaRefusal { kind: "cancel", condition: "item-not-found", text: format!("there is no account {jid}") };
        Ok(Ok(match action {
            UserAction::Create => allowed(Some(username), Some(taken), None, format!("{jid} created")),
            UserAction::Password => {
                allowed(Some(username), None, Some(missing), format!("the password of {jid} is changed"))
            }
            _ => allowed(Some(username), None, Some(missing), format!("{jid} deleted")),
        }))
    }

    /// Whether the requester manages `domain`, and as whom.
    fn manager_of(&self, domain: &Domain, cmd: &UserCommand) -> Result<std::result::Result<ManagedAs, StanzaRefusal>> {
        if cmd.operator_admin {
            return Ok(Ok(ManagedAs::Operator));
        }
        let name = domain.name.as_str();
        if !self.is_owner(domain, &cmd.requester) {
            return Ok(Err(StanzaRefusal::forbidden(format!(
                "only the owner of {name} and the operator's admins manage its users"
            ))));
        }
        if self.store().read(|c| crate::verification::is_suspended(c, domain))? {
            return Ok(Err(StanzaRefusal::forbidden(format!(
                "the claim on {name} is suspended (its DNS proof is gone): publish the proof again to manage its users"
            ))));
        }
        Ok(Ok(ManagedAs::Owner))
    }

    fn is_owner(&self, domain: &Domain, jid: &str) -> bool {
        let owner = domain.settings.owner.as_deref().and_then(account_key);
        owner.is_some() && owner == account_key(jid)
    }

    /// The username of `account` (a bare JID or a username) on `domain`, or why it is not one of
    /// the domain's accounts.
    fn account_of(&self, domain: &Domain, account: &str) -> std::result::Result<String, StanzaRefusal> {
        let name = domain.name.as_str();
        let account = account.trim();
        let (user, its_domain) = match account.split_once('@') {
            Some((user, d)) => (user, Some(d)),
            None => (account, None),
        };
        if let Some(d) = its_domain {
            if DomainName::parse(d).ok().as_ref().map(DomainName::as_str) != Some(name) {
                return Err(StanzaRefusal::forbidden(format!("{account} is not an account of {name}")));
            }
        }
        normalize_username(user)
            .ok_or_else(|| StanzaRefusal::bad_request(format!("{account:?} is not a valid account of {name}")))
    }

    /// The domain's accounts as the server listed them (`usernames`), shown to its manager.
    pub fn domain_user_list(&self, domain: &str, usernames: &[String]) -> Result<UserList> {
        let domain = self.require_domain(domain)?;
        let name = domain.name.as_str();
        let mut jids: Vec<String> =
            usernames.iter().filter_map(|u| normalize_username(u)).map(|u| format!("{u}@{name}")).collect();
        jids.sort();
        jids.dedup();
        let text = format!("{} account(s) on {name}", jids.len());
        Ok(UserList { jids, text })
    }

    /// The shared roster of `username` on `domain` (`None`: the domain does not have one, or is
    /// not hosted here). `accounts` are the domain's accounts as the server lists them; the
    /// user's contacts are all of them but the user. Servers that keep the group themselves
    /// (ejabberd's `@all@`) pass no accounts and take the group's name.
    pub fn shared_roster(
        &self,
        domain: &str,
        username: Option<&str>,
        accounts: &[String],
    ) -> Result<Option<SharedRoster>> {
        Ok(self.shared_roster_switch(domain, username, accounts)?.filter(|s| s.on).map(|s| SharedRoster {
            id: s.id,
            group: s.group,
            contacts: s.contacts,
        }))
    }

    /// The shared roster of `username` on `domain` whether it is on or off (`None`: not hosted
    /// here), for a server that brings an online user's roster in line after the setting was
    /// switched: pushed in when on, taken out when off (where the user has no item of their own
    /// for the contact).
    pub fn shared_roster_switch(
        &self,
        domain: &str,
        username: Option<&str>,
        accounts: &[String],
    ) -> Result<Option<SharedRosterSwitch>> {
        let Some(domain) = DomainName::parse(domain).ok().map(|d| self.domain(d.as_str())).transpose()?.flatten()
        else {
            return Ok(None);
        };
        let me = username.and_then(normalize_username);
        let name = domain.name.as_str();
        let mut contacts: Vec<String> = accounts
            .iter()
            .filter_map(|a| normalize_username(a))
            .filter(|a| Some(a) != me.as_ref())
            .map(|a| format!("{a}@{name}"))
            .collect();
        contacts.sort();
        contacts.dedup();
        Ok(Some(SharedRosterSwitch {
            on: domain.settings.shared_roster,
            id: SHARED_ROSTER_ID.into(),
            group: domain.unicode_name().to_owned(),
            contacts,
        }))
    }

    /// The domains whose settings changed after `since` (a revision this returned before), or,
    /// with `None`, only the revision to start from: a server looks every
    /// [`SETTINGS_WATCH_INTERVAL`] seconds and brings what it keeps in memory (online users'
    /// rosters) in line for the domains named in `shared_roster_switched`. Every path that
    /// writes a domain's settings, in any process, raises the revision (triggers of migrations
    /// 0022 and 0027, from a counter that never goes down). A domain removed is not named: it
    /// has nothing left to apply.
    pub fn settings_changes(&self, since: Option<i64>) -> Result<SettingsChanges> {
        let (revision, changed) = self.store().read(|c| {
            let revision = crate::store::domains::settings_revision(c)?;
            let changed = match since {
                Some(since) => crate::store::domains::settings_changed(c, since, revision)?,
                None => Vec::new(),
            };
            Ok((revision, changed))
        })?;
        let shared_roster_switched = changed.iter().filter(|(_, s)| *s).map(|(d, _)| d.clone()).collect();
        Ok(SettingsChanges {
            revision,
            domains: changed.into_iter().map(|(d, _)| d).collect(),
            shared_roster_switched,
            next_in: SETTINGS_WATCH_INTERVAL,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosting() -> Hosting {
        let h = Hosting::open_in_memory().unwrap();
        h.add_domain("a.example").unwrap();
        h.add_domain("b.example").unwrap();
        h.set_domain_setting("a.example", "owner", "Boss@A.example").unwrap();
        h.set_domain_setting("b.example", "owner", "bob@b.example").unwrap();
        h
    }

    fn cmd(domain: &str, requester: &str, action: UserAction, account: Option<&str>) -> UserCommand {
        UserCommand {
            domain: domain.into(),
            requester: requester.into(),
            action: Some(action),
            account: account.map(Into::into),
            password: Some("pw-1".into()),
            password_verify: Some("pw-1".into()),
            ..Default::default()
        }
    }

    fn refused(d: UserDecision) -> StanzaRefusal {
        match d {
            UserDecision::Refused(r) => r,
            other => panic!("allowed: {other:?}"),
        }
    }

    #[test]
    fn the_owner_manages_their_own_domain_only() {
        let h = hosting();
        let d = h.decide_user_command(&cmd("a.example", "boss@a.example", UserAction::Create, Some("Carol"))).unwrap();
        match d {
            UserDecision::Allowed { managed_as, username, jid, if_exists, if_missing, done, .. } => {
                assert_eq!(managed_as, ManagedAs::Owner);
                assert_eq!((username.as_deref(), jid.as_deref()), (Some("carol"), Some("carol@a.example")));
                assert_eq!(if_exists.unwrap().condition, "conflict");
                assert!(if_missing.is_none());
                assert_eq!(done, "carol@a.example created");
            }
            other => panic!("{other:?}"),
        }
        // bob owns b.example: a.example is not his, through any host or account named.
        for c in [
            cmd("a.example", "bob@b.example", UserAction::List, None),
            cmd("a.example", "bob@b.example", UserAction::Delete, Some("carol")),
            cmd("b.example", "bob@b.example", UserAction::Delete, Some("carol@a.example")),
            cmd("b.example", "bob@b.example", UserAction::Password, Some("carol@A.EXAMPLE")),
            cmd("a.example", "carol@a.example", UserAction::List, None),
            cmd("nothosted.example", "bob@b.example", UserAction::List, None),
        ] {
            let r = refused(h.decide_user_command(&c).unwrap());
            assert_eq!((r.kind, r.condition), ("auth", "forbidden"), "{c:?}: {}", r.text);
        }
        let r = refused(h.decide_user_command(&cmd("a.example", "carol@a.example", UserAction::List, None)).unwrap());
        assert_eq!(r.text, "only the owner of a.example and the operator's admins manage its users");
        let r = refused(
            h.decide_user_command(&cmd("b.example", "bob@b.example", UserAction::Delete, Some("carol@a.example")))
                .unwrap(),
        );
        assert_eq!(r.text, "carol@a.example is not an account of b.example");
        // The operator's admins manage any hosted domain, still only its own accounts.
        let mut op = cmd("a.example", "root@ops.example", UserAction::Delete, Some("carol"));
        op.operator_admin = true;
        assert!(matches!(
            h.decide_user_command(&op).unwrap(),
            UserDecision::Allowed { managed_as: ManagedAs::Operator, .. }
        ));
        op.account = Some("carol@b.example".into());
        assert_eq!(refused(h.decide_user_command(&op).unwrap()).condition, "forbidden");
    }

    #[test]
    fn an_owner_named_by_an_account_id_or_nobody_manages_nothing() {
        let h = hosting();
        h.set_domain_setting("a.example", "owner", "boss").unwrap();
        let r = refused(h.decide_user_command(&cmd("a.example", "boss@a.example", UserAction::List, None)).unwrap());
        assert_eq!(r.condition, "forbidden");
        h.set_domain_setting("a.example", "owner", "null").unwrap();
        let r = refused(h.decide_user_command(&cmd("a.example", "boss@a.example", UserAction::List, None)).unwrap());
        assert_eq!(r.condition, "forbidden");
    }

    #[test]
    fn a_suspended_claim_manages_nothing_until_proved_again() {
        let h = Hosting::open_in_memory().unwrap();
        h.claim_domain("c.example", "boss@c.example").unwrap();
        h.override_claim("c.example", "boss@c.example", "test").unwrap();
        let list = cmd("c.example", "boss@c.example", UserAction::List, None);
        assert!(matches!(h.decide_user_command(&list).unwrap(), UserDecision::Allowed { .. }));
        h.store()
            .write(|tx| {
                tx.execute("UPDATE domain_claims SET state = 'suspended' WHERE domain = 'c.example'", [])?;
                Ok(())
            })
            .unwrap();
        let r = refused(h.decide_user_command(&list).unwrap());
        assert_eq!(r.condition, "forbidden");
        assert!(r.text.contains("suspended"), "{}", r.text);
    }

    #[test]
    fn bad_arguments_are_refused_with_the_reason() {
        let h = hosting();
        let mut c = cmd("a.example", "boss@a.example", UserAction::Create, Some("a b"));
        assert_eq!(refused(h.decide_user_command(&c).unwrap()).condition, "bad-request");
        c.account = Some("dave".into());
        c.password_verify = Some("other".into());
        assert_eq!(refused(h.decide_user_command(&c).unwrap()).text, "the two passwords differ");
        c.password = Some(String::new());
        assert_eq!(refused(h.decide_user_command(&c).unwrap()).text, "the password cannot be empty");
        // Without an action, the question is whether the requester manages the domain at all.
        c.action = None;
        assert!(matches!(h.decide_user_command(&c).unwrap(), UserDecision::Allowed { username: None, .. }));
        c.requester = "bob@b.example".into();
        assert_eq!(refused(h.decide_user_command(&c).unwrap()).condition, "forbidden");
        let own = cmd("a.example", "boss@a.example", UserAction::Delete, Some("boss"));
        assert_eq!(refused(h.decide_user_command(&own).unwrap()).condition, "not-allowed");
        let d = h.decide_user_command(&cmd("a.example", "boss@a.example", UserAction::Password, Some("eve"))).unwrap();
        assert!(matches!(d, UserDecision::Allowed { if_missing: Some(_), if_exists: None, .. }));
        assert!("nope".parse::<UserAction>().is_err());
        assert_eq!("delete".parse::<UserAction>().unwrap(), UserAction::Delete);
    }

    #[test]
    fn the_owner_sets_the_registration_policy() {
        let h = hosting();
        let mut c = cmd("a.example", "boss@a.example", UserAction::Registration, None);
        c.policy = Some("open".into());
        assert!(matches!(h.decide_user_command(&c).unwrap(), UserDecision::Allowed { .. }));
        assert_eq!(
            h.require_domain("a.example").unwrap().settings.registration.policy,
            crate::invites::RegistrationPolicy::Open
        );
        c.policy = Some("sometimes".into());
        assert_eq!(refused(h.decide_user_command(&c).unwrap()).condition, "bad-request");
        c.requester = "bob@b.example".into();
        c.policy = Some("closed".into());
        assert_eq!(refused(h.decide_user_command(&c).unwrap()).condition, "forbidden");
        assert_eq!(
            h.require_domain("a.example").unwrap().settings.registration.policy,
            crate::invites::RegistrationPolicy::Open
        );
    }

    #[test]
    fn the_shared_roster_is_every_other_account_when_switched_on() {
        let h = hosting();
        let accounts: Vec<String> = ["bob", "Alice", "carol", "alice", "not valid"].map(String::from).into();
        assert_eq!(h.shared_roster("a.example", Some("alice"), &accounts).unwrap(), None);
        h.set_domain_setting("a.example", "shared_roster", "on").unwrap();
        let r = h.shared_roster("a.example", Some("Alice"), &accounts).unwrap().unwrap();
        assert_eq!(r.contacts, ["bob@a.example", "carol@a.example"]);
        assert_eq!((r.id.as_str(), r.group.as_str()), (SHARED_ROSTER_ID, "a.example"));
        assert_eq!(h.shared_roster("b.example", Some("alice"), &accounts).unwrap(), None);
        assert_eq!(h.shared_roster("nothosted.example", None, &accounts).unwrap(), None);
        h.set_domain_setting("a.example", "shared_roster", "off").unwrap();
        assert_eq!(h.shared_roster("a.example", Some("alice"), &accounts).unwrap(), None);
    }

    #[test]
    fn a_switch_names_the_same_contacts_on_and_off() {
        let h = hosting();
        let accounts: Vec<String> = ["bob", "alice", "carol"].map(String::from).into();
        let off = h.shared_roster_switch("a.example", Some("alice"), &accounts).unwrap().unwrap();
        assert!(!off.on);
        assert_eq!(off.contacts, ["bob@a.example", "carol@a.example"]);
        h.set_domain_setting("a.example", "shared_roster", "on").unwrap();
        let on = h.shared_roster_switch("a.example", Some("alice"), &accounts).unwrap().unwrap();
        assert_eq!(on, SharedRosterSwitch { on: true, ..off });
        assert_eq!(h.shared_roster_switch("nothosted.example", None, &accounts).unwrap(), None);
    }

    #[test]
    fn settings_changes_name_each_domain_changed_since_the_last_look() {
        let h = hosting();
        let start = h.settings_changes(None).unwrap();
        assert!(start.domains.is_empty() && start.revision > 0, "{start:?}");
        assert_eq!(start.next_in, SETTINGS_WATCH_INTERVAL);
        assert_eq!(h.settings_changes(Some(start.revision)).unwrap().domains, Vec::<String>::new());
        h.set_domain_setting("b.example", "shared_roster", "on").unwrap();
        h.set_domain_setting("a.example", "shared_roster", "on").unwrap();
        h.set_domain_setting("b.example", "shared_roster", "off").unwrap();
        let seen = h.settings_changes(Some(start.revision)).unwrap();
        assert_eq!(seen.domains, ["a.example", "b.example"]);
        // Writing a setting to the value it has changes nothing a server must apply.
        h.set_domain_setting("a.example", "shared_roster", "on").unwrap();
        assert_eq!(h.settings_changes(Some(seen.revision)).unwrap().domains, Vec::<String>::new());
        // Any path that writes a domain counts: one added, one whose claim was proved (which
        // makes the claimant its owner, written by the verification code).
        h.add_domain("c.example").unwrap();
        let next = h.settings_changes(Some(seen.revision)).unwrap();
        assert_eq!(next.domains, ["c.example"]);
        assert!(next.revision > seen.revision);
        h.claim_domain("d.example", "dora@d.example").unwrap();
        h.override_claim("d.example", "dora@d.example", "test").unwrap();
        assert_eq!(h.settings_changes(Some(next.revision)).unwrap().domains, ["d.example"]);
    }

    #[test]
    fn settings_changes_survive_removing_the_domain_with_the_highest_revision() {
        let h = hosting();
        h.set_domain_setting("b.example", "shared_roster", "on").unwrap();
        let seen = h.settings_changes(None).unwrap();
        // b.example held the highest revision; removing it must not hand the next change a
        // revision the watcher has already passed.
        h.remove_domain("b.example").unwrap();
        h.set_domain_setting("a.example", "shared_roster", "on").unwrap();
        let next = h.settings_changes(Some(seen.revision)).unwrap();
        assert_eq!(next.domains, ["a.example"]);
        assert_eq!(next.shared_roster_switched, ["a.example"]);
        assert!(next.revision > seen.revision, "{next:?} after {seen:?}");
    }

    #[test]
    fn only_a_shared_roster_switch_is_named_as_switched() {
        let h = hosting();
        let start = h.settings_changes(None).unwrap();
        h.set_domain_setting("a.example", "shared_roster", "on").unwrap();
        let seen = h.settings_changes(Some(start.revision)).unwrap();
        assert_eq!(seen.shared_roster_switched, ["a.example"]);
        // Another setting changed: named as changed, not as switched.
        h.set_domain_setting("a.example", "owner", "carol@a.example").unwrap();
        h.set_domain_setting("b.example", "owner", "carol@b.example").unwrap();
        let other = h.settings_changes(Some(seen.revision)).unwrap();
        assert_eq!(other.domains, ["a.example", "b.example"]);
        assert_eq!(other.shared_roster_switched, Vec::<String>::new());
        // Switched, then another setting: still switched since the look before.
        h.set_domain_setting("b.example", "shared_roster", "on").unwrap();
        h.set_domain_setting("b.example", "owner", "dave@b.example").unwrap();
        let next = h.settings_changes(Some(other.revision)).unwrap();
        assert_eq!(next.shared_roster_switched, ["b.example"]);
        // A domain added counts as switched (its accounts may be online already).
        h.add_domain("c.example").unwrap();
        assert_eq!(h.settings_changes(Some(next.revision)).unwrap().shared_roster_switched, ["c.example"]);
    }

    #[test]
    fn the_list_is_the_domains_accounts_sorted() {
        let h = hosting();
        let l = h.domain_user_list("a.example", &["zed".into(), "Amy".into(), "amy".into()]).unwrap();
        assert_eq!(l.jids, ["amy@a.example", "zed@a.example"]);
        assert_eq!(l.text, "2 account(s) on a.example");
    }
}
