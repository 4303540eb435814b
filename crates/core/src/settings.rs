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
}

/// Settings of the whole service, not of one domain (global caps, the provider's own DNS values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderSettings {}

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

impl crate::Hosting {
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
    fn settings_round_trip() {
        let s = DomainSettings { owner: Some("alice".into()), ..Default::default() };
        assert_eq!(DomainSettings::from_json(&s.to_json()).unwrap(), s);
    }
}
