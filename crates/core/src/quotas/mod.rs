//! Upload quotas: per-domain limits, per-user exceptions, and a ledger that decides a slot
//! request in constant time.
//!
//! The ledger keeps running totals (stored and reserved bytes per user, per domain, globally)
//! and the uploaded volume in hourly buckets, so a decision reads a few rows by key and at most
//! 720 buckets per scope, however many files are stored. Its life: [`Hosting::authorize_upload`]
//! when a client asks for a slot (a grant reserves the bytes against every limit, so parallel
//! requests cannot overshoot); [`Hosting::commit_upload`] when the upload completes;
//! [`Hosting::release_upload`] when it fails; [`Hosting::forget_file`] when the file is deleted
//! (storage comes back, volume already uploaded in a window does not).
//!
//! Windows roll by whole buckets: bytes count until their whole bucket has left the window, so a
//! `retry_at` is never too early. The daily window uses hourly buckets (exact to the hour), the
//! weekly and monthly windows daily buckets (exact to the day), so a check reads at most 24 + 30
//! rows per scope.

mod policy;

use serde::{Serialize, Serializer};

pub use policy::{GlobalUploadLimits, UploadLimits, UserUploadLimits, DEFAULT_SLOT_LIFETIME};

use crate::invites::normalize_username;
use crate::store::quotas as sql;
use crate::{Error, Hosting, Result, Timestamp};
use policy::EffectiveLimits;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
/// The rolling windows: a day, a week, a month of 30 days.
const WINDOWS: [i64; 3] = [DAY, 7 * DAY, 30 * DAY];
/// The bucket each window is counted in.
const SPANS: [i64; 3] = [HOUR, DAY, DAY];
/// Expired reservations released per decision: bounded work on the hot path.
const EXPIRE_PER_CALL: i64 = 16;

/// Which limit a denial is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UploadLimit {
    FileSize,
    UserStorage,
    DomainStorage,
    GlobalStorage,
    UserDaily,
    UserWeekly,
    UserMonthly,
    DomainDaily,
    DomainWeekly,
    DomainMonthly,
}

const USER_WINDOWS: [UploadLimit; 3] = [UploadLimit::UserDaily, UploadLimit::UserWeekly, UploadLimit::UserMonthly];
const DOMAIN_WINDOWS: [UploadLimit; 3] =
    [UploadLimit::DomainDaily, UploadLimit::DomainWeekly, UploadLimit::DomainMonthly];

/// A refused slot: which limit, its value, the usage it counts, and when enough room frees up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub limit: UploadLimit,
    pub limit_value: u64,
    pub usage: u64,
    pub requested: u64,
    /// For windowed limits, when the window will have room for this file; `None` when waiting
    /// does not help (the file is larger than the limit, or storage must be freed first).
    pub retry_at: Option<Timestamp>,
}

impl Denial {
    /// The XEP-0363 error both servers answer with: a file over the size limit is
    /// `modify/not-acceptable` with `<file-too-large>`; a quota is `wait/resource-constraint`,
    /// with `<retry stamp/>` when `retry_at` is known.
    pub fn condition(&self) -> (&'static str, &'static str) {
        match self.limit {
            UploadLimit::FileSize => ("modify", "not-acceptable"),
            _ => ("wait", "resource-constraint"),
        }
    }

    pub fn text(&self) -> String {
        let what = match self.limit {
            UploadLimit::FileSize => return format!("File too large: the maximum is {} bytes", self.limit_value),
            UploadLimit::UserStorage => "your storage",
            UploadLimit::DomainStorage => "this domain's storage",
            UploadLimit::GlobalStorage => "the server's storage",
            UploadLimit::UserDaily => "your daily upload limit",
            UploadLimit::UserWeekly => "your weekly upload limit",
            UploadLimit::UserMonthly => "your monthly upload limit",
            UploadLimit::DomainDaily => "this domain's daily upload limit",
            UploadLimit::DomainWeekly => "this domain's weekly upload limit",
            UploadLimit::DomainMonthly => "this domain's monthly upload limit",
        };
        format!("Quota reached: {what} ({} of {} bytes used)", self.usage, self.limit_value)
    }
}

