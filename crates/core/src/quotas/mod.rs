//! Upload quotas: per-domain limits, per-user exceptions, and a ledger that decides a slot
//! request in constant time.
//!
//! The ledger keeps running totals (stored and reserved bytes per user, per domain, globally)
//! and the uploaded volume in time buckets (`windows`), so a decision reads a few rows by key,
//! however many files are stored. Its life: [`Hosting::authorize_upload`] when a client asks for
//! a slot (a grant reserves the bytes against every limit, so parallel requests cannot
//! overshoot); [`Hosting::commit_upload`] when the upload completes; [`Hosting::release_upload`]
//! when it fails; [`Hosting::forget_file`] when the file is deleted (storage comes back, volume
//! already uploaded in a window does not). Bindings make one call per server event.
//!
//! Windows roll by whole buckets: bytes count until their whole bucket has left the window, so a
//! `retry_at` is never too early. The daily window uses hourly buckets (exact to the hour), the
//! weekly and monthly windows daily buckets (exact to the day).

mod audit;
mod decision;
mod ledger;
mod paths;
mod policy;
mod report;
mod settings_cache;
mod slot_watches;
mod upkeep;
mod windows;

pub use audit::LedgerDrift;
pub use decision::{parse_upload_size, Denial, Reservation, UploadDecision, UploadLimit};
pub use policy::{
    GlobalUploadLimits, UploadLimits, UserUploadLimits, DEFAULT_MAX_FILE_SIZE, DEFAULT_SLOT_LIFETIME,
    MAX_DOMAIN_STORAGE, MAX_UPLOAD_SIZE,
};
pub(crate) use report::{human_size, usage_lines, UsageLine};
pub use report::{ScopeLimits, UploadQuotaView, UploadReport, UploadUsage};
pub use upkeep::UploadUpkeep;
// For retention, which deletes recorded files by the same path rule and ledger update.
pub(crate) use ledger::forget as forget_recorded_file;
pub(crate) use paths::UploadRoot;
pub(crate) use slot_watches::SlotWatchQueue;

use crate::invites::normalize_username;
use crate::{Error, Result};

/// Usernames are stored normalised, as registration stores them, so `Alice` and `alice` share
/// one quota.
fn username_of(username: &str) -> Result<String> {
    normalize_username(username).ok_or_else(|| Error::InvalidArgument(format!("{username:?} is not a valid username")))
}

#[cfg(test)]
mod tests;
