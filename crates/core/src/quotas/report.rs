//! Usage reports for admins (per user, per domain, global) and for users (their own): the
//! running totals and windows, beside the limits that apply, so one call answers "how much have
//! I left?" without the caller combining domain settings and per-user exceptions itself.

use serde::Serialize;

use super::policy::{user_overrides, EffectiveLimits, UserUploadLimits};
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
/// Every text that shows a size uses this one (the CLI, the servers' commands, the panel).
pub(crate) fn human_size(bytes: u64) -> String {
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

/// What an admin asks to see of a domain or of one user (`quota show` on every command line):
/// the usage beside the limits that apply, and where those limits come from. For a domain, the
/// limits each user gets by default are shown beside the domain-wide ones (a domain's report
/// alone says "no daily limit" though every user has one); for a user, their exceptions beside
/// the domain's values. The core merges and words it once, so every command line shows the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadQuotaView {
    pub domain: String,
    /// `None` for the whole domain.
    pub user: Option<String>,
    pub usage: UploadUsage,
    /// The limits that apply to this scope (a user's: the domain's per-user limits with their
    /// exceptions applied; a domain's: its domain-wide limits).
    pub limits: ScopeLimits,
    /// For a domain: the limits each user has unless given an exception.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_defaults: Option<ScopeLimits>,
    /// For a user: their exceptions (`None`: the domain's limits apply as they are).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exceptions: Option<UserUploadLimits>,
}

/// A limit as an admin reads it: "no limit", or the size, with the exact bytes when the short
/// form rounds (limits are set in bytes: 104857600 shows as "104.9 MB (104857600 bytes)").
fn limit_text(limit: Option<u64>) -> String {
    let Some(bytes) = limit else { return "no limit".into() };
    // The unit `human_size` picks; it shows one decimal, so it is exact on multiples of a tenth.
    let mut unit = 1u64;
    while bytes / unit >= 1000 && unit < 1_000_000_000_000 {
        unit *= 1000;
    }
    match unit == 1 || bytes % (unit / 10) == 0 {
        true => human_size(bytes),
        false => format!("{} ({bytes} bytes)", human_size(bytes)),
    }
}

impl UploadQuotaView {
    /// The view in lines of text: the scope, its usage and limits in the words users see in
    /// their own report, then the per-user defaults (a domain) or the exceptions (a user).
    pub fn describe(&self) -> String {
        let scope = match &self.user {
            Some(u) => format!("{u}@{}", self.domain),
            None => self.domain.clone(),
        };
        let mut lines = vec![scope, UploadReport { usage: self.usage, limits: self.limits }.describe()];
        if let Some(d) = &self.user_defaults {
            lines.push("Each user, unless given an exception:".into());
            lines.push(format!("  Stored: {}", limit_text(d.storage)));
            lines.push(format!("  Uploaded in 24 hours: {}", limit_text(d.daily)));
            lines.push(format!("  Uploaded in 7 days: {}", limit_text(d.weekly)));
            lines.push(format!("  Uploaded in 30 days: {}", limit_text(d.monthly)));
        }
        if self.user.is_some() {
            let own = self.exceptions.clone().unwrap_or_default();
            let set: Vec<String> = [
                ("largest file", own.max_file_size),
                ("stored", own.storage),
                ("24 hours", own.daily),
                ("7 days", own.weekly),
                ("30 days", own.monthly),
            ]
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| format!("{name} {}", limit_text(Some(v)))))
            .collect();
            lines.push(match set.is_empty() {
                true => "No exceptions: the domain's limits apply".into(),
                false => format!("Exceptions to the domain's limits: {}", set.join(", ")),
            });
        }
        lines.join("\n")
    }
}

/// One measure of a scope's usage against its limit, named and worded: the servers' ad-hoc report
/// and the panel's usage table show the same four, in the same words.
pub(crate) struct UsageLine {
    pub label: &'static str,
    pub used: u64,
    pub limit: Option<u64>,
    /// "1.5 MB of 20 MB", or "1.5 MB (no limit)".
    pub text: String,
}

/// Stored bytes and the 24 h / 7 d / 30 d upload volumes, each against its limit.
pub(crate) fn usage_lines(u: &UploadUsage, l: &ScopeLimits) -> [UsageLine; 4] {
    let line = |label, used: u64, limit: Option<u64>| UsageLine {
        label,
        used,
        limit,
        text: match limit {
            Some(limit) => format!("{} of {}", human_size(used), human_size(limit)),
            None => format!("{} (no limit)", human_size(used)),
        },
    };
    [
        line("Stored", u.stored, l.storage),
        line("Uploaded in the last 24 hours", u.daily, l.daily),
        line("Uploaded in the last 7 days", u.weekly, l.weekly),
        line("Uploaded in the last 30 days", u.monthly, l.monthly),
    ]
}

impl UploadReport {
    /// The report as lines of text for the user it is about (the servers' ad-hoc command shows
    /// it), so both servers say the same thing in the same words.
    pub fn describe(&self) -> String {
        let (u, l) = (&self.usage, &self.limits);
        let mut lines =
            vec![format!("Largest file: {}", l.max_file_size.map_or_else(|| "no limit".to_string(), human_size))];
        lines.extend(usage_lines(u, l).into_iter().map(|line| format!("{}: {}", line.label, line.text)));
        if u.reserved > 0 {
            lines.push(format!("Held by uploads in progress: {}", human_size(u.reserved)));
        }
        lines.join("\n")
    }
}

/// The per-user limits of a merge, as a report shows them.
fn user_limits(e: &EffectiveLimits) -> ScopeLimits {
    let [daily, weekly, monthly] = e.user_windows;
    ScopeLimits { max_file_size: e.max_file_size, storage: e.user_storage, daily, weekly, monthly }
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
                Some(u) => user_limits(&EffectiveLimits::new(&d.settings.uploads, &user_overrides(c, name, u)?)),
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

    /// What an admin sees of a domain, or of one user (see [`UploadQuotaView`]).
    pub fn upload_quota_view(&self, domain: &str, username: Option<&str>) -> Result<UploadQuotaView> {
        let d = self.require_domain(domain)?;
        let report = self.upload_report(domain, username)?;
        let user = username.map(super::username_of).transpose()?;
        let (user_defaults, exceptions) = match &user {
            Some(u) => (None, self.user_upload_limits(domain, u)?),
            None => (Some(user_limits(&EffectiveLimits::new(&d.settings.uploads, &UserUploadLimits::default()))), None),
        };
        Ok(UploadQuotaView {
            domain: d.name.to_string(),
            user,
            usage: report.usage,
            limits: report.limits,
            user_defaults,
            exceptions,
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
