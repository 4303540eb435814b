//! Registration invites and the per-domain registration policy.
//!
//! An invite is a token that lets someone register (or reset a password) on one domain, a set
//! number of times, until it expires. Its life: [`Hosting::create_invite`] shows the token once;
//! a server checks it when a client presents it ([`Hosting::check_invite`]), then brackets the
//! account creation with [`Hosting::begin_registration`] and [`Hosting::finish_registration`],
//! so that a use is spent only when the account really exists (XEP-0445). A roster invite can
//! also be used by someone who already has an account: their subscription request carries the
//! token and [`Hosting::preauthorize_subscription`] approves it for the inviter (XEP-0379).

mod listing;
mod policy;
mod registration;
mod subscription;
mod token;
mod uri;

use serde::{Deserialize, Serialize};

pub use listing::{utc_iso8601, HostedDomain, ListedInvite};
pub use policy::{normalize_username, Refusal, RegistrationPolicy, RegistrationSettings, DEFAULT_INVITE_TTL};
pub use registration::{canonical_ip, RegistrationDecision, RegistrationRequest, RegistrationTicket};
pub use subscription::{IgnoredToken, SubscriptionDecision};
pub use token::MAX_TOKEN_LEN;
pub use uri::{landing_url, register_uri, roster_uri};

use crate::store::invites as sql;
use crate::{DomainName, Error, Hosting, Pending, Result, Timestamp};

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
/// `"never"`, or a number of seconds (a number, or digits in a string, as command lines give it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(into = "ExpiryRepr")]
pub enum Expiry {
    /// The domain's `invite_ttl` setting (7 days unless changed).
    #[default]
    Default,
    Never,
    /// This many seconds from now, from 1 to [`MAX_EXPIRES_IN`].
    After(u64),
}

/// The longest an invite may be made to last, in seconds: ten years. Longer is a typo (a
/// timestamp for a duration, milliseconds for seconds) that would leave a token valid for good;
/// "never" says so on purpose.
pub const MAX_EXPIRES_IN: u64 = 10 * 365 * 24 * 3600;

#[derive(Serialize)]
#[serde(untagged)]
enum ExpiryRepr {
    Word(&'static str),
    Seconds(u64),
}

impl From<Expiry> for ExpiryRepr {
    fn from(e: Expiry) -> Self {
        match e {
            Expiry::Default => ExpiryRepr::Word("default"),
            Expiry::Never => ExpiryRepr::Word("never"),
            Expiry::After(s) => ExpiryRepr::Seconds(s),
        }
    }
}

impl Expiry {
    /// Reads what an admin typed: seconds, `never` or `default`; refused in their words.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "default" => Ok(Expiry::Default),
            "never" => Ok(Expiry::Never),
            t => Self::seconds(t.parse::<i128>().ok(), &format!("{text:?}")),
        }
    }

    fn seconds(n: Option<i128>, shown: &dyn std::fmt::Display) -> Result<Self> {
        match n {
            Some(n) if n >= 1 && n <= MAX_EXPIRES_IN as i128 => Ok(Expiry::After(n as u64)),
            _ => Err(Error::InvalidArgument(format!(
                "an invite expires in a whole number of seconds from 1 to {MAX_EXPIRES_IN} (ten years), \
                 or \"never\", not {shown}"
            ))),
        }
    }
}