impl Serialize for Denial {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (kind, condition) = self.condition();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("limit", &self.limit)?;
        m.serialize_entry("limit_value", &self.limit_value)?;
        m.serialize_entry("usage", &self.usage)?;
        m.serialize_entry("requested", &self.requested)?;
        if let Some(t) = self.retry_at {
            m.serialize_entry("retry_at", &t)?;
        }
        m.serialize_entry("type", kind)?;
        m.serialize_entry("condition", condition)?;
        m.serialize_entry("text", &self.text())?;
        m.end()
    }
}

/// A granted slot: its bytes are reserved until committed, released or expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub id: i64,
    pub size: u64,
    pub expires_at: Timestamp,
}

/// The answer to a slot request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum UploadDecision {
    Granted(Reservation),
    Denied(Denial),
}

/// Usage of one scope (a user, a domain, or everything).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UploadUsage {
    pub stored: u64,
    pub reserved: u64,
    pub daily: u64,
    pub weekly: u64,
    pub monthly: u64,
}

/// Reads a slot request's size attribute: a positive decimal integer up to 2^63-1. Both
/// servers call this on the raw attribute, so `-1`, `0`, `1e3`, `abc` and `2^63` are refused
/// alike (as `bad-request`).
pub fn parse_upload_size(text: &str) -> Result<i64> {
    let bad = |why: &str| Err(Error::InvalidArgument(format!("file size {text:?} {why}")));
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return bad("is not a whole number of bytes");
    }
    match t.parse::<i64>() {
        Ok(0) => bad("must be larger than zero"),
        Ok(n) => Ok(n),
        Err(_) => bad("is too large"),
    }
}

fn check_size(size: i64) -> Result<u64> {
    if size <= 0 {
        return Err(Error::InvalidArgument(format!("file size must be larger than zero, not {size}")));
    }
    Ok(size as u64)
}

fn username_of(username: &str) -> Result<String> {
    normalize_username(username).ok_or_else(|| Error::InvalidArgument(format!("{username:?} is not a valid username")))
}

fn as_i64(limit: u64) -> i64 {
    limit.min(i64::MAX as u64) as i64
}

/// The first bucket of window `i` at `now`: the oldest bucket any part of which is in the window.
fn window_start(i: usize, now: Timestamp) -> i64 {
    (now - WINDOWS[i]).div_euclid(SPANS[i])
}

/// Bytes a scope uploaded in window `i` (committed uploads; reservations are counted apart).
fn window_volume(tx: &rusqlite::Connection, domain: &str, username: &str, i: usize, now: Timestamp) -> Result<i64> {
    sql::volume_sum(tx, domain, username, SPANS[i], window_start(i, now))
}

/// Checks the three windows of one scope; the bytes the scope has reserved count in every
/// window. Only a refusal reads the buckets, to find when room frees up.
#[allow(clippy::too_many_arguments)]
fn check_windows(
    tx: &rusqlite::Connection,
    domain: &str,
    username: &str,
    reserved: i64,
    size: i64,
    now: Timestamp,
    limits: [Option<u64>; 3],
    kinds: [UploadLimit; 3],
) -> Result<Option<Denial>> {
    for i in 0..3 {
        let Some(limit) = limits[i] else { continue };
        let used = window_volume(tx, domain, username, i, now)? + reserved;
        if used.saturating_add(size) <= as_i64(limit) {
            continue;
        }
        // Room frees up as the oldest buckets leave the window.
        let mut remaining = used;
        let buckets = sql::volume_buckets(tx, domain, username, SPANS[i], window_start(i, now))?;
        let retry_at = buckets.into_iter().find_map(|(start, b)| {
            remaining -= b;
            (remaining + size <= as_i64(limit)).then_some((start + 1) * SPANS[i] + WINDOWS[i])
        });
        return Ok(Some(Denial {
            limit: kinds[i],
            limit_value: limit,
            usage: used as u64,
            requested: size as u64,
            retry_at,
        }));
    }
    Ok(None)
}

fn storage_denial(limit: Option<u64>, stored: i64, reserved: i64, size: i64, kind: UploadLimit) -> Option<Denial> {
    let limit = limit?;
    let used = stored + reserved;
    (used.saturating_add(size) > as_i64(limit)).then_some(Denial {
        limit: kind,
        limit_value: limit,
        usage: used as u64,
        requested: size as u64,
        retry_at: None,
    })
}

