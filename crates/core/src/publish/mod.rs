//! Publication (issue 15): each domain tells people and clients what it is and what it enforces,
//! from the settings it enforces.
//!
//! - [`description`]: what the admin says (who runs it, where, rules, links, contacts), stored
//!   in the domain's settings (section `publication`) and checked before it is stored;
//! - [`enforced`]: registration, upload limits and retention read from the settings that
//!   enforce them, never typed a second time;
//! - [`provider_file`]: the XMPP Providers provider file v2;
//! - [`disco`]: the XEP-0157 contact addresses and the policy as XEP-0128 forms for disco#info;
//! - [`page`]: the policy page (HTML for phones, JSON for portals);
//! - [`statistics`]: usage counts, published approximately: accounts counted by the server,
//!   daily and monthly active accounts from the logins it reports (`activity`).
//!
//! Every output is computed on each request from the store, so a changed setting is published
//! by the next request, with nothing else to edit or reload.

mod activity;
pub mod description;
pub mod disco;
pub mod enforced;
pub mod page;
pub mod provider_file;
pub mod statistics;
mod validate;

use serde::Serialize;

pub use description::{Contacts, Description, Organization};
pub use disco::{DiscoField, DiscoForm, POLICY_FORM_TYPE, SERVERINFO_FORM_TYPE};
pub use enforced::Enforced;
pub use page::PolicyDocument;
pub use provider_file::ProviderFile;
pub use statistics::UsageStatistics;

use crate::{Error, Hosting, Result};

/// A domain's publication: what its admin wrote and what it enforces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Publication {
    pub domain: String,
    pub description: Description,
    pub enforced: Enforced,
}

impl Publication {
    /// The publication as an admin reads it on a command line: the enforced values, then each
    /// field that is set.
    pub fn describe(&self) -> String {
        let e = &self.enforced;
        let mut out = format!(
            "{}: registration {}, largest file {}, storage per user {}, archive {}, uploads {} (enforced)\n",
            self.domain,
            e.registration_word(),
            e.max_file_size.map_or("no limit".into(), enforced::size_words),
            e.user_storage.map_or("no limit".into(), enforced::size_words),
            enforced::period_words(e.archive_retention),
            enforced::period_words(e.upload_retention),
        );
        let doc = serde_json::to_value(&self.description).unwrap_or_default();
        let mut unset = Vec::new();
        if let serde_json::Value::Object(fields) = doc {
            for (name, value) in fields {
                let empty = match &value {
                    serde_json::Value::Null => true,
                    serde_json::Value::Array(a) => a.is_empty(),
                    serde_json::Value::Object(o) => o.values().all(|v| v.as_array().is_some_and(|a| a.is_empty())),
                    _ => false,
                };
                if empty {
                    unset.push(name);
                } else {
                    out.push_str(&format!("  {name}: {value}\n"));
                }
            }
        }
        if !unset.is_empty() {
            out.push_str(&format!("  not set: {}\n", unset.join(", ")));
        }
        out
    }
}

impl Hosting {
    /// A domain's description and the values it enforces.
    pub fn publication(&self, domain: &str) -> Result<Publication> {
        let d = self.require_domain(domain)?;
        let enforced = Enforced::read(self, &d)?;
        Ok(Publication { domain: d.name.to_string(), description: d.settings.publication.clone(), enforced })
    }

