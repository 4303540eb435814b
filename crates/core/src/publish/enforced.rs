//! What a domain enforces, read from the settings that enforce it: the registration policy the
//! invites module applies, the upload limits the quota ledger applies, the retention the sweeps
//! apply. Nothing here is typed by an admin for publication, so what is published cannot drift
//! from what happens.

use serde::Serialize;

use crate::invites::RegistrationPolicy;
use crate::retention::Period;
use crate::{Domain, Hosting, Result};

/// The enforced values a domain publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enforced {
    /// Who may register (`open`, `invite`, `closed`).
    pub registration: RegistrationPolicy,
    /// Whether users may invite others themselves (else only admins).
    pub users_may_invite: bool,
    /// The largest single upload, in bytes; `None` for no limit of the domain's own.
    pub max_file_size: Option<u64>,
    /// Bytes one user may keep stored.
    pub user_storage: Option<u64>,
    /// Bytes one user may upload in any rolling day, week (7 days), month (30 days).
    pub user_daily: Option<u64>,
    pub user_weekly: Option<u64>,
    pub user_monthly: Option<u64>,
    /// How long one-to-one archives, group chat archives and uploads are kept (sweeps delete
    /// them after); backups as declared.
    pub archive_retention: Period,
    pub muc_retention: Period,
    pub upload_retention: Period,
    pub backup_retention: Period,
    /// Users whose upload limits differ from the domain's (set by an admin).
    pub users_with_own_upload_limits: u64,
    /// Users who chose a shorter archive retention for themselves.
    pub users_with_shorter_archive: u64,
}

impl Enforced {
    /// The values `domain`'s settings enforce, with the count of users who have exceptions.
    pub(crate) fn read(h: &Hosting, domain: &Domain) -> Result<Enforced> {
        let s = &domain.settings;
        let name = domain.name.as_str();
        let (own_limits, own_archive) = h.store().read(|c| {
            let count =
                |sql: &str| -> Result<u64> { Ok(c.query_row(sql, [name], |r| r.get::<_, i64>(0))?.max(0) as u64) };
            Ok((
                count("SELECT COUNT(*) FROM upload_user_limits WHERE domain = ?1")?,
                count("SELECT COUNT(*) FROM retention_user_archive WHERE domain = ?1")?,
            ))
        })?;
        Ok(Enforced {
            registration: s.registration.policy,
            users_may_invite: s.registration.users_may_invite,
            max_file_size: s.uploads.max_file_size,
            user_storage: s.uploads.user_storage,
            user_daily: s.uploads.user_daily,
            user_weekly: s.uploads.user_weekly,
            user_monthly: s.uploads.user_monthly,
            archive_retention: s.retention.archive,
            muc_retention: s.retention.muc,
            upload_retention: s.retention.uploads,
            backup_retention: s.retention.backups,
            users_with_own_upload_limits: own_limits,
            users_with_shorter_archive: own_archive,
        })
    }
}

/// A period in whole days as the provider format counts: `0` for no limit, `-1` for under one
/// day, else the days it lasts rounded down (never promising longer than is kept).
pub fn period_days(p: Period) -> i64 {
    match p.seconds() {
        None => 0,
        Some(s) if s < 86_400 => -1,
        Some(s) => (s / 86_400) as i64,
    }
}

/// Bytes in decimal megabytes as the provider format counts: `0` for no limit, `-1` for under
/// one MB, else rounded down (104,857,600 bytes are 104 MB).
pub fn megabytes(bytes: Option<u64>) -> i64 {
    match bytes {
        None => 0,
        Some(b) if b < 1_000_000 => -1,
        Some(b) => (b / 1_000_000) as i64,
    }
}

/// A size as people read it, in decimal units: `100 MB`, `1.5 GB`, `512 kB`.
pub fn size_words(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] =
        [("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("kB", 1_000)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let tenths = (bytes as u128 * 10 / size as u128) as u64;
            return if tenths.is_multiple_of(10) || tenths >= 1000 {
                format!("{} {unit}", tenths / 10)
            } else {
                format!("{}.{} {unit}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{bytes} bytes")
}

/// A period as people read it: `7 days`, `1 year`, `12 hours`, `kept until deleted`.
pub fn period_words(p: Period) -> String {
    let Some(s) = p.seconds() else { return "no time limit".into() };
    let plural = |n: u64, one: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {one}s") };
    if s.is_multiple_of(31_556_952) {
        plural(s / 31_556_952, "year")
    } else if s.is_multiple_of(86_400) {
        plural(s / 86_400, "day")
    } else if s.is_multiple_of(3_600) {
        plural(s / 3_600, "hour")
    } else if s.is_multiple_of(60) {
        plural(s / 60, "minute")
    } else {
        plural(s, "second")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_as_the_provider_format_counts_them() {
        assert_eq!(period_days(Period::Never), 0);
        assert_eq!(period_days(Period::After(3_600)), -1);
        assert_eq!(period_days(Period::After(86_399)), -1);
        assert_eq!(period_days(Period::After(86_400)), 1);
        assert_eq!(period_days(Period::After(36 * 3_600)), 1);
        assert_eq!(period_days(Period::After(7 * 86_400)), 7);
        assert_eq!(period_days(Period::After(31_556_952)), 365);
    }

    #[test]
    fn megabytes_are_decimal_and_never_rounded_up() {
        assert_eq!(megabytes(None), 0);
        assert_eq!(megabytes(Some(999_999)), -1);
        assert_eq!(megabytes(Some(1_000_000)), 1);
        assert_eq!(megabytes(Some(104_857_600)), 104);
        assert_eq!(megabytes(Some(5_000_000_000)), 5000);
    }

    #[test]
    fn words_for_people() {
        assert_eq!(size_words(104_857_600), "104 MB");
        assert_eq!(size_words(1_500_000_000), "1.5 GB");
        assert_eq!(size_words(1_000_000_000), "1 GB");
        assert_eq!(size_words(512), "512 bytes");
        assert_eq!(period_words(Period::After(7 * 86_400)), "7 days");
        assert_eq!(period_words(Period::After(86_400)), "1 day");
        assert_eq!(period_words(Period::After(31_556_952)), "1 year");
        assert_eq!(period_words(Period::After(7_200)), "2 hours");
        assert_eq!(period_words(Period::Never), "no time limit");
    }
}