/// Moves reserved bytes of a (domain, user) in all three scopes.
fn add_reserved(tx: &rusqlite::Connection, domain: &str, user: &str, stored: i64, reserved: i64) -> Result<()> {
    sql::add_usage(tx, "user", domain, user, stored, reserved)?;
    sql::add_usage(tx, "domain", domain, "", stored, reserved)?;
    sql::add_usage(tx, "global", "", "", stored, reserved)
}

/// Releases up to `limit` expired reservations.
fn expire(tx: &rusqlite::Connection, now: Timestamp, limit: i64) -> Result<usize> {
    let ids = sql::expired_reservations(tx, now, limit)?;
    for &id in &ids {
        if let Some((domain, user, size, false)) = sql::reservation(tx, id)? {
            add_reserved(tx, &domain, &user, 0, -size)?;
            sql::mark_released(tx, id)?;
        }
    }
    Ok(ids.len())
}

impl Hosting {
    /// Decides a slot request for `size` bytes by `username` on `domain`.
    pub fn authorize_upload(&self, domain: &str, username: &str, size: i64) -> Result<UploadDecision> {
        let size_u = check_size(size)?;
        let user = username_of(username)?;
        let d = self.require_domain(domain)?;
        let global = self.provider_settings()?.uploads;
        let name = d.name.as_str();
        let now = self.now();
        self.store().write(|tx| {
            expire(tx, now, EXPIRE_PER_CALL)?;
            let overrides = match sql::user_limits(tx, name, &user)? {
                Some(json) => {
                    serde_json::from_str(&json).map_err(|e| Error::Corrupt(format!("user upload limits: {e}")))?
                }
                None => UserUploadLimits::default(),
            };
            let limits = EffectiveLimits::new(&d.settings.uploads, &overrides);
            let deny = |denial| Ok(UploadDecision::Denied(denial));
            if let Some(max) = limits.max_file_size.filter(|&max| size_u > max) {
                return deny(Denial {
                    limit: UploadLimit::FileSize,
                    limit_value: max,
                    usage: 0,
                    requested: size_u,
                    retry_at: None,
                });
            }
            let (user_stored, user_reserved) = sql::usage(tx, "user", name, &user)?;
            let (domain_stored, domain_reserved) = sql::usage(tx, "domain", name, "")?;
            let (global_stored, global_reserved) = sql::usage(tx, "global", "", "")?;
            let storage = [
                (limits.user_storage, user_stored, user_reserved, UploadLimit::UserStorage),
                (limits.domain_storage, domain_stored, domain_reserved, UploadLimit::DomainStorage),
                (global.storage, global_stored, global_reserved, UploadLimit::GlobalStorage),
            ];
            if let Some(d) = storage.into_iter().find_map(|(l, s, r, k)| storage_denial(l, s, r, size, k)) {
                return deny(d);
            }
            if limits.user_windows.iter().any(Option::is_some) {
                let windows = limits.user_windows;
                if let Some(d) = check_windows(tx, name, &user, user_reserved, size, now, windows, USER_WINDOWS)? {
                    return deny(d);
                }
            }
            if limits.domain_windows.iter().any(Option::is_some) {
                let windows = limits.domain_windows;
                if let Some(d) = check_windows(tx, name, "", domain_reserved, size, now, windows, DOMAIN_WINDOWS)? {
                    return deny(d);
                }
            }
            let lifetime = d.settings.uploads.slot_lifetime.clamp(1, 7 * DAY as u64) as i64;
            let expires_at = now + lifetime;
            let id = sql::insert_reservation(tx, name, &user, size, now, expires_at)?;
            add_reserved(tx, name, &user, 0, size)?;
            Ok(UploadDecision::Granted(Reservation { id, size: size_u, expires_at }))
        })
    }

    /// Records a completed upload of `bytes` as file `file_id` (the server's name for it, used
    /// again by [`Hosting::forget_file`]). An expired reservation still records the file, so
    /// a slow upload that completes is never lost from the ledger.
    pub fn commit_upload(&self, reservation: i64, bytes: i64, file_id: &str) -> Result<()> {
        if bytes < 0 {
            return Err(Error::InvalidArgument(format!("an upload cannot have {bytes} bytes")));
        }
        if file_id.is_empty() || file_id.len() > 1024 {
            return Err(Error::InvalidArgument("a file id has 1 to 1024 bytes".into()));
        }
        let now = self.now();
        self.store().write(|tx| {
            let (domain, user, size, released) = sql::reservation(tx, reservation)?
                .ok_or_else(|| Error::not_found("upload reservation", reservation.to_string()))?;
            sql::delete_reservation(tx, reservation)?;
            if !sql::insert_file(tx, file_id, &domain, &user, bytes, now)? {
                return Err(Error::AlreadyExists { what: "uploaded file", key: file_id.to_string() });
            }
            add_reserved(tx, &domain, &user, bytes, if released { 0 } else { -size })?;
            for span in [HOUR, DAY] {
                let start = now.div_euclid(span);
                sql::add_volume(tx, &domain, &user, span, start, bytes)?;
                sql::add_volume(tx, &domain, "", span, start, bytes)?;
            }
            Ok(())
        })
    }

