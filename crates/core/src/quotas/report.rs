//! Usage reports for admins (per user, per domain, global) and for users (their own): the
//! running totals and windows, beside the limits that apply, so one call answers "how much have
//! I left?" without the caller combining domain settings and per-user exceptions itself.

use serde::Serialize;

use super::policy::{user_overrides, EffectiveLimits};
use super::windows::window_volume;
use crate::store::quotas as sql;
use crate::{Hosting, Result};

/// Usage of one scope (a user, a domain, or everything).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UploadUsage {
    /// Bytes of files that exist.
    pub stored: u64,
    /// Bytes of granted slots not yet completed.
    pub reserved: u64,
    /// Bytes uploaded in the rolling day, week and month (whole buckets; see `windows`).
    pub daily: u64,
    pub weekly: u64,
    pub monthly: u64,
}

/// The limits that apply to one scope; `None` is unlimited. For a user these are the domain's
/// per-user limits with the user's exceptions applied; for a domain its domain-wide limits; for
/// the whole service only `storage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScopeLimits {
    pub max_file_size: Option<u64>,
    pub storage: Option<u64>,
    pub daily: Option<u64>,
    pub weekly: Option<u64>,
    pub monthly: Option<u64>,
}

/// Usage and limits of one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UploadReport {
    pub usage: UploadUsage,
    pub limits: ScopeLimits,
}

/// Bytes as a person reads them: 1.5 MB, 20 GB (decimal units, as upload clients show sizes).
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let (mut value, mut unit) = (bytes as f64, 0);
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} bytes"),
        _ => format!("{:.1} {}", value, UNITS[unit]).replace(".0 ", " "),
    }
}

impl UploadReport {
    /// The report as lines of text for the user it is about (the servers' ad-hoc command shows
    /// it), so both servers say the same thing in the same words.
    pub fn describe(&self) -> String {
        let (u, l) = (&self.usage, &self.limits);
        let of = |used: u64, limit: Option<u64>| match limit {
            Some(limit) => format!("{} of {}", human(used), human(limit)),
            None => format!("{} (no limit)", human(used)),
        };
        let mut lines = vec![
            format!("Largest file: {}", l.max_file_size.map_or_else(|| "no limit".to_string(), human)),
            format!("Stored: {}", of(u.stored, l.storage)),
            format!("Uploaded in the last 24 hours: {}", of(u.daily, l.daily)),
            format!("Uploaded in the last 7 days: {}", of(u.weekly, l.weekly)),
            format!("Uploaded in the last 30 days: {}", of(u.monthly, l.monthly)),
        ];
        if u.reserved > 0 {
            lines.push(format!("Held by uploads in progress: {}", human(u.reserved)));
        }
        lines.join("\n")
    }
}

impl Hosting {
    /// Usage of one user, or of the whole domain when `username` is `None`.
    pub fn upload_usage(&self, domain: &str, username: Option<&str>) -> Result<UploadUsage> {
        Ok(self.upload_report(domain, username)?.usage)
    }

    /// Usage and effective limits of one user, or of the whole domain when `username` is `None`.
    pub fn upload_report(&self, domain: &str, username: Option<&str>) -> Result<UploadReport> {
        let d = self.require_domain(domain)?;
        let name = d.name.as_str();
        let user = username.map(super::username_of).transpose()?;
        let now = self.now();
        self.store().read(|c| {
            let (scope, who) = match &user {
                Some(u) => ("user", u.as_str()),
                None => ("domain", ""),
            };
            let (stored, reserved) = sql::usage(c, scope, name, who)?;
            let [daily, weekly, monthly] = [0, 1, 2].map(|i| window_volume(c, name, who, i, now));
            let usage = UploadUsage {
                stored: stored as u64,
                reserved: reserved as u64,
                daily: daily? as u64,
                weekly: weekly? as u64,
                monthly: monthly? as u64,
            };
            let limits = match &user {
                Some(u) => {
                    let e = EffectiveLimits::new(&d.settings.uploads, &user_overrides(c, name, u)?);
                    let [daily, weekly, monthly] = e.user_windows;
                    ScopeLimits { max_file_size: e.max_file_size, storage: e.user_storage, daily, weekly, monthly }
                }
                None => {
                    let l = &d.settings.uploads;
                    ScopeLimits {
                        max_file_size: l.max_file_size,
                        storage: l.domain_storage,
                        daily: l.domain_daily,
                        weekly: l.domain_weekly,
                        monthly: l.domain_monthly,
                    }
                }
            };
            Ok(UploadReport { usage, limits })
        })
    }

    /// Storage used by all domains together.
    pub fn global_upload_usage(&self) -> Result<UploadUsage> {
        Ok(self.global_upload_report()?.usage)
    }

    /// Storage used by all domains together, beside the provider's global cap. There are no
    /// global windows: volume is limited per user and per domain only.
    pub fn global_upload_report(&self) -> Result<UploadReport> {
        let storage = self.provider_settings()?.uploads.storage;
        let (stored, reserved) = self.store().read(|c| sql::usage(c, "global", "", ""))?;
        Ok(UploadReport {
            usage: UploadUsage { stored: stored as u64, reserved: reserved as u64, ..Default::default() },
            limits: ScopeLimits { storage, ..Default::default() },
        })
    }
}
