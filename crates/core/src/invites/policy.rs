//! Who may register on a domain: the per-domain policy and the refusals it gives.
//!
//! Both servers map a [`Refusal`] to the stanza error it names, so the wording and the XMPP
//! condition of every refusal are decided here once, not in Lua and again in Erlang.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// How accounts come to exist on a domain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationPolicy {
    /// Only with a valid invite. The default: open registration invites spam and fake accounts.
    #[default]
    Invite,
    /// Anyone, within the per-IP abuse limits; an invite still works.
    Open,
    /// Nobody registers in-band, not even with an invite (admins create accounts).
    Closed,
}

impl std::str::FromStr for RegistrationPolicy {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "invite" => Ok(Self::Invite),
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            other => Err(crate::Error::InvalidArgument(format!(
                "registration policy must be invite, open or closed, not {other:?}"
            ))),
        }
    }
}

/// Seven days, as Prosody's mod_invites (`invite_expiry`).
pub const DEFAULT_INVITE_TTL: u64 = 7 * 24 * 3600;

/// The registration section of a domain's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistrationSettings {
    pub policy: RegistrationPolicy,
    /// `open` only: minimum seconds between two registrations from one IP address (0: no minimum).
    pub min_seconds_between_per_ip: Option<u64>,
    /// `open` only: at most this many registrations from one IP address in 24 hours (0: no limit;
    /// a domain that takes no registrations at all is `closed`).
    pub max_per_ip_per_day: Option<u32>,
    /// Usernames nobody may take by registering (admin, postmaster...), compared case-insensitively.
    pub reserved_usernames: Vec<String>,
    /// Usernames refused outright, even with an invite.
    pub blocked_usernames: Vec<String>,
    /// Whether users of the domain may create invites themselves.
    pub users_may_invite: bool,
    /// Lifetime of a new invite in seconds when the creator names none; `None` never expires.
    pub invite_ttl: Option<u64>,
    /// Landing page for invite links, e.g. `https://{domain}/invite/{token}/`.
    pub landing_url: Option<String>,
}

impl Default for RegistrationSettings {
    fn default() -> Self {
        RegistrationSettings {
            policy: RegistrationPolicy::Invite,
            min_seconds_between_per_ip: None,
            max_per_ip_per_day: None,
            reserved_usernames: Vec::new(),
            blocked_usernames: Vec::new(),
            users_may_invite: false,
            invite_ttl: Some(DEFAULT_INVITE_TTL),
            landing_url: None,
        }
    }
}

impl RegistrationSettings {
    /// Compared in nodeprep'd form on both sides: an admin's `Admin` and a client's `admin` +
    /// U+00AD (which the server creates as `admin`) are the same name.
    pub(crate) fn is_reserved(&self, username: &str) -> bool {
        listed(&self.reserved_usernames, username)
    }

    pub(crate) fn is_blocked(&self, username: &str) -> bool {
        listed(&self.blocked_usernames, username)
    }
}

/// Whether `username` (already normalised) is on `list`, whose entries an admin typed as they liked.
fn listed(list: &[String], username: &str) -> bool {
    list.iter().any(|u| normalize_username(u).is_some_and(|u| u == username))
}

/// Why a registration is refused. Serialises with everything a server needs to answer:
/// `{reason, type, condition, text, retry_at?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The domain is invite-only and no token came with the request.
    InviteRequired,
    /// The token is unknown, expired, used up, revoked, or for another domain.
    InvalidInvite,
    /// The domain does not allow in-band registration at all.
    RegistrationClosed,
    /// A customer's domain whose DNS proof is gone for good: not served until proved again.
    DomainSuspended,
    /// Not a username we accept (empty, too long, forbidden characters).
    InvalidUsername,
    /// Reserved, or held for someone's invite.
    UsernameReserved,
    /// On the blocked list.
    UsernameBlocked,
    /// The invite is for another username.
    UsernameMismatch,
    /// Too soon after the last registration from this address.
    TooSoon { retry_at: Timestamp },
    /// This address used up its registrations for the day.
    TooMany { retry_at: Timestamp },
}

impl Refusal {
    /// The stanza error type and condition (RFC 6120 §8.3) both servers answer with.
    pub fn condition(&self) -> (&'static str, &'static str) {
        match self {
            Refusal::InviteRequired | Refusal::RegistrationClosed | Refusal::DomainSuspended => {
                ("cancel", "not-allowed")
            }
            Refusal::InvalidInvite => ("cancel", "forbidden"),
            Refusal::InvalidUsername => ("modify", "not-acceptable"),
            Refusal::UsernameReserved | Refusal::UsernameBlocked => ("cancel", "conflict"),
            Refusal::UsernameMismatch => ("modify", "not-acceptable"),
            Refusal::TooSoon { .. } | Refusal::TooMany { .. } => ("wait", "policy-violation"),
        }
    }

    /// The human text sent with the error.
    pub fn text(&self) -> String {
        match self {
            Refusal::InviteRequired => "Registration on this server requires an invite".into(),
            Refusal::InvalidInvite => "The invite is not valid (unknown, expired or already used)".into(),
            Refusal::RegistrationClosed => "Registration on this server is closed".into(),
            Refusal::DomainSuspended => "This domain is suspended: registration is not possible".into(),
            Refusal::InvalidUsername => "The username is not valid".into(),
            Refusal::UsernameReserved => "The username is reserved".into(),
            Refusal::UsernameBlocked => "The username is not available".into(),
            Refusal::UsernameMismatch => "The invite is for a different username".into(),
            Refusal::TooSoon { .. } => "Too many registrations from your address; try again later".into(),
            Refusal::TooMany { .. } => "Too many registrations from your address today".into(),
        }
    }