/// A number as data gives it: JSON and Lua numbers, Erlang integers, or text (command lines pass
/// what was typed), read once here so that every field reports a bad value in the same words.
enum Scalar {
    Whole(i128),
    /// A number that is not whole (1.5), shown as given.
    Fraction(String),
    Text(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number or a word")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Whole(v.into()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Whole(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<Scalar, E> {
                Ok(if v.fract() == 0.0 && v.abs() < 1e18 {
                    Scalar::Whole(v as i128)
                } else {
                    Scalar::Fraction(v.to_string())
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Scalar {
    /// Reads the value with `parse` (a whole number, or `None` with how to show it), or `word`
    /// for text; a failure is the core's message, as a serde error the bindings wrap.
    fn read<T, E: serde::de::Error>(
        self,
        parse: impl Fn(Option<i128>, &dyn std::fmt::Display) -> Result<T>,
        word: impl Fn(&str) -> Result<T>,
    ) -> std::result::Result<T, E> {
        match self {
            Scalar::Whole(n) => parse(Some(n), &n),
            Scalar::Fraction(shown) => parse(None, &shown),
            Scalar::Text(t) => word(&t),
        }
        .map_err(|e| E::custom(message(e)))
    }
}

impl<'de> Deserialize<'de> for Expiry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Scalar::deserialize(d)?.read(Expiry::seconds, Expiry::parse)
    }
}

/// The words of a core error without its "invalid argument: " prefix, for a serde error that the
/// bindings wrap again.
fn message(e: Error) -> String {
    match e {
        Error::InvalidArgument(m) => m,
        other => other.to_string(),
    }
}

/// Reads a count of uses: a number, or digits in a string; refused in the admin's words.
fn parse_uses(n: Option<i128>, shown: &dyn std::fmt::Display) -> Result<u32> {
    match n {
        Some(n) if n >= 1 && n <= MAX_USES as i128 => Ok(n as u32),
        _ => Err(Error::InvalidArgument(format!("uses is a whole number from 1 to {MAX_USES}, not {shown}"))),
    }
}

/// [`parse_uses`] for what an admin typed.
fn parse_uses_text(text: &str) -> Result<u32> {
    parse_uses(text.trim().parse().ok(), &format!("{text:?}"))
}

fn deserialize_uses<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u32, D::Error> {
    Scalar::deserialize(d)?.read(parse_uses, parse_uses_text)
}

/// Reads an invite id an admin typed (`12`); `1.5`, `-3` or a 20-digit number are refused in
/// their words rather than failing a conversion inside a binding.
pub fn parse_invite_id(text: &str) -> Result<i64> {
    match text.trim().parse::<i64>() {
        Ok(id) if id >= 1 => Ok(id),
        _ => Err(Error::InvalidArgument(format!("an invite id is a whole number from 1 up, not {text:?}"))),
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
    #[serde(default = "default_uses", deserialize_with = "deserialize_uses")]
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

/// The options an admin gives `invite create` on a server's command line (prosodyctl), by the
/// names they type.
pub const INVITE_OPTIONS: [&str; 6] = ["--kind", "--uses", "--username", "--inviter", "--expires-in", "--note"];

impl NewInvite {
    /// An admin's invite from command-line options (`--uses 3 --expires-in never ...`), each
    /// refused in the admin's words: an unknown option names the known ones, not the fields
    /// of this struct.
    pub fn from_options(domain: &str, args: &[String]) -> Result<Self> {
        let mut new = NewInvite::account(domain);
        let mut args = args.iter();
        while let Some(option) = args.next() {
            if !INVITE_OPTIONS.contains(&option.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "unknown option {option:?}; invite create takes {}",
                    INVITE_OPTIONS.join(", ")
                )));
            }
            let value = args
                .next()
                .ok_or_else(|| Error::InvalidArgument(format!("the option {option} needs a value")))?
                .clone();
            match option.as_str() {
                "--kind" => new.kind = value.parse()?,
                "--uses" => new.uses = parse_uses_text(&value)?,
                "--username" => new.username = Some(value),
                "--inviter" => new.inviter = Some(value),
                "--expires-in" => new.expiry = Expiry::parse(&value)?,
                _ => new.note = Some(value),
            }
        }
        Ok(new)
    }

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

/// What [`Hosting::purge_invites`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Expired, used-up and revoked invites deleted (their audit trail stays).
    pub invites_removed: usize,
    /// Stale registrations still waiting for a server to say whether their account exists;
    /// their invites keep their uses held (and are not purged) until then.
    pub registrations_unsettled: usize,
}

/// How long a begun registration may go without an outcome before it counts as stale, and a
/// server is asked whether its account exists.
pub const STALE_REGISTRATION_SECS: i64 = 600;

/// Invites deleted per write transaction of a purge: each step holds the write lock for a few
/// milliseconds, however many invites have piled up, so registrations interleave with a purge.
pub const PURGE_STEP: usize = 500;

/// A registration begun more than [`STALE_REGISTRATION_SECS`] ago whose outcome was never
/// reported (the server died, or reporting it failed). Only the server can say whether the
/// account exists: it answers with an [`AccountOutcome`] for each one it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleRegistration {
    pub id: i64,
    pub domain: String,
    /// As the server created it (nodeprep'd).
    pub username: String,
}

