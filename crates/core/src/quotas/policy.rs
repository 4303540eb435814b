//! What a domain promises about uploads, and the per-user exceptions.

use serde::{Deserialize, Serialize};

/// A domain's upload limits (`DomainSettings::uploads`); `None` means no limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UploadLimits {
    /// The largest single file, in bytes (XEP-0363 `max-file-size`).
    pub max_file_size: Option<u64>,
    /// Bytes one user may keep stored.
    pub user_storage: Option<u64>,
    /// Bytes the whole domain may keep stored.
    pub domain_storage: Option<u64>,
    /// Bytes one user may upload in any rolling 24 hours, 7 days, 30 days.
    pub user_daily: Option<u64>,
    pub user_weekly: Option<u64>,
    pub user_monthly: Option<u64>,
    /// The same for the whole domain.
    pub domain_daily: Option<u64>,
    pub domain_weekly: Option<u64>,
    pub domain_monthly: Option<u64>,
    /// How long a granted slot holds its reservation before it is released unused.
    pub slot_lifetime: u64,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_file_size: None,
            user_storage: None,
            domain_storage: None,
            user_daily: None,
            user_weekly: None,
            user_monthly: None,
            domain_daily: None,
            domain_weekly: None,
            domain_monthly: None,
            slot_lifetime: DEFAULT_SLOT_LIFETIME,
        }
    }
}

/// Five minutes, as long as Prosody's upload slots are valid.
pub const DEFAULT_SLOT_LIFETIME: u64 = 300;

/// Provider-wide upload limits (`ProviderSettings::uploads`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GlobalUploadLimits {
    /// Bytes all domains together may keep stored.
    pub storage: Option<u64>,
}

/// One user's exceptions to the domain's per-user limits; a field that is set replaces the
/// domain's value (set it to a larger number to raise a limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserUploadLimits {
    pub max_file_size: Option<u64>,
    pub storage: Option<u64>,
    pub daily: Option<u64>,
    pub weekly: Option<u64>,
    pub monthly: Option<u64>,
}

/// The limits that apply to one user: the domain's, with the user's exceptions applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EffectiveLimits {
    pub max_file_size: Option<u64>,
    pub user_storage: Option<u64>,
    pub user_windows: [Option<u64>; 3],
    pub domain_storage: Option<u64>,
    pub domain_windows: [Option<u64>; 3],
}

impl EffectiveLimits {
    pub(crate) fn new(domain: &UploadLimits, user: &UserUploadLimits) -> Self {
        EffectiveLimits {
            max_file_size: user.max_file_size.or(domain.max_file_size),
            user_storage: user.storage.or(domain.user_storage),
            user_windows: [
                user.daily.or(domain.user_daily),
                user.weekly.or(domain.user_weekly),
                user.monthly.or(domain.user_monthly),
            ],
            domain_storage: domain.domain_storage,
            domain_windows: [domain.domain_daily, domain.domain_weekly, domain.domain_monthly],
        }
    }
}
