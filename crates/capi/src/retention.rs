//! Retention (see the core's `retention` module): a domain's policy, a user's own shorter
//! archive retention, sweeps and their audit log. Sweeps block while they run: call them from
//! a thread that may wait, not an event loop.

use std::ffi::c_char;

use serde::Serialize;
use xmpp_hosting_core::retention::{Kind, Period, SweepOptions};
use xmpp_hosting_core::Error;

use crate::error::{guard, xh_status, Failure};
use crate::handle::{hosting, xh_hosting};
use crate::strings::{optional_text, text, write_json};

/// A user's archive retention as handed out: `{"archive": "1w"}`.
#[derive(Serialize)]
struct UserRetention {
    archive: Period,
}

/// Writes a domain's policy: `{"archive", "muc", "uploads", "backups"}`, each a period as
/// written (`"1w"`, `"30d"`) or `"never"`.
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_retention_show(
    h: *mut xh_hosting,
    domain: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.retention_policy(text(domain, "domain")?)?))
}

/// Sets one entry of a domain's policy (`what`: archive, muc, uploads or backups) from a period
/// as admins write it (`"30d"`, `"1 week"`, seconds, `"never"`) and writes the policy. A value
/// that cannot be meant (negative, zero, an unknown unit, over 100 years) is
/// `XH_ERR_INVALID_ARGUMENT` with the reason.
///
/// # Safety
/// `h` is a live handle; `domain`, `what`, `value` NUL-terminated strings; `out_json` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn xh_retention_set(
    h: *mut xh_hosting,
    domain: *const c_char,
    what: *const c_char,
    value: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let policy = hosting(h)?.set_retention(text(domain, "domain")?, text(what, "what")?, text(value, "value")?)?;
        write_json(out_json, &policy)
    })
}

/// Sets a user's own archive retention (`value` NULL: back to the domain's) and writes how long
/// their archive is kept now, `{"archive": "1w"}`. Longer than the domain's is
/// `XH_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `h` is a live handle; `domain`, `username` NUL-terminated strings; `value` NULL or one;
/// `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_retention_set_user(
    h: *mut xh_hosting,
    domain: *const c_char,
    username: *const c_char,
    value: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let h = hosting(h)?;
        let (domain, username) = (text(domain, "domain")?, text(username, "username")?);
        h.set_user_archive_retention(domain, username, optional_text(value, "value")?)?;
        write_json(out_json, &UserRetention { archive: h.user_archive_retention(domain, username)? })
    })
}

/// Runs (or resumes) the sweep of one kind (`"archive"`, `"muc"`, `"uploads"`) of a domain, or
/// with `dry_run` non-zero counts what would go, and writes its audit record: `{"id",
/// "domain", "kind", "dry_run", "cutoff", "state", "started_at", "finished_at", "parts",
/// "steps", "deleted", "bytes", "failed", "duration_us", "longest_step_us", "errors"}`.
/// `upload_roots_json` (NULL for none) is a JSON array of upload directories besides the
/// watched ones. Blocks until the sweep is done.
///
/// # Safety
/// `h` is a live handle; `domain`, `kind` NUL-terminated strings; `upload_roots_json` NULL or
/// one; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_retention_sweep(
    h: *mut xh_hosting,
    domain: *const c_char,
    kind: *const c_char,
    dry_run: i32,
    upload_roots_json: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let kind = Kind::parse(text(kind, "kind")?)?;
        let roots: Vec<String> = match optional_text(upload_roots_json, "upload_roots_json")? {
            None => Vec::new(),
            Some(json) => serde_json::from_str(json).map_err(|e| {
                Failure::Core(Error::InvalidArgument(format!("upload_roots_json is not a JSON array of texts: {e}")))
            })?,
        };
        let options = SweepOptions { dry_run: dry_run != 0, ..Default::default() };
        write_json(out_json, &hosting(h)?.retention_sweep(text(domain, "domain")?, kind, &roots, &options)?)
    })
}

/// Writes the audit log of sweeps, newest first, at most `limit`: of `domain`, or of every
/// domain when it is NULL. A JSON array of records as [`xh_retention_sweep`] writes them.
///
/// # Safety
/// `h` is a live handle; `domain` NULL or a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_retention_log(
    h: *mut xh_hosting,
    domain: *const c_char,
    limit: u32,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.retention_log(optional_text(domain, "domain")?, limit)?))
}
