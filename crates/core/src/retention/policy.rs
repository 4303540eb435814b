//! What a domain promises about how long data is kept, and a user's own shorter choice.
//!
//! The policy is part of the domain's settings (`retention.archive`, `retention.muc`,
//! `retention.uploads`, `retention.backups`), so it is set, checked and published like every
//! other setting. Everything defaults to `never`: nothing is deleted until an admin says so.
//! Backups are declared only (published, not enforced: the backups are not ours to delete).

use serde::{Deserialize, Serialize};

use super::{Kind, Period};
use crate::{Error, Hosting, Result};

/// How long each kind of data is kept on one domain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionPolicy {
    /// One-to-one message archives (MAM).
    pub archive: Period,
    /// Group chat (MUC) archives.
    pub muc: Period,
    /// Uploaded files, from when their upload finished.
    pub uploads: Period,
    /// How long backups are kept, as published; no sweep deletes backups.
    pub backups: Period,
}

impl RetentionPolicy {
    /// The period a sweep of `kind` enforces.
    pub fn period(&self, kind: Kind) -> Period {
        match kind {
            Kind::Archive => self.archive,
            Kind::Muc => self.muc,
            Kind::Uploads => self.uploads,
        }
    }

    /// The policy in one line, the same on every command line:
    /// `archive 1w, muc never, uploads 30d, backups 1y (declared)`.
    pub fn describe(&self) -> String {
        format!(
            "archive {}, muc {}, uploads {}, backups {} (declared)",
            self.archive, self.muc, self.uploads, self.backups
        )
    }
}

/// The settings names an admin may set, as `retention set DOMAIN NAME VALUE` takes them.
pub const POLICY_FIELDS: [&str; 4] = ["archive", "muc", "uploads", "backups"];

impl Hosting {
    /// The retention policy of a hosted domain.
    pub fn retention_policy(&self, domain: &str) -> Result<RetentionPolicy> {
        Ok(self.require_domain(domain)?.settings.retention)
    }

    /// Sets one entry of a domain's policy (`archive`, `muc`, `uploads` or `backups`) from a
    /// period as admins write it. A nonsense value is refused with [`Error::InvalidPeriod`]
    /// before anything is stored. Takes effect at the next sweep.
    pub fn set_retention(&self, domain: &str, field: &str, value: &str) -> Result<RetentionPolicy> {
        if !POLICY_FIELDS.contains(&field) {
            return Err(Error::InvalidArgument(format!(
                "there is no retention setting {field:?}: use archive, muc, uploads or backups"
            )));
        }
        let period = Period::parse(value)?;
        let d = self.set_domain_setting(domain, &format!("retention.{field}"), &format!("{period}"))?;
        Ok(d.settings.retention)
    }

    /// Sets (or with `None` clears) the shorter archive retention a user chose for their own
    /// one-to-one archive. Refused when longer than the domain's: a user may keep less, never
    /// more than the domain promises to delete.
    pub fn set_user_archive_retention(&self, domain: &str, username: &str, period: Option<&str>) -> Result<()> {
        let user = crate::invites::normalize_username(username)
            .ok_or_else(|| Error::InvalidArgument(format!("{username:?} is not a valid username")))?;
        let period = period.map(Period::parse).transpose()?;
        let name = self.require_domain(domain)?.name;
        let now = self.now();
        self.store().write(|tx| {
            let domain_period = crate::store::domains::settings_text(tx, &name)?
                .map(|t| <crate::DomainSettings as crate::settings::JsonSettings>::from_json(&t))
                .transpose()?
                .unwrap_or_default()
                .retention
                .archive;
            match period {
                Some(p) if p > domain_period => Err(Error::InvalidArgument(format!(
                    "{user}@{name} cannot keep their archive for {p}: {name} keeps archives for {domain_period} at most"
                ))),
                Some(p) => crate::store::retention::set_user_archive(tx, name.as_str(), &user, &p.to_string(), now),
                None => crate::store::retention::clear_user_archive(tx, name.as_str(), &user),
            }
        })
    }

