//! The settings a slot decision reads, parsed once per text.
//!
//! A decision needs a few fields of the domain's settings (its owner, its upload limits) and
//! the provider's upload limits. Both live in the store as JSON documents that also hold the
//! registration rules, the retention policy and the published description; parsing them whole
//! on every decision was about a fifth of a decision's cost on Prosody's loop (issue 11 item 4).
//! The text is still read in the decision's transaction, every time, and compared with the text
//! the cached values came from: a change made by any process (the CLI, the other server) is
//! seen at once, and the values used are exactly what parsing the stored text gives.

use std::cell::RefCell;
use std::collections::HashMap;

use rusqlite::Connection;

use super::policy::{GlobalUploadLimits, UploadLimits};
use crate::settings::JsonSettings;
use crate::store::domains as store_domains;
use crate::{DomainName, DomainSettings, ProviderSettings, Result};

/// What a decision needs of a domain's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DomainLimits {
    /// The customer account that owns the domain, whose claim decides whether it is suspended.
    pub owner: Option<String>,
    pub uploads: UploadLimits,
}

/// Domains whose parsed settings a thread keeps; past this the cache starts again (a server
/// hosting more domains than this parses a little more often, never wrongly).
const MAX_CACHED_DOMAINS: usize = 1024;

/// Values parsed from `text`.
struct Parsed<T> {
    text: String,
    value: T,
}

thread_local! {
    // Per thread: Prosody's loop is one thread, ejabberd's dirty schedulers each keep their own;
    // nothing is shared, so nothing is locked. Keyed by domain name; a text of another store
    // (two stores open in one process) simply differs and is parsed.
    static DOMAINS: RefCell<HashMap<String, Parsed<DomainLimits>>> = RefCell::new(HashMap::new());
    static PROVIDER: RefCell<Option<Parsed<GlobalUploadLimits>>> = const { RefCell::new(None) };
}

/// The decision's part of `name`'s settings as stored now; `None` when the domain is not hosted.
pub(super) fn domain_limits(c: &Connection, name: &DomainName) -> Result<Option<DomainLimits>> {
    let Some(text) = store_domains::settings_text(c, name)? else { return Ok(None) };
    DOMAINS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(hit) = cache.get(name.as_str()).filter(|p| p.text == text) {
            return Ok(Some(hit.value.clone()));
        }
        let settings = DomainSettings::from_json(&text)?;
        let value = DomainLimits { owner: settings.owner, uploads: settings.uploads };
        if cache.len() >= MAX_CACHED_DOMAINS {
            cache.clear();
        }
        cache.insert(name.as_str().to_string(), Parsed { text, value: value.clone() });
        Ok(Some(value))
    })
}

/// The provider's upload limits as stored now (the defaults when nothing is stored).
pub(super) fn global_limits(c: &Connection) -> Result<GlobalUploadLimits> {
    let Some(text) = store_domains::provider_settings_text(c)? else { return Ok(ProviderSettings::default().uploads) };
    PROVIDER.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(hit) = cache.as_ref().filter(|p| p.text == text) {
            return Ok(hit.value.clone());
        }
        let value = ProviderSettings::from_json(&text)?.uploads;
        *cache = Some(Parsed { text, value: value.clone() });
        Ok(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hosting;

    fn limits(h: &Hosting, name: &str) -> (Option<DomainLimits>, GlobalUploadLimits) {
        let name = DomainName::parse(name).unwrap();
        h.store().read(|c| Ok((domain_limits(c, &name)?, global_limits(c)?))).unwrap()
    }

    #[test]
    fn a_change_written_by_another_connection_is_seen_by_the_next_read() {
        let store = crate::test_store::TestStore::new("quota-settings-cache");
        let h = Hosting::open(&store.path).unwrap();
        let other = Hosting::open(&store.path).unwrap();
        h.add_domain("cache.example").unwrap();
        let (first, global) = limits(&h, "cache.example");
        assert_eq!(first.as_ref().unwrap().uploads.user_storage, None);
        assert_eq!(global.storage, None);
        // Cached now; the other connection (as the CLI would) changes both documents.
        other.set_domain_setting("cache.example", "uploads.user_storage", "5000").unwrap();
        other.set_domain_setting("cache.example", "owner", "alice").unwrap();
        other.set_provider_setting("uploads.storage", "7000").unwrap();
        let (changed, global) = limits(&h, "cache.example");
        let changed = changed.unwrap();
        assert_eq!(changed.uploads.user_storage, Some(5000));
        assert_eq!(changed.owner.as_deref(), Some("alice"));
        assert_eq!(global.storage, Some(7000));
        // Exactly what parsing the stored settings gives.
        let parsed = h.domain("cache.example").unwrap().unwrap().settings;
        assert_eq!(changed, DomainLimits { owner: parsed.owner, uploads: parsed.uploads });
        other.remove_domain("cache.example").unwrap();
        assert_eq!(limits(&h, "cache.example").0, None, "a removed domain is not served from the cache");
    }
}
