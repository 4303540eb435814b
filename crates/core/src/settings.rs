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
}

/// Settings of the whole service, not of one domain (global caps, the provider's own DNS values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderSettings {
    /// Limits across all domains.
    pub uploads: crate::quotas::GlobalUploadLimits,
    /// Where to ask DNS, and what customers' zones must say.
    pub dns: crate::dns::DnsSettings,
}

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
}

impl JsonSettings for DomainSettings {
    const WHAT: &'static str = "domain settings";
}

impl JsonSettings for ProviderSettings {
    const WHAT: &'static str = "provider settings";
}

/// Sets one setting by its dotted path (`registration.policy`) in a settings struct, going
/// through JSON so that every field, present and future, can be set the same way and the result
/// is checked by the same types that read it. `value` is JSON (`3`, `true`, `["a"]`, `null`) or,
/// when it does not parse as JSON, a plain string.
fn set_by_path<T: JsonSettings>(settings: &T, path: &str, value: &str) -> crate::Result<T> {
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
    serde_json::from_value(doc).map_err(|e| bad(e.to_string()))
}

impl crate::Hosting {
    /// Changes one setting of a hosted domain, e.g. `("example.org", "registration.policy", "open")`.
    pub fn set_domain_setting(&self, domain: &str, path: &str, value: &str) -> crate::Result<crate::Domain> {
        let current = self.require_domain(domain)?;
        let updated = set_by_path(&current.settings, path, value)?;
        self.set_domain_settings(current.name.as_str(), updated)
    }

    /// Changes one provider-wide setting by its dotted path.
    pub fn set_provider_setting(&self, path: &str, value: &str) -> crate::Result<ProviderSettings> {
        let updated = set_by_path(&self.provider_settings()?, path, value)?;
        self.set_provider_settings(&updated)?;
        Ok(updated)
    }

    /// The provider-wide settings (defaults until an admin sets them).
    pub fn provider_settings(&self) -> crate::Result<ProviderSettings> {
        self.store().select_provider_settings()
    }

    pub fn set_provider_settings(&self, settings: &ProviderSettings) -> crate::Result<()> {
        self.store().upsert_provider_settings(settings, self.now())
    }
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
    fn settings_round_trip() {
        let s = DomainSettings { owner: Some("alice".into()), ..Default::default() };
        assert_eq!(DomainSettings::from_json(&s.to_json()).unwrap(), s);
    }
}