    /// How long a user's own archive is kept: their choice when shorter than the domain's,
    /// else the domain's (a domain shortened after the user chose still wins).
    pub fn user_archive_retention(&self, domain: &str, username: &str) -> Result<Period> {
        let user = crate::invites::normalize_username(username)
            .ok_or_else(|| Error::InvalidArgument(format!("{username:?} is not a valid username")))?;
        let d = self.require_domain(domain)?;
        let own = self.store().read(|c| crate::store::retention::user_archive(c, d.name.as_str(), &user))?;
        let own = match own {
            Some(text) => Period::parse(&text).map_err(|e| Error::Corrupt(format!("retention of {user}: {e}")))?,
            None => Period::Never,
        };
        Ok(own.min(d.settings.retention.archive))
    }
}

/// What the server's own expiry of the same data means next to the domain's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerExpiry {
    /// `warn`: both run, the server's needlessly (Prosody's blocks its loop while it deletes);
    /// `error`: the server deletes sooner than the policy promises to keep.
    pub level: &'static str,
    pub text: String,
}

impl Hosting {
    /// Compares a server's own expiry option for `kind` on `server_host` (`value` as configured,
    /// the server's default filled in; `None` or `never` for none) with the domain's policy.
    /// `None` when they cannot disagree: the policy keeps the kind for ever (the server's
    /// option is then the admin's business) or the server expires nothing.
    pub fn server_expiry_conflict(
        &self,
        domain: &str,
        kind: Kind,
        server_host: &str,
        option: &str,
        value: Option<&str>,
    ) -> Result<Option<ServerExpiry>> {
        let ours = self.retention_policy(domain)?.period(kind);
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
        if ours == Period::Never {
            return Ok(None);
        }
        let theirs = match Period::parse(value) {
            Ok(Period::Never) => return Ok(None),
            Ok(p) => p,
            Err(_) => {
                return Ok(Some(ServerExpiry {
                    level: "warn",
                    text: format!(
                        "{option} = {value:?} on {server_host} cannot be read; xmpp-hosting deletes the {} of \
                         {domain} after {ours}: set {option} = \"never\" so only one of them expires them",
                        kind.what()
                    ),
                }))
            }
        };
        Ok(Some(if theirs < ours {
            ServerExpiry {
                level: "error",
                text: format!(
                    "{option} = {value:?} on {server_host} deletes the {} of {domain} after {theirs}, sooner than \
                     the {ours} xmpp-hosting promises to keep them: set {option} = \"never\"",
                    kind.what()
                ),
            }
        } else {
            ServerExpiry {
                level: "warn",
                text: format!(
                    "{option} = {value:?} on {server_host} runs the server's own cleanup of the {} of {domain} \
                     beside xmpp-hosting's ({ours}), as one long delete that blocks the server: set {option} = \
                     \"never\" to leave expiry to xmpp-hosting",
                    kind.what()
                ),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosting() -> Hosting {
        let h = Hosting::open_in_memory().unwrap();
        h.add_domain("example.org").unwrap();
        h
    }

    #[test]
    fn nothing_expires_until_an_admin_sets_a_period() {
        let h = hosting();
        let p = h.retention_policy("example.org").unwrap();
        assert_eq!(p, RetentionPolicy::default());
        assert!(Kind::ALL.iter().all(|&k| p.period(k) == Period::Never));
    }

    #[test]
    fn each_entry_is_set_as_admins_write_it_and_stored_in_the_settings() {
        let h = hosting();
        h.set_retention("example.org", "archive", "1w").unwrap();
        h.set_retention("example.org", "muc", "30 days").unwrap();
        h.set_retention("example.org", "uploads", "86400").unwrap();
        let p = h.set_retention("example.org", "backups", "1y").unwrap();
        assert_eq!(
            (p.archive, p.muc, p.uploads, p.backups),
            (Period::After(604_800), Period::After(2_592_000), Period::After(86_400), Period::After(31_556_952))
        );
        assert_eq!(h.require_domain("example.org").unwrap().settings.retention, p);
        assert_eq!(p.describe(), "archive 1w, muc 30d, uploads 1d, backups 1y (declared)");
        // The generic settings path reads the same values.
        let d = h.set_domain_setting("example.org", "retention.archive", "3600").unwrap();
        assert_eq!(d.settings.retention.archive, Period::After(3600));
        h.set_retention("example.org", "archive", "never").unwrap();
        assert_eq!(h.retention_policy("example.org").unwrap().archive, Period::Never);
    }

    #[test]
    fn nonsense_is_refused_and_nothing_is_stored() {
        let h = hosting();
        h.set_retention("example.org", "archive", "1w").unwrap();
        for (field, value, says) in [
            ("archive", "-1d", "negative"),
            ("archive", "0", "delete everything at once"),
            ("uploads", "5 fortnights", "unknown unit"),
            ("muc", "500y", "100 years"),
            ("mam", "1w", "no retention setting \"mam\""),
        ] {
            let e = h.set_retention("example.org", field, value).unwrap_err();
            assert_eq!(e.code(), "invalid-argument", "{field} {value}");
            assert!(e.to_string().contains(says), "{field} {value}: {e}");
        }
        for value in ["-5", "0", "soon"] {
            let e = h.set_domain_setting("example.org", "retention.archive", value).unwrap_err();
            assert_eq!(e.code(), "invalid-argument", "{value}");
        }
        assert_eq!(h.retention_policy("example.org").unwrap().archive, Period::After(604_800));
        assert_eq!(h.set_retention("nope.example", "archive", "1w").unwrap_err().code(), "not-found");
    }

    #[test]
    fn the_servers_own_expiry_is_flagged_when_it_runs_beside_the_policy_and_an_error_when_sooner() {
        let h = hosting();
        let check = |v: Option<&str>| {
            h.server_expiry_conflict("example.org", Kind::Archive, "example.org", "archive_expires_after", v).unwrap()
        };
        assert_eq!(check(Some("1w")), None, "our policy keeps for ever: not ours to judge");
        h.set_retention("example.org", "archive", "30d").unwrap();
        assert_eq!(check(None), None);
        assert_eq!(check(Some("never")), None);
        let sooner = check(Some("1w")).unwrap();
        assert_eq!(sooner.level, "error");
        assert!(sooner.text.contains("sooner than the 30d"), "{}", sooner.text);
        let later = check(Some("1y")).unwrap();
        assert_eq!(later.level, "warn");
        assert!(later.text.contains("archive_expires_after = \"never\""), "{}", later.text);
        assert_eq!(check(Some("30d")).unwrap().level, "warn", "the same period: both run");
        assert!(check(Some("soonish")).unwrap().text.contains("cannot be read"));
    }

    #[test]
    fn a_user_may_keep_less_never_more_and_a_shorter_domain_wins() {
        let h = hosting();
        assert_eq!(h.user_archive_retention("example.org", "alice").unwrap(), Period::Never);
        h.set_retention("example.org", "archive", "30d").unwrap();
        let e = h.set_user_archive_retention("example.org", "alice", Some("1y")).unwrap_err();
        assert!(e.to_string().contains("keeps archives for 30d at most"), "{e}");
        assert_eq!(
            h.set_user_archive_retention("example.org", "alice", Some("never")).unwrap_err().code(),
            "invalid-argument"
        );
        h.set_user_archive_retention("example.org", "Alice", Some("1w")).unwrap();
        assert_eq!(h.user_archive_retention("example.org", "alice").unwrap(), Period::After(604_800));
        assert_eq!(h.user_archive_retention("example.org", "bob").unwrap(), Period::After(2_592_000));
        h.set_retention("example.org", "archive", "1d").unwrap();
        assert_eq!(h.user_archive_retention("example.org", "alice").unwrap(), Period::After(86_400));
        h.set_retention("example.org", "archive", "30d").unwrap();
        h.set_user_archive_retention("example.org", "alice", None).unwrap();
        assert_eq!(h.user_archive_retention("example.org", "alice").unwrap(), Period::After(2_592_000));
        assert_eq!(
            h.set_user_archive_retention("example.org", "a b", Some("1d")).unwrap_err().code(),
            "invalid-argument"
        );
    }
}
