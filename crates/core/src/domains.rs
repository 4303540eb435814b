//! Hosted domains: the first thing an operator adds, and what every other rule hangs off.

use serde::Serialize;

use crate::settings::JsonSettings;
use crate::store::domains as store;
use crate::{DomainName, DomainSettings, Error, Hosting, Result, Timestamp};

/// One hosted domain as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Domain {
    /// The IDNA ASCII form, the domain's identity.
    pub name: DomainName,
    /// The same name as people write it (U-labels); equal to `name` for ASCII names.
    pub unicode_name: String,
    pub settings: DomainSettings,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Domain {
    /// The name as people write it; see the `unicode_name` field.
    pub fn unicode_name(&self) -> &str {
        &self.unicode_name
    }
}

impl Serialize for DomainName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Hosting {
    /// Starts hosting `name` with default settings.
    pub fn add_domain(&self, name: &str) -> Result<Domain> {
        self.add_domain_with(name, DomainSettings::default())
    }

    /// Starts hosting `name` with the given settings (refused if one of them cannot work).
    pub fn add_domain_with(&self, name: &str, settings: DomainSettings) -> Result<Domain> {
        let name = DomainName::parse(name)?;
        crate::settings::refuse_new_problems(&DomainSettings::default(), &settings)?;
        let now = self.now();
        if !self.store().insert_domain(&name, &settings, now)? {
            return Err(Error::AlreadyExists { what: "domain", key: name.to_string() });
        }
        Ok(Domain { unicode_name: name.to_unicode(), name, settings, created_at: now, updated_at: now })
    }

    /// The domain called `name`, if it is hosted.
    pub fn domain(&self, name: &str) -> Result<Option<Domain>> {
        self.store().select_domain(&DomainName::parse(name)?)
    }

    /// Like [`Hosting::domain`], but a missing domain is an error.
    pub fn require_domain(&self, name: &str) -> Result<Domain> {
        let parsed = DomainName::parse(name)?;
        self.store().select_domain(&parsed)?.ok_or_else(|| Error::not_found("domain", parsed.as_str()))
    }

    /// Every hosted domain, ordered by name.
    pub fn domains(&self) -> Result<Vec<Domain>> {
        self.store().select_domains()
    }

    /// Replaces the settings of a hosted domain.
    pub fn set_domain_settings(&self, name: &str, settings: DomainSettings) -> Result<Domain> {
        self.update_domain_settings(name, |_| Ok(settings))
    }

    /// Reads a domain's settings, lets `change` make the new ones, checks them and writes them,
    /// all in one transaction. Checked: no setting that cannot work, and no new owner on a
    /// customer's domain (its owner follows the DNS proof; see `verification`). Fields written by
    /// a newer version of this library are kept.
    pub(crate) fn update_domain_settings(
        &self,
        name: &str,
        change: impl FnOnce(&DomainSettings) -> Result<DomainSettings>,
    ) -> Result<Domain> {
        let parsed = DomainName::parse(name)?;
        let now = self.now();
        self.store().write(|tx| {
            let missing = || Error::not_found("domain", parsed.as_str());
            let stored = store::settings_text(tx, &parsed)?.ok_or_else(missing)?;
            let current = DomainSettings::from_json(&stored)?;
            let updated = change(&current)?;
            crate::settings::refuse_new_problems(&current, &updated)?;
            crate::publish::refuse_future_since(&current.publication, &updated.publication, now)?;
            if updated.owner != current.owner {
                crate::verification::refuse_owner_change(tx, parsed.as_str())?;
            }
            store::write_settings(tx, &parsed, &updated.to_json_over(Some(&stored)), now)?;
            store::domain(tx, &parsed)?.ok_or_else(missing)
        })
    }

    /// Stops hosting a domain and forgets everything stored for it. Customers' claims on it end
    /// too (each with a `removed` entry in the domain's history): otherwise the next check that
    /// found a proof would host the domain again behind the operator's back. When it was removed
    /// is kept, so that a server's request to host it made late does not add it back (see
    /// [`Hosting::add_configured_domain`]).
    pub fn remove_domain(&self, name: &str) -> Result<()> {
        let parsed = DomainName::parse(name)?;
        let now = self.now();
        self.store().write(|tx| {
            if !store::delete(tx, &parsed)? {
                return Err(Error::not_found("domain", parsed.as_str()));
            }
            store::record_removal(tx, &parsed, now)?;
            crate::verification::end_claims(tx, parsed.as_str(), "domain removed by the operator", now)?;
            Ok(())
        })
    }

