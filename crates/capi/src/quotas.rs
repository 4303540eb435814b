//! Upload quotas: the slot decision and the ledger around it.

use std::ffi::c_char;

use crate::error::{guard, xh_status};
use crate::handle::{hosting, xh_hosting};
use crate::strings::{optional_text, text, write_json};

/// Decides a slot request for `size` bytes and writes `{"decision": "granted", "id", ...}` or
/// `{"decision": "denied", "limit", "limit_value", "usage", "retry_at"?, "type", "condition",
/// "text"}`. A size of zero or less is `XH_ERR_INVALID_ARGUMENT` (answer `bad-request`).
///
/// # Safety
/// `h` is a live handle; `domain`, `username` NUL-terminated strings; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_upload_authorize(
    h: *mut xh_hosting,
    domain: *const c_char,
    username: *const c_char,
    size: i64,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        write_json(out_json, &hosting(h)?.authorize_upload(text(domain, "domain")?, text(username, "username")?, size)?)
    })
}

/// Records a completed upload of `bytes` under the server's `file_id`.
///
/// # Safety
/// `h` is a live handle; `file_id` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn xh_upload_commit(
    h: *mut xh_hosting,
    reservation: i64,
    bytes: i64,
    file_id: *const c_char,
) -> xh_status {
    guard(|| Ok(hosting(h)?.commit_upload(reservation, bytes, text(file_id, "file_id")?)?))
}

/// Gives a granted slot's bytes back (the upload failed or never came).
///
/// # Safety
/// `h` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn xh_upload_release(h: *mut xh_hosting, reservation: i64) -> xh_status {
    guard(|| Ok(hosting(h)?.release_upload(reservation)?))
}

/// A stored file was deleted: its bytes leave storage. `*out_known` (may be NULL) tells whether
/// the ledger knew the file.
///
/// # Safety
/// `h` is a live handle; `file_id` a NUL-terminated string; `out_known` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_file_forget(h: *mut xh_hosting, file_id: *const c_char, out_known: *mut bool) -> xh_status {
    guard(|| {
        let known = hosting(h)?.forget_file(text(file_id, "file_id")?)?;
        if !out_known.is_null() {
            *out_known = known;
        }
        Ok(())
    })
}

/// Writes `{stored, reserved, daily, weekly, monthly}` for a user, or for the domain when
/// `username` is NULL.
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `username` NULL or one; `out_json`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_upload_usage(
    h: *mut xh_hosting,
    domain: *const c_char,
    username: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        write_json(out_json, &hosting(h)?.upload_usage(text(domain, "domain")?, optional_text(username, "username")?)?)
    })
}
