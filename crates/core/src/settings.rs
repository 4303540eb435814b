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
}

impl DomainSettings {
    pub(crate) fn from_json(text: &str) -> crate::Result<Self> {
        serde_json::from_str(text).map_err(|e| crate::Error::Corrupt(format!("domain settings: {e}")))
    }

    pub(crate) fn to_json(&self) -> String {
        // Serialising plain data to a String cannot fail.
        serde_json::to_string(self).expect("settings serialise")
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
    fn settings_round_trip() {
        let s = DomainSettings { owner: Some("alice".into()) };
        assert_eq!(DomainSettings::from_json(&s.to_json()).unwrap(), s);
    }
}