    /// Adds `name`, a host a server is configured with, as of this handle's time (the time the
    /// server asked, for a write retried late behind another process's lock: see
    /// [`Hosting::now_or_in_background`]), unless it is there already or an operator removed it
    /// after that time: a late request must not undo the operator's later removal. A removal in
    /// the same second counts as later (times are whole seconds): the likeliest way to meet it
    /// is the removal itself holding the write lock when the server asked, and committing within
    /// that second. One transaction, so a removal cannot slip between the check and the insert.
    pub(crate) fn add_configured_domain(&self, name: &str) -> Result<ConfiguredDomain> {
        let parsed = DomainName::parse(name)?;
        let asked = self.now();
        self.store().write(|tx| {
            if let Some(domain) = store::domain(tx, &parsed)? {
                return Ok(ConfiguredDomain::There(domain));
            }
            if let Some(removed) = store::removed_at(tx, &parsed)?.filter(|&removed| removed >= asked) {
                return Ok(ConfiguredDomain::RemovedSince { asked, removed });
            }
            let settings = DomainSettings::default();
            store::insert(tx, &parsed, &settings, asked)?;
            Ok(ConfiguredDomain::Added(Domain {
                unicode_name: parsed.to_unicode(),
                name: parsed.clone(),
                settings,
                created_at: asked,
                updated_at: asked,
            }))
        })
    }
}

/// What [`Hosting::add_configured_domain`] did.
#[derive(Debug)]
pub(crate) enum ConfiguredDomain {
    Added(Domain),
    /// Already hosted (another server, or an operator, added it first).
    There(Domain),
    /// Not added: an operator removed it at `removed`, in or after the second the server asked
    /// (`asked`).
    RemovedSince {
        asked: Timestamp,
        removed: Timestamp,
    },
}

#[cfg(test)]
mod tests {
    use crate::{Error, Hosting, ManualClock};

    fn hosting() -> (Hosting, ManualClock) {
        let clock = ManualClock::new(1_700_000_000);
        (Hosting::open_in_memory().unwrap().with_clock(clock.clone()), clock)
    }

    #[test]
    fn add_get_list_remove() {
        let (h, clock) = hosting();
        let d = h.add_domain("Example.org").unwrap();
        assert_eq!(d.name.as_str(), "example.org");
        assert_eq!(d.created_at, 1_700_000_000);
        clock.advance(10);
        h.add_domain("bücher.example").unwrap();
        let names: Vec<_> = h.domains().unwrap().into_iter().map(|d| d.name.to_string()).collect();
        assert_eq!(names, ["example.org", "xn--bcher-kva.example"]);
        assert_eq!(h.domain("EXAMPLE.org.").unwrap().unwrap(), d);
        h.remove_domain("example.org").unwrap();
        assert!(h.domain("example.org").unwrap().is_none());
        assert!(matches!(h.remove_domain("example.org"), Err(Error::NotFound { .. })));
    }

    #[test]
    fn unicode_and_ascii_forms_collide() {
        let (h, _) = hosting();
        h.add_domain("xn--bcher-kva.example").unwrap();
        let e = h.add_domain("Bücher.example").unwrap_err();
        assert_eq!(e.code(), "already-exists");
        assert_eq!(e.to_string(), "domain already exists: xn--bcher-kva.example");
    }

    #[test]
    fn invalid_names_are_refused_and_nothing_is_stored() {
        let (h, _) = hosting();
        for bad in ["", "127.0.0.1", "a..b", "x'; DROP TABLE domains; --.example"] {
            assert_eq!(h.add_domain(bad).unwrap_err().code(), "invalid-domain", "{bad}");
        }
        assert!(h.domains().unwrap().is_empty());
    }

    #[test]
    fn settings_update_is_stored() {
        let (h, clock) = hosting();
        h.add_domain("example.org").unwrap();
        clock.advance(60);
        let mut s = h.require_domain("example.org").unwrap().settings;
        s.owner = Some("alice@example.net".into());
        let d = h.set_domain_settings("example.org", s.clone()).unwrap();
        assert_eq!(d.settings, s);
        assert_eq!(d.updated_at, 1_700_000_060);
        assert_eq!(h.set_domain_settings("nope.example", s).unwrap_err().code(), "not-found");
    }

    #[test]
    fn two_handles_on_one_file_see_each_other() {
        let dir = std::env::temp_dir().join(format!("xh-domains-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shared.db");
        let a = Hosting::open(&path).unwrap();
        let b = Hosting::open(&path).unwrap();
        a.add_domain("one.example").unwrap();
        assert!(b.domain("one.example").unwrap().is_some());
        std::fs::remove_dir_all(&dir).ok();
    }
}
