//! What a domain promises about uploads, and the per-user exceptions.

use serde::{Deserialize, Serialize};

use super::report::UploadReport;
use super::username_of;
use crate::store::quotas as sql;
use crate::{Error, Hosting, Result};

/// A domain's upload limits (`DomainSettings::uploads`); `None` means no limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UploadLimits {
    /// The largest single file, in bytes (XEP-0363 `max-file-size`); [`DEFAULT_MAX_FILE_SIZE`]
    /// unless set, `None` for no limit of the domain's own (a request over
    /// [`MAX_UPLOAD_SIZE`] is still refused).
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
            max_file_size: Some(DEFAULT_MAX_FILE_SIZE),
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

/// 100 MiB: every domain has a largest file unless an admin sets another (or removes it), so a
/// server left without a size limit of its own (ejabberd's `max_size: infinity`) does not
/// accept any size a client names. The size ejabberd's mod_http_upload allows by default;
/// Prosody's mod_http_file_share allows 10 MiB unless told otherwise, and refuses first.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 100 * 1024 * 1024;

/// 1 PiB: no server stores a single file this large, so a slot request for more is a bad
/// request whatever the limits say (even with no limit at all), with a clear text. Keeping every
/// size under it keeps every running total far from overflowing.
pub const MAX_UPLOAD_SIZE: u64 = 1 << 50;

/// 8 PiB: no domain keeps more, stored and reserved together, whatever its limits say; more is
/// refused like a full `domain_storage`. So one domain without limits can never fill the total
/// kept over all domains (2^63 bytes would take a thousand domains full to this cap), and a
/// request there can never break the decisions of other domains.
pub const MAX_DOMAIN_STORAGE: u64 = 1 << 53;

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

/// A user's stored exceptions (none when the table has no row for them).
pub(crate) fn user_overrides(c: &rusqlite::Connection, domain: &str, user: &str) -> Result<UserUploadLimits> {
    sql::user_limits(c, domain, user)?.map_or(Ok(UserUploadLimits::default()), |json| parse_overrides(&json))
}

fn parse_overrides(json: &str) -> Result<UserUploadLimits> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt(format!("user upload limits: {e}")))
}

impl Hosting {
    /// Sets (or with `None` removes) one user's exceptions to the domain's limits.
    pub fn set_user_upload_limits(
        &self,
        domain: &str,
        username: &str,
        limits: Option<&UserUploadLimits>,
    ) -> Result<()> {
        let d = self.require_domain(domain)?;
        let user = username_of(username)?;
        // Plain data of options and numbers: serialising it cannot fail.
        let json = limits.map(|l| serde_json::to_string(l).expect("limits serialise"));
        let now = self.now();
        self.store().write(|tx| sql::set_user_limits(tx, d.name.as_str(), &user, json.as_deref(), now))
    }

    /// Sets one limit by the name an admin types, the same on every command line: a domain's
    /// limit (a field of [`UploadLimits`], such as `user_daily`) or, with `username`, that user's
    /// exception (`max_file_size`, `storage`, `daily`, `weekly`, `monthly`). `value` is a number
    /// of bytes, or `null` to remove the limit. Returns the scope's report as it now stands.
    pub fn set_upload_limit(
        &self,
        domain: &str,
        username: Option<&str>,
        limit: &str,
        value: &str,
    ) -> Result<UploadReport> {
        let Some(username) = username else {
            self.set_domain_setting(domain, &format!("uploads.{limit}"), value)?;
            return self.upload_report(domain, None);
        };
        let mut doc = serde_json::to_value(self.user_upload_limits(domain, username)?.unwrap_or_default())
            .expect("limits serialise");
        let slot = doc
            .get_mut(limit)
            .ok_or_else(|| Error::InvalidArgument(format!("there is no per-user upload limit {limit:?}")))?;
        *slot = serde_json::from_str(value.trim())
            .map_err(|_| Error::InvalidArgument(format!("{value:?} is not a number of bytes or null")))?;
        let limits: UserUploadLimits = serde_json::from_value(doc)
            .map_err(|_| Error::InvalidArgument(format!("{value:?} is not a number of bytes or null")))?;
        self.set_user_upload_limits(domain, username, Some(&limits))?;
        self.upload_report(domain, Some(username))
    }

    /// One user's exceptions, if any.
    pub fn user_upload_limits(&self, domain: &str, username: &str) -> Result<Option<UserUploadLimits>> {
        let d = self.require_domain(domain)?;
        let user = username_of(username)?;
        let json = self.store().read(|c| sql::user_limits(c, d.name.as_str(), &user))?;
        json.as_deref().map(parse_overrides).transpose()
    }
}
