//! Registration invites and the per-domain registration policy.
//!
//! An invite is a token that lets someone register (or reset a password) on one domain, a set
//! number of times, until it expires. Its life: [`Hosting::create_invite`] shows the token once;
//! a server checks it when a client presents it ([`Hosting::check_invite`]), then brackets the
//! account creation with [`Hosting::begin_registration`] and [`Hosting::finish_registration`],
//! so that a use is spent only when the account really exists (XEP-0445). A roster invite can
//! also be used by someone who already has an account: their subscription request carries the
//! token and [`Hosting::preauthorize_subscription`] approves it for the inviter (XEP-0379).

mod policy;
mod registration;
mod subscription;
mod token;
mod uri;

use serde::{Deserialize, Serialize};

pub use policy::{normalize_username, Refusal, RegistrationPolicy, RegistrationSettings, DEFAULT_INVITE_TTL};
pub use registration::{RegistrationDecision, RegistrationRequest, RegistrationTicket};
pub use subscription::{IgnoredToken, SubscriptionDecision};
pub use token::MAX_TOKEN_LEN;
pub use uri::{landing_url, register_uri, roster_uri};

use crate::store::invites as sql;
use crate::{DomainName, Error, Hosting, Result, Timestamp};

/// What redeeming an invite does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InviteKind {
    /// Create an account (any username, or the one the invite names).
    Account,
    /// Create an account and subscribe it and the inviter to each other (XEP-0379 / XEP-0401).
    Roster,
    /// Set a new password on the existing account the invite names.
    Reset,
}

impl InviteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InviteKind::Account => "account",
            InviteKind::Roster => "roster",
            InviteKind::Reset => "reset",
        }
    }
}

impl std::str::FromStr for InviteKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "account" => Ok(InviteKind::Account),
            "roster" => Ok(InviteKind::Roster),
            "reset" => Ok(InviteKind::Reset),
            other => {
                Err(Error::InvalidArgument(format!("invite kind must be account, roster or reset, not {other:?}")))
            }
        }
    }
}

/// When a new invite stops working. In data (JSON, Lua tables, Erlang maps): `"default"`,
/// `"never"`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(untagged, into = "ExpiryRepr", try_from = "ExpiryRepr")]
pub enum Expiry {
    /// The domain's `invite_ttl` setting (7 days unless changed).
    #[default]
    Default,
    Never,
    /// This many seconds from now.
    After(u64),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ExpiryRepr {
    Word(String),
    Seconds(u64),
}

impl From<Expiry> for ExpiryRepr {
    fn from(e: Expiry) -> Self {
        match e {
            Expiry::Default => ExpiryRepr::Word("default".into()),
            Expiry::Never => ExpiryRepr::Word("never".into()),
            Expiry::After(s) => ExpiryRepr::Seconds(s),
        }
    }
}

impl TryFrom<ExpiryRepr> for Expiry {
    type Error = String;
    fn try_from(r: ExpiryRepr) -> std::result::Result<Self, String> {
        match r {
            ExpiryRepr::Word(w) if w == "default" => Ok(Expiry::Default),
            ExpiryRepr::Word(w) if w == "never" => Ok(Expiry::Never),
            ExpiryRepr::Word(w) => Err(format!("expiry must be \"default\", \"never\" or seconds, not {w:?}")),
            ExpiryRepr::Seconds(s) => Ok(Expiry::After(s)),
        }
    }
}

/// Who creates an invite; users may only when their domain allows it. In data: `"admin"` or the
/// user's bare JID.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Creator {
    #[default]
    Admin,
    /// A user's bare JID.
    User(String),
}

impl From<String> for Creator {
    fn from(s: String) -> Self {
        if s == "admin" {
            Creator::Admin
        } else {
            Creator::User(s)
        }
    }
}

impl From<Creator> for String {
    fn from(c: Creator) -> Self {
        c.as_str().to_string()
    }
}

impl Creator {
    fn as_str(&self) -> &str {
        match self {
            Creator::Admin => "admin",
            Creator::User(jid) => jid,
        }
    }
}