    /// Sets one field of a domain's description (a name from [`Description::fields`], or a path
    /// below one such as `contacts.abuse`). `value` is JSON (`["mailto:abuse@example.org"]`,
    /// `{"en": "https://example.org/terms"}`, `3`, `null` to clear) or a plain string. Refused
    /// with the reason when it cannot be published (an http link, a country that is not ISO
    /// 3166-1, a language that is not BCP 47, an unknown organization type...).
    ///
    /// A per-language field also takes one language at a time, `terms.en` (`null` removes that
    /// language, the others stay), checked as the whole map is. `since` may not be after today
    /// anywhere on Earth: it is the day the service opened.
    pub fn set_publication(&self, domain: &str, field: &str, value: &str) -> Result<Publication> {
        let top = field.split('.').next().unwrap_or_default();
        if !Description::fields().iter().any(|f| f == top) {
            let enforced = ["registration", "max_file_size", "user_storage", "retention", "archive", "uploads"];
            let why = if enforced.iter().any(|e| top.contains(e)) {
                format!(
                    "{field:?} is published from the setting that enforces it: change that one \
                     (registration.policy, uploads.*, retention.*)"
                )
            } else {
                format!("there is no publication field {field:?}: use one of {}", Description::fields().join(", "))
            };
            return Err(Error::InvalidArgument(why));
        }
        self.update_domain_settings(domain, |current| {
            let updated = match field.split_once('.') {
                Some((map, lang)) if Description::per_language_fields().contains(&map) => {
                    let mut updated = current.clone();
                    updated.publication = current.publication.with_language(map, lang, value)?;
                    updated
                }
                _ => {
                    // `null` clears a list or a map to what an unset field holds: empty.
                    let cleared = (value.trim() == "null").then(|| cleared_value(field)).flatten();
                    let value = cleared.as_deref().unwrap_or(value);
                    crate::settings::set_by_path(current, &format!("publication.{field}"), value)?
                }
            };
            Ok(updated)
        })?;
        self.publication(domain)
    }

    /// The provider file v2 of `domain`.
    pub fn provider_file(&self, domain: &str) -> Result<ProviderFile> {
        let p = self.publication(domain)?;
        Ok(ProviderFile::new(&p.description, &p.enforced))
    }

    /// The XEP-0128 forms for `domain`'s disco#info (XEP-0157 contacts, the policy).
    pub fn disco_forms(&self, domain: &str) -> Result<Vec<DiscoForm>> {
        let p = self.publication(domain)?;
        Ok(disco::forms(&p.description, &p.enforced))
    }

    /// The policy page's content for a reader of `language` (a BCP 47 tag or an HTTP
    /// Accept-Language value; empty for the domain's own), with the server's counts.
    pub fn policy_document(&self, domain: &str, language: &str, stats: UsageStatistics) -> Result<PolicyDocument> {
        let p = self.publication(domain)?;
        let stats = self.usage_statistics(domain, stats)?;
        let reader = first_language(language);
        Ok(PolicyDocument::new(&p.domain, &p.description, &p.enforced, stats, &reader))
    }
}

/// The bookmark (XEP-0402) a new account of the domain gets for its support room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupportBookmark {
    /// The room's bare JID, also the bookmark's item id.
    pub jid: String,
    /// The name clients show for it.
    pub name: String,
    /// Joined when the client connects, so a new user finds help without looking for it.
    pub autojoin: bool,
}

impl Hosting {
    /// The support room bookmark for a new account of `domain`, if the domain names a room.
    pub fn support_bookmark(&self, domain: &str) -> Result<Option<SupportBookmark>> {
        let p = self.publication(domain)?;
        Ok(p.description.support_room.map(|room| SupportBookmark {
            jid: room.to_lowercase(),
            name: format!("{} support", p.domain),
            autojoin: true,
        }))
    }
}

/// Refuses a change of `since` to a day that has not begun anywhere on Earth at `now`: it is the
/// day the service opened. Checked by every change of a domain's settings (`publish set`,
/// `domain set publication.since`), not by [`Description::problems`], which knows no clock.
pub(crate) fn refuse_future_since(before: &Description, after: &Description, now: crate::Timestamp) -> Result<()> {
    if after.since == before.since {
        return Ok(());
    }
    match after.since.as_deref().and_then(|d| validate::future_problem(d, now)) {
        Some(why) => Err(Error::InvalidArgument(format!("cannot set publication.since: {why}"))),
        None => Ok(()),
    }
}

/// The JSON of `field` (a dotted path) in an empty description, when that is not `null` (an
/// empty list or map): what `null` sets it to.
fn cleared_value(field: &str) -> Option<String> {
    let empty = serde_json::to_value(Description::default()).ok()?;
    let value = field.split('.').try_fold(&empty, |v, key| v.get(key))?;
    (!value.is_null()).then(|| value.to_string())
}

/// The first language of an Accept-Language value (`de-CH,de;q=0.9,en;q=0.8` → `de-CH`).
fn first_language(accept: &str) -> String {
    let first = accept.split(',').next().unwrap_or_default().split(';').next().unwrap_or_default().trim();
    if first == "*" || validate::language_problem(first).is_some() {
        String::new()
    } else {
        first.to_string()
    }
}

#[cfg(test)]
mod tests;
