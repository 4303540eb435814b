//! Per-domain settings: what each hosted domain promises its users.
//!
//! Stored as JSON beside the domain so that adding a setting needs no schema change; every field
//! has a default so settings written by an older version still read. Later features (retention,
//! certificates, policy publication) add their own section here, and the provider file is
//! generated from these same values, so what we publish is what we enforce.

use serde::{Deserialize, Serialize};

/// Everything configurable for one hosted domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainSettings {
    /// The customer account that owns the domain (free text: an account id or a JID), if any.
    pub owner: Option<String>,
    /// Who may register, and the rules for invites.
    pub registration: crate::invites::RegistrationSettings,
    /// What users may upload and keep.
    pub uploads: crate::quotas::UploadLimits,
    /// How long archives and uploads are kept (all `never` until an admin sets them).
    pub retention: crate::retention::RetentionPolicy,
    /// "Everyone is in everybody else's contact list": every account of the domain sees every
    /// other one in its roster (see `domain_users`). Set with `on`/`off` (or `true`/`false`).
    #[serde(deserialize_with = "on_off")]
    pub shared_roster: bool,
    /// What the domain publishes beside what it enforces (who runs it, rules, links, contacts).
    pub publication: crate::publish::Description,
}

/// A switch as admins type it: `on`/`off`, `true`/`false` (JSON or text), `yes`/`no`. Anything
/// else is refused by name, never guessed.
fn on_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Switch {
        Bool(bool),
        Text(String),
    }
    match Switch::deserialize(d)? {
        Switch::Bool(b) => Ok(b),
        Switch::Text(t) => match t.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => Ok(true),
            "off" | "false" | "no" => Ok(false),
            _ => Err(serde::de::Error::custom(format!("{t:?} is not on or off"))),
        },
    }
}

/// Settings of the whole service, not of one domain (global caps, the provider's own DNS values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderSettings {
    /// Limits across all domains.
    pub uploads: crate::quotas::GlobalUploadLimits,
    /// Where to ask DNS, and what customers' zones must say.
    pub dns: crate::dns::DnsSettings,
    /// The CA and the provider's ACME zone, for trusted certificates by DNS-01 (issue 14).
    pub acme: crate::acme::AcmeSettings,
}

/// A setting that cannot work: its dotted path and why, in the admin's words.
pub(crate) type Problem = (String, String);

/// Both settings types live in the store as JSON text.
pub(crate) trait JsonSettings: Serialize + serde::de::DeserializeOwned {
    const WHAT: &'static str;

    fn from_json(text: &str) -> crate::Result<Self> {
        serde_json::from_str(text).map_err(|e| crate::Error::Corrupt(format!("{}: {e}", Self::WHAT)))
    }

    fn to_json(&self) -> String {
        // Serialising plain data to a String cannot fail.
        serde_json::to_string(self).expect("settings serialise")
    }

    /// Values that parse but cannot work (an address with port 99999, a `javascript:` link...).
    fn problems(&self) -> Vec<Problem>;

    /// Dotted paths of the objects keyed by data rather than by field names (the publication's
    /// per-language maps): [`JsonSettings::to_json_over`] writes them whole, so that a language
    /// removed is not kept from what was stored as if a newer version had written it.
    fn data_maps() -> Vec<String> {
        Vec::new()
    }

    /// The JSON to store for `self` over what was stored (`stored`, JSON text): every field this
    /// version knows is written, and fields it does not know (written by a newer version) are
    /// kept rather than silently dropped. Settings types must therefore serialise every field
    /// (no `skip_serializing_if`): a field left out would keep its stored value when cleared.
    fn to_json_over(&self, stored: Option<&str>) -> String {
        let ours = serde_json::to_value(self).expect("settings serialise");
        match stored.and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()) {
            Some(old) => overlay(old, ours, "", &Self::data_maps()).to_string(),
            None => ours.to_string(),
        }
    }
}