/// The longest note an invite keeps.
pub const MAX_NOTE_LEN: usize = 1000;
/// The most uses one invite may have.
pub const MAX_USES: u32 = 100_000;

/// What to create. Deserialisable, so every binding reads it from its own data the same way:
/// only `domain` is required; the rest defaults to a single-use account invite made by an admin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    pub domain: String,
    #[serde(default = "default_kind")]
    pub kind: InviteKind,
    /// For `Account`: the only username the invite registers (reserved until it expires).
    /// For `Reset`: the account whose password it resets (required).
    pub username: Option<String>,
    /// For `Roster`: the bare JID the new account is subscribed with; defaults to the creating user.
    pub inviter: Option<String>,
    /// How many accounts it creates (a group invite has more than one).
    #[serde(default = "default_uses")]
    pub uses: u32,
    #[serde(default)]
    pub expiry: Expiry,
    pub note: Option<String>,
    #[serde(default)]
    pub created_by: Creator,
}

fn default_kind() -> InviteKind {
    InviteKind::Account
}

fn default_uses() -> u32 {
    1
}

impl NewInvite {
    /// A single-use account invite made by an admin, with the domain's default expiry.
    pub fn account(domain: impl Into<String>) -> Self {
        NewInvite {
            domain: domain.into(),
            kind: InviteKind::Account,
            username: None,
            inviter: None,
            uses: 1,
            expiry: Expiry::Default,
            note: None,
            created_by: Creator::Admin,
        }
    }
}

/// An invite as stored (never with its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invite {
    pub id: i64,
    pub domain: DomainName,
    pub kind: InviteKind,
    pub username: Option<String>,
    pub inviter: Option<String>,
    pub uses_total: u32,
    pub uses_left: u32,
    pub created_by: String,
    pub note: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
}

/// Whether an invite can still be used, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InviteStatus {
    Active,
    Expired,
    UsedUp,
    Revoked,
}

impl Invite {
    pub fn status(&self, now: Timestamp) -> InviteStatus {
        if self.revoked_at.is_some() {
            InviteStatus::Revoked
        } else if self.expires_at.is_some_and(|t| t <= now) {
            InviteStatus::Expired
        } else if self.uses_left == 0 {
            InviteStatus::UsedUp
        } else {
            InviteStatus::Active
        }
    }
}

/// A new invite with the token, which is shown this once and never stored.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedInvite {
    pub token: String,
    /// The XEP-0401 URI a client opens.
    pub uri: String,
    /// The landing page, when the domain has a template.
    pub landing_url: Option<String>,
    pub invite: Invite,
}

/// One line of the invite history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: Timestamp,
    pub domain: String,
    pub invite_id: i64,
    /// created, redeemed, returned, revoked, purged.
    pub action: String,
    pub actor: Option<String>,
    pub detail: Option<String>,
}

/// What happened to an invite, as the audit trail names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuditAction {
    Created,
    Redeemed,
    Returned,
    Revoked,
    Purged,
}

impl AuditAction {
    fn as_str(self) -> &'static str {
        match self {
            AuditAction::Created => "created",
            AuditAction::Redeemed => "redeemed",
            AuditAction::Returned => "returned",
            AuditAction::Revoked => "revoked",
            AuditAction::Purged => "purged",
        }
    }
}

/// Appends one line to the invite history.
fn audit(
    tx: &rusqlite::Connection,
    at: Timestamp,
    domain: &str,
    invite_id: i64,
    action: AuditAction,
    actor: Option<&str>,
    detail: Option<&str>,
) -> Result<()> {
    let entry = AuditEntry {
        at,
        domain: domain.to_string(),
        invite_id,
        action: action.as_str().to_string(),
        actor: actor.map(str::to_string),
        detail: detail.map(str::to_string),
    };
    sql::audit(tx, &entry)
}

/// Records that the server revoked an invite (its account was removed), with why.
pub(crate) fn audit_revoked(tx: &rusqlite::Connection, at: Timestamp, domain: &str, id: i64, why: &str) -> Result<()> {
    audit(tx, at, domain, id, AuditAction::Revoked, None, Some(why))
}