/// A server's word on a [`StaleRegistration`]: whether its account exists now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountOutcome {
    pub id: i64,
    pub account_exists: bool,
}

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
            Expiry::After(s) => Some(now.saturating_add(Expiry::seconds(Some(s.into()), &s).map(|_| s as i64)?)),
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
    /// are told as one answer so a guesser learns nothing. A suspended domain's invites are not
    /// usable either: the registration would be refused, so the token must not be called valid.
    pub fn check_invite(&self, domain: &str, token: &str) -> Result<Option<Invite>> {
        let name = DomainName::parse(domain)?;
        if !token::is_well_formed(token) {
            return Ok(None);
        }
        let Some(domain) = self.domain(name.as_str())? else { return Ok(None) };
        let now = self.now();
        self.store().read(|c| {
            if crate::verification::is_suspended(c, &domain)? {
                return Ok(None);
            }
            let invite = sql::invite_by_hash(c, &name, &token::hash(token))?;
            Ok(invite.filter(|i| i.status(now) == InviteStatus::Active))
        })
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

    /// Registrations whose outcome never came, oldest first, at most `limit`: a server checks
    /// each account in its own account store and hands the answers to
    /// [`Hosting::settle_stale_registrations`].
    /// A use is never given back on the store's guess: an account created by a server that then
    /// failed to report it must not let its single-use invite register a second account.
    pub fn stale_registrations(&self, limit: usize) -> Result<Vec<StaleRegistration>> {
        let before = self.now() - STALE_REGISTRATION_SECS;
        self.store().read(|c| sql::stale_registrations(c, before, limit))
    }

    /// Settles the stale registrations a server answered for (`outcomes`, from
    /// [`Hosting::stale_registrations`], checked in its account store): a use is spent when the
    /// account exists and given back when it does not. Returns how many were settled; one that
    /// was settled meanwhile (a late report) or is not stale is left alone.
    pub fn settle_stale_registrations(&self, outcomes: &[AccountOutcome]) -> Result<usize> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        self.store().write(|tx| {
            let mut settled = 0;
            for o in outcomes {
                if sql::is_stale(tx, o.id, now - STALE_REGISTRATION_SECS)? {
                    let why = if o.account_exists { "the server has the account" } else { "no such account" };
                    registration::settle(tx, o.id, o.account_exists, now, why)?;
                    settled += 1;
                }
            }
            Ok(settled)
        })
    }

    /// Deletes invites nobody can use any more, in steps of [`PURGE_STEP`] so that no
    /// transaction holds the write lock for long. An invite held by a registration whose outcome
    /// never came is kept, with its use held, until a server settles it (see
    /// [`Hosting::stale_registrations`]). Safe to run at any time, from any process.
    pub fn purge_invites(&self) -> Result<PurgeReport> {
        let now = self.now();
        let mut report = PurgeReport::default();
        let mut after = 0;
        loop {
            let (removed, last) = self.purge_step(now, after, PURGE_STEP)?;
            report.invites_removed += removed;
            match last {
                Some(last) if removed == PURGE_STEP => after = last,
                _ => break,
            }
        }
        report.registrations_unsettled =
            self.store().read(|c| sql::count_stale_registrations(c, now - STALE_REGISTRATION_SECS))?;
        Ok(report)
    }

    /// One bounded step of a purge: deletes at most `limit` unusable invites with ids above
    /// `after`, in one transaction; returns how many, and the last id looked at.
    fn purge_step(&self, now: Timestamp, after: i64, limit: usize) -> Result<(usize, Option<i64>)> {
        self.store().write(|tx| {
            let ids = sql::inactive_invite_ids(tx, now, after, limit)?;
            for (id, domain) in &ids {
                sql::delete_invite(tx, *id)?;
                audit(tx, now, domain, *id, AuditAction::Purged, None, None)?;
            }
            Ok((ids.len(), ids.last().map(|(id, _)| *id)))
        })
    }

    /// [`Hosting::purge_invites`] on the core's worker, for a server's timer or admin command:
    /// a purge of thousands of invites must not stall Prosody's event loop or a scheduler.
    /// It runs on the worker's own connection: while another process holds the write lock, it
    /// waits there (the longer worker timeout) and the server's calls are not queued behind it.
    pub fn start_purge_invites(&self) -> Result<Pending<Result<PurgeReport>>> {
        self.later(|w| w.purge_invites())
    }

    /// The newest `limit` lines of a domain's invite history.
    pub fn invite_audit(&self, domain: &str, limit: u32) -> Result<Vec<AuditEntry>> {
        let domain = DomainName::parse(domain)?;
        self.store().read(|c| sql::audit_of_domain(c, &domain, limit))
    }
}

#[cfg(test)]
mod tests;
