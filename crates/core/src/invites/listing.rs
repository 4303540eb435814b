//! An invite as an admin's listing shows it: its status worked out by the core's clock, and one
//! line of text, so that prosodyctl, ejabberdctl and the CLI say the same thing. Before, Prosody
//! computed the status in Lua with `os.time()` and ejabberd only ever said "revoked".

use serde::Serialize;

use super::{Invite, InviteStatus};
use crate::domains::ConfiguredDomain;
use crate::{Hosting, Result, Timestamp};

/// One invite of [`Hosting::invite_list`]: the stored fields (flattened, so data shapes keep
/// `id`, `uses_left`, ...), its status now, and the line an admin reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedInvite {
    #[serde(flatten)]
    pub invite: Invite,
    pub status: InviteStatus,
    pub line: String,
}

impl InviteStatus {
    /// The word a listing shows.
    pub fn as_str(self) -> &'static str {
        match self {
            InviteStatus::Active => "active",
            InviteStatus::Expired => "expired",
            InviteStatus::UsedUp => "used-up",
            InviteStatus::Revoked => "revoked",
        }
    }
}

impl ListedInvite {
    pub fn new(invite: Invite, now: Timestamp) -> Self {
        let status = invite.status(now);
        let mut line = format!(
            "{} {} {}, {}/{} left, expires {}, by {}",
            invite.id,
            invite.kind.as_str(),
            status.as_str(),
            invite.uses_left,
            invite.uses_total,
            invite.expires_at.map_or_else(|| "never".to_string(), utc_iso8601),
            invite.created_by,
        );
        if let Some(user) = &invite.username {
            line.push_str(&format!(", for {user}"));
        }
        if let Some(inviter) = &invite.inviter {
            line.push_str(&format!(", inviter {inviter}"));
        }
        if let (Some(at), Some(by)) = (invite.revoked_at, &invite.revoked_by) {
            line.push_str(&format!(", revoked {} by {by}", utc_iso8601(at)));
        }
        if let Some(note) = &invite.note {
            line.push_str(&format!(", note: {note}"));
        }
        ListedInvite { invite, status, line }
    }
}

/// A timestamp as ISO 8601 UTC (`2026-12-01T03:31:49Z`), the form ejabberd prints elsewhere.
pub fn utc_iso8601(t: Timestamp) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// What [`Hosting::ensure_hosted`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostedDomain {
    /// The hosted domain; none when it was not added because an operator removed it after the
    /// server asked (see [`Hosting::ensure_hosted`]).
    pub domain: Option<crate::Domain>,
    /// Whether this call added it (the server logs that once).
    pub added: bool,
    /// The line a server logs when it added the domain, or did not because of a removal.
    pub log: Option<String>,
}

impl Hosting {
    /// The rule both servers' invite modules follow at start: a host that loads the invite
    /// module is hosted. The store is told so here, with the default (invite-only) policy
    /// until an admin changes it; a domain already there is left as it is. Two servers starting
    /// at once may both try: the one that loses finds the domain there. Made late (retried by
    /// the worker behind another process's lock, as of the time the server asked), it does not
    /// add back a domain an operator removed after that time.
    pub fn ensure_hosted(&self, name: &str) -> Result<HostedDomain> {
        // A read first: a host already there costs no write lock (and waits for none).
        if let Some(domain) = self.domain(name)? {
            return Ok(HostedDomain { domain: Some(domain), added: false, log: None });
        }
        Ok(match self.add_configured_domain(name)? {
            ConfiguredDomain::Added(domain) => {
                let log = format!("Added {} to the xmpp-hosting store (registration: invite only)", domain.name);
                HostedDomain { domain: Some(domain), added: true, log: Some(log) }
            }
            ConfiguredDomain::There(domain) => HostedDomain { domain: Some(domain), added: false, log: None },
            ConfiguredDomain::RemovedSince { asked, removed } => {
                let when = if removed > asked {
                    format!(
                        "at {}, after this server asked to host it at {} (its request was made late, behind \
                         another process's lock on the store)",
                        utc_iso8601(removed),
                        utc_iso8601(asked)
                    )
                } else {
                    format!("at {}, the second this server asked to host it", utc_iso8601(removed))
                };
                let log = format!(
                    "{} was not added to the xmpp-hosting store: an operator removed it {when}; add it again with \
                     `domain add` if it should be hosted",
                    crate::DomainName::parse(name)?,
                );
                HostedDomain { domain: None, added: false, log: Some(log) }
            }
        })
    }

    /// A domain's invites as an admin's listing shows them, oldest first (until purged).
    pub fn invite_list(&self, domain: &str) -> Result<Vec<ListedInvite>> {
        let now = self.now();
        Ok(self.invites(domain)?.into_iter().map(|i| ListedInvite::new(i, now)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invites::{Creator, Expiry, NewInvite};
    use crate::ManualClock;

    #[test]
    fn a_host_that_loads_the_invite_module_is_hosted_once() {
        let h = Hosting::open_in_memory().unwrap();
        let first = h.ensure_hosted("Example.ORG").unwrap();
        assert!(first.added);
        assert_eq!(
            first.log.as_deref(),
            Some("Added example.org to the xmpp-hosting store (registration: invite only)")
        );
        h.set_domain_setting("example.org", "registration.policy", "open").unwrap();
        let again = h.ensure_hosted("example.org").unwrap();
        assert!(!again.added && again.log.is_none());
        assert_eq!(again.domain.unwrap().settings.registration.policy, crate::invites::RegistrationPolicy::Open);
        assert_eq!(h.ensure_hosted("bad..name").unwrap_err().code(), "invalid-domain");
    }

    #[test]
    fn times_are_iso8601_utc() {
        assert_eq!(utc_iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn the_listing_says_each_status_by_the_cores_clock() {
        let clock = ManualClock::new(1_700_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        h.add_domain("example.org").unwrap();
        let mut short = NewInvite::account("example.org");
        short.expiry = Expiry::After(60);
        short.note = Some("family".into());
        let expiring = h.create_invite(&short).unwrap();
        let revoked = h.create_invite(&NewInvite::account("example.org")).unwrap();
        h.revoke_invite("example.org", revoked.invite.id, &Creator::Admin).unwrap();
        let mut never = NewInvite::account("example.org");
        never.expiry = Expiry::Never;
        never.username = Some("carol".into());
        h.create_invite(&never).unwrap();
        let list = h.invite_list("example.org").unwrap();
        let statuses: Vec<_> = list.iter().map(|l| l.status).collect();
        assert_eq!(statuses, [InviteStatus::Active, InviteStatus::Revoked, InviteStatus::Active]);
        assert_eq!(
            list[0].line,
            format!(
                "{} account active, 1/1 left, expires 2023-11-14T22:14:20Z, by admin, note: family",
                expiring.invite.id
            )
        );
        assert!(list[1].line.contains("revoked 2023-11-14T22:13:20Z by admin"), "{}", list[1].line);
        assert!(list[2].line.ends_with("expires never, by admin, for carol"), "{}", list[2].line);
        clock.advance(60);
        assert_eq!(h.invite_list("example.org").unwrap()[0].status, InviteStatus::Expired);
        let json = serde_json::to_value(&h.invite_list("example.org").unwrap()[0]).unwrap();
        assert_eq!((json["status"].as_str(), json["uses_left"].as_u64()), (Some("expired"), Some(1)));
    }
}