/// What [`Hosting::purge_invites`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Expired, used-up and revoked invites deleted (their audit trail stays).
    pub invites_removed: usize,
    /// Registrations that never reported an outcome; their invite uses were given back.
    pub stale_registrations_failed: usize,
}

/// How long a begun registration may go without an outcome before its use is given back.
pub const STALE_REGISTRATION_SECS: i64 = 600;

/// Checks a bare JID of the form `user@domain` and returns it case-folded.
fn bare_jid_on(jid: &str, domain: &DomainName) -> Result<String> {
    let bad = || Error::InvalidArgument(format!("{jid:?} is not a bare JID on {domain}"));
    let (local, host) = jid.split_once('@').ok_or_else(bad)?;
    let local = normalize_username(local).ok_or_else(bad)?;
    if DomainName::parse(host).map_err(|_| bad())? != *domain {
        return Err(bad());
    }
    Ok(format!("{local}@{domain}"))
}

impl Hosting {
    /// Creates an invite and returns its token, URI and landing URL.
    pub fn create_invite(&self, new: &NewInvite) -> Result<CreatedInvite> {
        let domain = self.require_domain(&new.domain)?;
        let settings = &domain.settings.registration;
        let name = &domain.name;
        if self.store().read(|c| crate::verification::is_suspended(c, &domain))? {
            return Err(Error::NotAllowed(format!("{name} is suspended: its DNS proof is missing")));
        }
        let created_by = match &new.created_by {
            Creator::Admin => "admin".to_string(),
            Creator::User(jid) => {
                let jid = bare_jid_on(jid, name)?;
                if !settings.users_may_invite {
                    return Err(Error::NotAllowed(format!("users of {name} may not create invites")));
                }
                jid
            }
        };
        if new.uses == 0 || new.uses > MAX_USES {
            return Err(Error::InvalidArgument(format!("uses must be between 1 and {MAX_USES}")));
        }
        if new.note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE_LEN) {
            return Err(Error::InvalidArgument(format!("the note is longer than {MAX_NOTE_LEN} characters")));
        }
        let username = match &new.username {
            Some(u) => Some(
                normalize_username(u)
                    .ok_or_else(|| Error::InvalidArgument(format!("{u:?} is not a valid username")))?,
            ),
            None => None,
        };
        let inviter = match (new.kind, &new.inviter, &new.created_by) {
            (InviteKind::Roster, Some(jid), _) => Some(bare_jid_on(jid, name)?),
            (InviteKind::Roster, None, Creator::User(_)) => Some(created_by.clone()),
            (InviteKind::Roster, None, Creator::Admin) => {
                return Err(Error::InvalidArgument("a roster invite needs the inviter's JID".into()))
            }
            (_, Some(_), _) => return Err(Error::InvalidArgument("only roster invites have an inviter".into())),
            (_, None, _) => None,
        };
        if new.kind == InviteKind::Reset {
            if username.is_none() {
                return Err(Error::InvalidArgument("a password reset invite needs the account's username".into()));
            }
            if new.uses != 1 {
                return Err(Error::InvalidArgument("a password reset invite has exactly one use".into()));
            }
            if !matches!(new.created_by, Creator::Admin) {
                return Err(Error::NotAllowed("only admins create password reset invites".into()));
            }
        }
        let now = self.now();
        let expires_at = match new.expiry {
            Expiry::Default => settings.invite_ttl.map(|ttl| now.saturating_add(ttl.min(i64::MAX as u64) as i64)),
            Expiry::Never => None,
            Expiry::After(0) => return Err(Error::InvalidArgument("an invite must live at least one second".into())),
            Expiry::After(s) => Some(now.saturating_add(s.min(i64::MAX as u64) as i64)),
        };