/// `ours` written over `old` (at dotted `path`): objects are merged key by key (keys only in
/// `old` stay), except the data maps at `whole`; anything else is replaced by `ours`.
fn overlay(old: serde_json::Value, ours: serde_json::Value, path: &str, whole: &[String]) -> serde_json::Value {
    use serde_json::Value::Object;
    match (old, ours) {
        (Object(mut old), Object(ours)) if !whole.iter().any(|w| w == path) => {
            for (key, value) in ours {
                let inner = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                let merged = match old.remove(&key) {
                    Some(before) => overlay(before, value, &inner, whole),
                    None => value,
                };
                old.insert(key, merged);
            }
            Object(old)
        }
        (_, ours) => ours,
    }
}

/// Refuses a change that brings a setting that cannot work, naming the setting and why. Only new
/// problems count: a value stored earlier that no longer works (a trust anchor file deleted
/// since) does not stop an admin from changing another setting.
pub(crate) fn refuse_new_problems<T: JsonSettings>(before: &T, after: &T) -> crate::Result<()> {
    let known = before.problems();
    match after.problems().into_iter().find(|p| !known.contains(p)) {
        Some((path, why)) => Err(crate::Error::InvalidArgument(format!("cannot set {path}: {why}"))),
        None => Ok(()),
    }
}

impl JsonSettings for DomainSettings {
    const WHAT: &'static str = "domain settings";

    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some(url) = &self.registration.landing_url {
            // The link people are sent: {domain} and {token} are filled in for each invite.
            let example = url.replace("{domain}", "example.org").replace("{token}", "token");
            if let Some(why) = person_url_problem(&example) {
                out.push(("registration.landing_url".into(), format!("{url:?} {why}")));
            }
        }
        out.extend(self.publication.problems());
        out
    }

    fn data_maps() -> Vec<String> {
        crate::publish::Description::per_language_fields().iter().map(|f| format!("publication.{f}")).collect()
    }
}

impl JsonSettings for ProviderSettings {
    const WHAT: &'static str = "provider settings";

    fn problems(&self) -> Vec<Problem> {
        let dns = self.dns.problems().into_iter().map(|(path, why)| (format!("dns.{path}"), why));
        dns.chain(self.acme.problems().into_iter().map(|(path, why)| (format!("acme.{path}"), why))).collect()
    }
}