    /// A short stable name for logs and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::InviteRequired => "invite-required",
            Refusal::InvalidInvite => "invalid-invite",
            Refusal::RegistrationClosed => "registration-closed",
            Refusal::DomainSuspended => "domain-suspended",
            Refusal::InvalidUsername => "invalid-username",
            Refusal::UsernameReserved => "username-reserved",
            Refusal::UsernameBlocked => "username-blocked",
            Refusal::UsernameMismatch => "username-mismatch",
            Refusal::TooSoon { .. } => "too-soon",
            Refusal::TooMany { .. } => "too-many",
        }
    }
}

impl Serialize for Refusal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (kind, condition) = self.condition();
        let retry_at = match self {
            Refusal::TooSoon { retry_at } | Refusal::TooMany { retry_at } => Some(*retry_at),
            _ => None,
        };
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("reason", self.code())?;
        m.serialize_entry("type", kind)?;
        m.serialize_entry("condition", condition)?;
        m.serialize_entry("text", &self.text())?;
        if let Some(t) = retry_at {
            m.serialize_entry("retry_at", &t)?;
        }
        m.end()
    }
}

/// The longest localpart RFC 7622 allows, in bytes.
pub const MAX_USERNAME_LEN: usize = 1023;

/// Normalises a username to the form the servers create the account under: nodeprep (RFC 3920
/// Appendix A), what Prosody 0.12 (`util.encodings.stringprep.nodeprep`) and ejabberd
/// (`jid:nodeprep`) apply. Comparing anything less lets look-alikes through: ejabberd hands the
/// raw name over, and `admin` + U+00AD (soft hyphen) or `ro` + U+200B + `ot` become `admin` and
/// `root` only when the account is created, after a reserved or blocked check on the raw form
/// had passed. Returns `None` for names nodeprep refuses (spaces, `@`, `/`, controls, unassigned
/// code points...) or longer than a localpart may be.
pub fn normalize_username(username: &str) -> Option<String> {
    // Mapping can only shrink or grow a name a few times over; no need to prep a megabyte.
    if username.is_empty() || username.len() > 4 * MAX_USERNAME_LEN {
        return None;
    }
    let prepped = stringprep::nodeprep(username).ok()?;
    if prepped.is_empty() || prepped.len() > MAX_USERNAME_LEN {
        return None;
    }
    Some(prepped.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_case_folded_and_checked() {
        assert_eq!(normalize_username("Alice").as_deref(), Some("alice"));
        assert_eq!(normalize_username(""), None);
        assert_eq!(normalize_username("a b"), None);
        assert_eq!(normalize_username("a@b"), None);
        assert_eq!(normalize_username(&"x".repeat(2000)), None);
        assert_eq!(normalize_username(" alice"), None);
    }

    #[test]
    fn usernames_are_nodeprepped_as_the_servers_create_them() {
        // Look-alikes that ejabberd registered as admin, root and carol (issue 11.3).
        assert_eq!(normalize_username("admin\u{00AD}").as_deref(), Some("admin"));
        assert_eq!(normalize_username("ro\u{200B}ot").as_deref(), Some("root"));
        assert_eq!(normalize_username("Carol\u{00AD}").as_deref(), Some("carol"));
        // NFKC and case folding beyond ASCII.
        assert_eq!(normalize_username("ＡＤＭＩＮ").as_deref(), Some("admin"));
        assert_eq!(normalize_username("Straße").as_deref(), Some("strasse"));
        // What nodeprep refuses: non-ASCII spaces, private use, a name only of ignorable characters.
        assert_eq!(normalize_username("a\u{00A0}b"), None);
        assert_eq!(normalize_username("\u{E000}x"), None);
        assert_eq!(normalize_username("\u{00AD}"), None);
    }

    #[test]
    fn reserved_and_blocked_lists_match_look_alikes() {
        let s = RegistrationSettings {
            reserved_usernames: vec!["Admin".into()],
            blocked_usernames: vec!["root".into()],
            ..Default::default()
        };
        assert!(s.is_reserved(&normalize_username("admin\u{00AD}").unwrap()));
        assert!(s.is_blocked(&normalize_username("ro\u{200B}ot").unwrap()));
        assert!(!s.is_blocked("rooty"));
    }

    #[test]
    fn settings_default_to_invite_only_with_a_week_of_validity() {
        let s: RegistrationSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s.policy, RegistrationPolicy::Invite);
        assert_eq!(s.invite_ttl, Some(DEFAULT_INVITE_TTL));
        let s: RegistrationSettings = serde_json::from_str(r#"{"policy":"open","invite_ttl":null}"#).unwrap();
        assert_eq!(s.policy, RegistrationPolicy::Open);
        assert_eq!(s.invite_ttl, None);
    }

    #[test]
    fn refusals_name_their_stanza_error() {
        assert_eq!(Refusal::InviteRequired.condition(), ("cancel", "not-allowed"));
        assert_eq!(Refusal::TooSoon { retry_at: 5 }.condition().0, "wait");
        let v = serde_json::to_value(Refusal::TooMany { retry_at: 9 }).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"reason": "too-many", "type": "wait", "condition": "policy-violation",
            "text": "Too many registrations from your address today", "retry_at": 9})
        );
    }
}