        let token = token::generate()?;
        let hash = token::hash(&token);
        let row = sql::InviteRow {
            domain: name,
            token_hash: &hash,
            kind: new.kind,
            username: username.as_deref(),
            inviter: inviter.as_deref(),
            uses: new.uses,
            created_by: &created_by,
            note: new.note.as_deref(),
            created_at: now,
            expires_at,
        };
        let invite = self.store().write(|tx| {
            let id = sql::insert_invite(tx, &row)?;
            let detail = format!("{} invite, {} use(s)", new.kind.as_str(), new.uses);
            audit(tx, now, name.as_str(), id, AuditAction::Created, Some(&created_by), Some(&detail))?;
            sql::invite_by_id(tx, name, id)?.ok_or_else(|| Error::not_found("invite", id.to_string()))
        })?;
        let uri = match (&invite.kind, &invite.inviter) {
            (InviteKind::Roster, Some(inviter)) => roster_uri(inviter, &token),
            _ => register_uri(name.as_str(), invite.username.as_deref(), &token),
        };
        let landing_url = settings.landing_url.as_deref().map(|t| landing_url(t, name.as_str(), &token));
        Ok(CreatedInvite { token, uri, landing_url, invite })
    }

    /// The invite a token stands for, if it can be used now on `domain`; `None` for anything
    /// else (unknown, malformed, expired, used up, revoked, or another domain's), which clients
    /// are told as one answer so a guesser learns nothing.
    pub fn check_invite(&self, domain: &str, token: &str) -> Result<Option<Invite>> {
        let domain = DomainName::parse(domain)?;
        if !token::is_well_formed(token) {
            return Ok(None);
        }
        let now = self.now();
        let invite = self.store().read(|c| sql::invite_by_hash(c, &domain, &token::hash(token)))?;
        Ok(invite.filter(|i| i.status(now) == InviteStatus::Active))
    }

    /// The invites of a domain, oldest first, active or not (until purged).
    pub fn invites(&self, domain: &str) -> Result<Vec<Invite>> {
        let domain = self.require_domain(domain)?;
        self.store().read(|c| sql::invites_of_domain(c, &domain.name))
    }

    /// One invite by its id.
    pub fn invite(&self, domain: &str, id: i64) -> Result<Option<Invite>> {
        let domain = DomainName::parse(domain)?;
        self.store().read(|c| sql::invite_by_id(c, &domain, id))
    }

    /// Revokes an invite so it cannot be used; revoking twice is harmless.
    pub fn revoke_invite(&self, domain: &str, id: i64, by: &Creator) -> Result<Invite> {
        let domain = DomainName::parse(domain)?;
        let now = self.now();
        self.store().write(|tx| {
            let invite =
                sql::invite_by_id(tx, &domain, id)?.ok_or_else(|| Error::not_found("invite", id.to_string()))?;
            if let Creator::User(jid) = by {
                if invite.created_by != bare_jid_on(jid, &domain)? {
                    return Err(Error::NotAllowed("users may revoke only their own invites".into()));
                }
            }
            if invite.revoked_at.is_none() {
                sql::revoke(tx, id, now, by.as_str())?;
                audit(tx, now, domain.as_str(), id, AuditAction::Revoked, Some(by.as_str()), None)?;
            }
            sql::invite_by_id(tx, &domain, id)?.ok_or_else(|| Error::not_found("invite", id.to_string()))
        })
    }

    /// Deletes invites nobody can use any more and gives back the uses held by registrations
    /// that never finished. Meant for the background worker; safe to run at any time.
    pub fn purge_invites(&self) -> Result<PurgeReport> {
        let now = self.now();
        self.store().write(|tx| {
            let mut report = PurgeReport::default();
            for id in sql::stale_registrations(tx, now - STALE_REGISTRATION_SECS)? {
                registration::settle(tx, id, false, now, "never finished")?;
                report.stale_registrations_failed += 1;
            }
            for (id, domain) in sql::inactive_invite_ids(tx, now)? {
                sql::delete_invite(tx, id)?;
                audit(tx, now, &domain, id, AuditAction::Purged, None, None)?;
                report.invites_removed += 1;
            }
            Ok(report)
        })
    }

    /// The newest `limit` lines of a domain's invite history.
    pub fn invite_audit(&self, domain: &str, limit: u32) -> Result<Vec<AuditEntry>> {
        let domain = DomainName::parse(domain)?;
        self.store().read(|c| sql::audit_of_domain(c, &domain, limit))
    }
}

#[cfg(test)]
mod tests;