    /// Gives a granted slot's bytes back (the upload failed or was never made).
    pub fn release_upload(&self, reservation: i64) -> Result<()> {
        self.store().write(|tx| {
            let (domain, user, size, released) = sql::reservation(tx, reservation)?
                .ok_or_else(|| Error::not_found("upload reservation", reservation.to_string()))?;
            if !released {
                add_reserved(tx, &domain, &user, 0, -size)?;
            }
            sql::delete_reservation(tx, reservation)
        })
    }

    /// A stored file was deleted: its bytes leave storage (not the windows). `false` when the
    /// ledger does not know the file.
    pub fn forget_file(&self, file_id: &str) -> Result<bool> {
        self.store().write(|tx| match sql::take_file(tx, file_id)? {
            Some((domain, user, size)) => add_reserved(tx, &domain, &user, -size, 0).map(|()| true),
            None => Ok(false),
        })
    }

    /// Usage of one user, or of the whole domain when `username` is `None`.
    pub fn upload_usage(&self, domain: &str, username: Option<&str>) -> Result<UploadUsage> {
        let d = self.require_domain(domain)?;
        let name = d.name.as_str();
        let user = username.map(username_of).transpose()?;
        let now = self.now();
        self.store().read(|c| {
            let (scope, who) = match &user {
                Some(u) => ("user", u.as_str()),
                None => ("domain", ""),
            };
            let (stored, reserved) = sql::usage(c, scope, name, who)?;
            let [daily, weekly, monthly] = [0, 1, 2].map(|i| window_volume(c, name, who, i, now));
            let (daily, weekly, monthly) = (daily?, weekly?, monthly?);
            Ok(UploadUsage {
                stored: stored as u64,
                reserved: reserved as u64,
                daily: daily as u64,
                weekly: weekly as u64,
                monthly: monthly as u64,
            })
        })
    }

    /// Storage used by all domains together.
    pub fn global_upload_usage(&self) -> Result<UploadUsage> {
        let (stored, reserved) = self.store().read(|c| sql::usage(c, "global", "", ""))?;
        Ok(UploadUsage { stored: stored as u64, reserved: reserved as u64, ..Default::default() })
    }

    /// Sets (or with `None` removes) one user's exceptions to the domain's limits.
    pub fn set_user_upload_limits(
        &self,
        domain: &str,
        username: &str,
        limits: Option<&UserUploadLimits>,
    ) -> Result<()> {
        let d = self.require_domain(domain)?;
        let user = username_of(username)?;
        let json = limits.map(|l| serde_json::to_string(l).expect("limits serialise"));
        self.store().write(|tx| sql::set_user_limits(tx, d.name.as_str(), &user, json.as_deref()))
    }

    /// One user's exceptions, if any.
    pub fn user_upload_limits(&self, domain: &str, username: &str) -> Result<Option<UserUploadLimits>> {
        let d = self.require_domain(domain)?;
        let user = username_of(username)?;
        let json = self.store().read(|c| sql::user_limits(c, d.name.as_str(), &user))?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| Error::Corrupt(format!("user upload limits: {e}"))))
            .transpose()
    }

    /// Maintenance for the background worker: releases expired reservations, forgets released
    /// ones after a day, and drops volume older than the longest window. Bounded per call.
    pub fn purge_upload_ledger(&self) -> Result<usize> {
        let now = self.now();
        self.store().write(|tx| {
            let expired = expire(tx, now, 1000)?;
            let forgotten = sql::delete_released(tx, now - DAY)?;
            let pruned = sql::prune_volume(tx, now - WINDOWS[2] - DAY, 10_000)?;
            Ok(expired + forgotten + pruned)
        })
    }
}

#[cfg(test)]
mod tests;