/// Why `url` is not a link to give a person, if it is not: it must be `https://`, or `http://`
/// on this machine (a lab or a test), with a host and no user name before the host (a link
/// showing `https://bank.example@evil.example/` misleads).
pub(crate) fn person_url_problem(url: &str) -> Option<String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("contains spaces or control characters".into());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("is not a web address: it must start with https://".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Some("has a user name before the host (…@host), which misleads people: refused".into());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _port)| host),
    };
    if host.is_empty() {
        return Some("has no host".into());
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => None,
        "http" if is_loopback(host) => None,
        "http" => Some("must be https (http only for this machine: localhost, 127.0.0.1, [::1])".into()),
        other => Some(format!("must be an https:// address, not {other}://")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Sets one setting by its dotted path (`registration.policy`) in a settings struct, going
/// through JSON so that every field, present and future, can be set the same way and the result
/// is checked by the same types that read it, then by [`JsonSettings::problems`]. `value` is
/// JSON (`3`, `true`, `["a"]`, `null`) or, when it does not parse as JSON, a plain string.
pub(crate) fn set_by_path<T: JsonSettings>(settings: &T, path: &str, value: &str) -> crate::Result<T> {
    let bad = |why: String| crate::Error::InvalidArgument(format!("cannot set {path:?}: {why}"));
    let mut doc = serde_json::to_value(settings).map_err(|e| bad(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
    let mut slot = &mut doc;
    for key in path.split('.') {
        let obj = slot.as_object_mut().ok_or_else(|| bad(format!("{key:?} is not inside a section")))?;
        slot = obj.get_mut(key).ok_or_else(|| bad(format!("there is no setting {key:?}")))?;
    }
    *slot = value;
    let updated = serde_json::from_value(doc).map_err(|e| bad(e.to_string()))?;
    refuse_new_problems(settings, &updated)?;
    Ok(updated)
}

impl crate::Hosting {
    /// Changes one setting of a hosted domain, e.g. `("example.org", "registration.policy", "open")`.
    /// Read, checked and written in one transaction, so a proof recorded meanwhile (which
    /// changes the owner) is neither overwritten nor overwrites this change.
    pub fn set_domain_setting(&self, domain: &str, path: &str, value: &str) -> crate::Result<crate::Domain> {
        self.update_domain_settings(domain, |current| set_by_path(current, path, value))
    }

    /// Changes one provider-wide setting by its dotted path, in one transaction.
    pub fn set_provider_setting(&self, path: &str, value: &str) -> crate::Result<ProviderSettings> {
        let now = self.now();
        self.store().write(|tx| {
            let (stored, current) = stored_provider_settings(tx)?;
            let updated = set_by_path(&current, path, value)?;
            crate::store::domains::write_provider_settings(tx, &updated.to_json_over(stored.as_deref()), now)?;
            Ok(updated)
        })
    }

    /// The provider-wide settings (defaults until an admin sets them).
    pub fn provider_settings(&self) -> crate::Result<ProviderSettings> {
        self.store().select_provider_settings()
    }

    /// Replaces the provider-wide settings; refused when a changed value cannot work.
    pub fn set_provider_settings(&self, settings: &ProviderSettings) -> crate::Result<()> {
        let now = self.now();
        self.store().write(|tx| {
            let (stored, current) = stored_provider_settings(tx)?;
            refuse_new_problems(&current, settings)?;
            crate::store::domains::write_provider_settings(tx, &settings.to_json_over(stored.as_deref()), now)
        })
    }
}

/// The provider-wide settings as stored (kept to write back fields a newer version added) and as
/// this version reads them, inside the caller's transaction.
fn stored_provider_settings(tx: &rusqlite::Connection) -> crate::Result<(Option<String>, ProviderSettings)> {
    let stored = crate::store::domains::provider_settings_text(tx)?;
    let current = match &stored {
        Some(text) => ProviderSettings::from_json(text)?,
        None => ProviderSettings::default(),
    };
    Ok((stored, current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_defaults() {
        assert_eq!(DomainSettings::from_json("{}").unwrap(), DomainSettings::default());
    }

    #[test]
    fn unreadable_settings_are_corrupt_not_a_panic() {
        let e = DomainSettings::from_json("not json").unwrap_err();
        assert_eq!(e.code(), "corrupt");
    }

    #[test]
    fn provider_settings_default_then_stored() {
        let h = crate::Hosting::open_in_memory().unwrap();
        assert_eq!(h.provider_settings().unwrap(), ProviderSettings::default());
        h.set_provider_settings(&ProviderSettings::default()).unwrap();
        assert_eq!(h.provider_settings().unwrap(), ProviderSettings::default());
    }

    #[test]
    fn one_setting_by_path_is_checked_by_its_type() {
        let h = crate::Hosting::open_in_memory().unwrap();
        h.add_domain("example.org").unwrap();
        let d = h.set_domain_setting("example.org", "registration.policy", "open").unwrap();
        assert_eq!(d.settings.registration.policy, crate::invites::RegistrationPolicy::Open);
        let d = h.set_domain_setting("example.org", "registration.max_per_ip_per_day", "3").unwrap();
        assert_eq!(d.settings.registration.max_per_ip_per_day, Some(3));
        let d = h.set_domain_setting("example.org", "registration.reserved_usernames", r#"["admin"]"#).unwrap();
        assert_eq!(d.settings.registration.reserved_usernames, ["admin"]);
        h.set_domain_setting("example.org", "owner", "alice").unwrap();
        for (path, value) in [
            ("registration.policy", "sometimes"),
            ("registration.nope", "1"),
            ("registration.max_per_ip_per_day", "-1"),
            ("owner.x", "1"),
        ] {
            assert_eq!(
                h.set_domain_setting("example.org", path, value).unwrap_err().code(),
                "invalid-argument",
                "{path}"
            );
        }
        let d = h.require_domain("example.org").unwrap();
        assert_eq!(d.settings.registration.policy, crate::invites::RegistrationPolicy::Open);
        assert_eq!(d.settings.owner.as_deref(), Some("alice"));
        assert_eq!(h.set_domain_setting("nope.example", "owner", "x").unwrap_err().code(), "not-found");
    }

    #[test]
    fn the_shared_roster_is_switched_on_and_off_in_the_admins_words() {
        let h = crate::Hosting::open_in_memory().unwrap();
        h.add_domain("example.org").unwrap();
        assert!(!h.require_domain("example.org").unwrap().settings.shared_roster, "off by default");
        for (value, on) in [("on", true), ("off", false), ("ON", true), ("false", false), ("true", true), ("no", false)]
        {
            let d = h.set_domain_setting("example.org", "shared_roster", value).unwrap();
            assert_eq!(d.settings.shared_roster, on, "{value}");
        }
        let e = h.set_domain_setting("example.org", "shared_roster", "maybe").unwrap_err();
        assert!(e.to_string().contains("\"maybe\" is not on or off"), "{e}");
        let stored = h.require_domain("example.org").unwrap().settings;
        assert!(!stored.shared_roster);
        assert!(DomainSettings::from_json(&stored.to_json()).unwrap() == stored, "stored as a plain boolean");
    }

    #[test]
    fn settings_round_trip() {
        let s = DomainSettings { owner: Some("alice".into()), ..Default::default() };
        assert_eq!(DomainSettings::from_json(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn settings_that_cannot_work_are_refused_when_set_with_the_reason() {
        let h = crate::Hosting::open_in_memory().unwrap();
        h.add_domain("d.example").unwrap();
        for (path, value, why) in [
            ("dns.nameservers", r#"["127.0.0.1:99999"]"#, "is not an address:port"),
            ("dns.nameservers", r#"["not-an-address"]"#, "is not an address:port"),
            ("dns.nameservers", r#"["127.0.0.1:0"]"#, "port 0"),
            ("dns.provider_zone", "not a zone", "is not a DNS zone"),
            ("dns.dnssec_trust_anchor", "/nonexistent", "cannot be read"),
            ("dns.dnssec_trust_anchor", "anchors.key", "not an absolute path"),
            ("dns.dnssec_trust_anchor", "/etc/hostname", "not a file of DNSKEY records"),
            ("dns.verification_label", "two labels", "is not a DNS label"),
            ("dns.timeout_ms", "0", "at least 1"),
            ("dns.xmpp_client", r#"{"target":"not a host","port":5222}"#, "not a host name"),
            ("dns.cnames", r#"[{"label":"share","target":"127.0.0.1"}]"#, "not a host name"),
        ] {
            let e = h.set_provider_setting(path, value).unwrap_err();
            assert_eq!(e.code(), "invalid-argument", "{path} {value}");
            assert!(e.to_string().contains(path) && e.to_string().contains(why), "{path} {value}: {e}");
        }
        assert_eq!(h.provider_settings().unwrap(), ProviderSettings::default(), "nothing refused was stored");
        for url in [
            "javascript:alert(1)",
            "http://example.org/invite/{token}",
            "https://bank.example@evil.example/",
            "ftp://x.example/",
            "https:///x",
            "https://a b/",
        ] {
            let e = h.set_domain_setting("d.example", "registration.landing_url", url).unwrap_err();
            assert_eq!(e.code(), "invalid-argument", "{url}");
            assert!(e.to_string().contains("registration.landing_url"), "{e}");
        }
        let mut bad = DomainSettings::default();
        bad.registration.landing_url = Some("javascript:alert(1)".into());
        assert_eq!(h.add_domain_with("e.example", bad).unwrap_err().code(), "invalid-argument");
        for url in [
            "https://{domain}/invite/{token}/",
            "http://127.0.0.1:8080/i/{token}",
            "http://localhost/i",
            "http://[::1]:80/",
        ] {
            h.set_domain_setting("d.example", "registration.landing_url", url).unwrap();
        }
        h.set_provider_setting("dns.nameservers", r#"["127.0.0.1:53", "[::1]:5353"]"#).unwrap();
        h.set_provider_setting("dns.provider_zone", "Provider.Example.").unwrap();
    }

    #[test]
    fn a_stored_value_that_stopped_working_does_not_block_other_changes() {
        let h = crate::Hosting::open_in_memory().unwrap();
        // Accepted once (an older version, or a file deleted since).
        h.store()
            .write(|tx| {
                crate::store::domains::write_provider_settings(tx, r#"{"dns":{"dnssec_trust_anchor":"/gone"}}"#, 0)
            })
            .unwrap();
        h.set_provider_setting("dns.timeout_ms", "500").unwrap();
        assert_eq!(h.provider_settings().unwrap().dns.dnssec_trust_anchor.as_deref(), Some("/gone"));
        assert!(h.set_provider_setting("dns.dnssec_trust_anchor", "/gone/either").is_err());
    }

    #[test]
    fn fields_written_by_a_newer_version_are_kept_when_this_one_writes() {
        let h = crate::Hosting::open_in_memory().unwrap();
        h.add_domain("d.example").unwrap();
        let newer = r#"{"owner":null,"retention":{"days":30},"registration":{"policy":"invite","captcha":true}}"#;
        let name = crate::DomainName::parse("d.example").unwrap();
        h.store().write(|tx| crate::store::domains::write_settings(tx, &name, newer, 0)).unwrap();
        h.set_domain_setting("d.example", "registration.policy", "open").unwrap();
        let stored = |h: &crate::Hosting| -> serde_json::Value {
            let text = h.store().read(|c| crate::store::domains::settings_text(c, &name)).unwrap().unwrap();
            serde_json::from_str(&text).unwrap()
        };
        let doc = stored(&h);
        assert_eq!(doc["retention"]["days"], 30);
        assert_eq!(doc["registration"]["captcha"], true);
        assert_eq!(doc["registration"]["policy"], "open");
        // A field this version knows is cleared for real, not kept from the stored text.
        h.set_domain_setting("d.example", "registration.landing_url", "https://d.example/{token}").unwrap();
        h.set_domain_setting("d.example", "registration.landing_url", "null").unwrap();
        assert!(stored(&h)["registration"]["landing_url"].is_null());
        assert_eq!(h.require_domain("d.example").unwrap().settings.registration.landing_url, None);
        // A proof's change of owner keeps them too.
        let c = h.claim_domain("d.example", "alice").unwrap();
        let seen = crate::verification::proof_seen_for_tests(&[&c.token]);
        h.record_check_for_tests("d.example", "alice", seen).unwrap();
        let doc = stored(&h);
        assert_eq!((doc["owner"].as_str(), doc["retention"]["days"].as_i64()), (Some("alice"), Some(30)));
        // And the provider's settings.
        h.store()
            .write(|tx| crate::store::domains::write_provider_settings(tx, r#"{"future":[1,2],"dns":{"doh":"x"}}"#, 0))
            .unwrap();
        h.set_provider_setting("dns.timeout_ms", "700").unwrap();
        let text = h.store().read(crate::store::domains::provider_settings_text).unwrap().unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!((doc["future"][1].as_i64(), doc["dns"]["doh"].as_str()), (Some(2), Some("x")));
        assert_eq!(doc["dns"]["timeout_ms"], 700);
    }

    #[test]
    fn a_setting_is_read_and_written_under_one_write_lock() {
        let store = crate::test_store::TestStore::new("settings-one-transaction");
        let h = store.open();
        h.add_domain("d.example").unwrap();
        let quick = crate::OpenOptions { busy_timeout: std::time::Duration::from_millis(50), ..Default::default() };
        let other = crate::Hosting::open_with(&store.path, &quick).unwrap();
        // Between reading the settings and writing them back, another writer (a proof being
        // recorded, say) must wait: otherwise one of the two changes is silently lost.
        let mut meanwhile = None;
        h.update_domain_settings("d.example", |current| {
            meanwhile = Some(other.set_domain_setting("d.example", "registration.policy", "closed"));
            let mut s = current.clone();
            s.registration.users_may_invite = true;
            Ok(s)
        })
        .unwrap();
        assert_eq!(meanwhile.unwrap().unwrap_err().code(), "store", "the other writer waited for the lock");
        let d = h.require_domain("d.example").unwrap();
        assert!(d.settings.registration.users_may_invite);
    }
}
