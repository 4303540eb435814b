//! Upload quotas: the slot decision and the ledger around it.

use std::ffi::c_char;

use crate::error::{guard, xh_status};
use crate::handle::{hosting, xh_hosting};
use crate::strings::{optional_text, text, write_json};

/// Decides a slot request for `size` bytes and writes `{"decision": "granted", "id", "size",
/// "expires_at", "count_until"}` (until when a late upload of the slot is still committed) or
/// `{"decision": "denied", "limit", "limit_value", "usage", "retry_at"?, "type", "condition",
/// "text"}`. A size of zero or less, or over 1 PiB (no server could store it), is
/// `XH_ERR_INVALID_ARGUMENT` (answer `bad-request`).
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

/// A PUT for a slot granted under `slot_key` failed after the server had used the slot up:
/// gives the oldest open reservation of that key and size back now. `*out_released` (may be
/// NULL) tells whether one was open.
///
/// # Safety
/// `h` is a live handle; `slot_key` a NUL-terminated string; `out_released` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_upload_release_keyed(
    h: *mut xh_hosting,
    slot_key: *const c_char,
    bytes: i64,
    out_released: *mut bool,
) -> xh_status {
    guard(|| {
        let released = hosting(h)?.release_keyed_upload(text(slot_key, "slot_key")?, bytes)?;
        if !out_released.is_null() {
            *out_released = released;
        }
        Ok(())
    })
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

/// [`xh_upload_authorize`] for a server that names the slot only when its upload completes: the
/// grant is kept under `slot_key`, where [`xh_upload_commit_keyed`] finds it, and holds its bytes
/// for `lifetime` seconds (the server's slot life; 0 for the domain's `slot_lifetime`).
///
/// # Safety
/// `h` is a live handle; `domain`, `username`, `slot_key` NUL-terminated strings; `out_json` NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_upload_authorize_keyed(
    h: *mut xh_hosting,
    domain: *const c_char,
    username: *const c_char,
    size: i64,
    slot_key: *const c_char,
    lifetime: u64,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let (domain, username) = (text(domain, "domain")?, text(username, "username")?);
        let key = text(slot_key, "slot_key")?;
        let lifetime = (lifetime > 0).then_some(lifetime);
        write_json(out_json, &hosting(h)?.authorize_keyed_upload(domain, username, size, key, lifetime)?)
    })
}

/// Records a completed upload of `bytes` whose slot was granted under `slot_key`: the oldest
/// reservation of that key and size. `XH_ERR_NOT_FOUND` when none is waiting.
///
/// # Safety
/// `h` is a live handle; `slot_key`, `file_id` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn xh_upload_commit_keyed(
    h: *mut xh_hosting,
    slot_key: *const c_char,
    bytes: i64,
    file_id: *const c_char,
) -> xh_status {
    guard(|| Ok(hosting(h)?.commit_keyed_upload(text(slot_key, "slot_key")?, bytes, text(file_id, "file_id")?)?))
}

/// Forgets the files recorded under directory `root` (file ids that are paths below it) that no
/// longer exist. Blocks while it looks at every such file: call it from a maintenance thread.
/// `*out_checked` and `*out_forgotten` (each may be NULL) receive the counts.
///
/// # Safety
/// `h` is a live handle; `root` a NUL-terminated string; the out pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_upload_sweep(
    h: *mut xh_hosting,
    root: *const c_char,
    out_checked: *mut u64,
    out_forgotten: *mut u64,
) -> xh_status {
    guard(|| {
        let (checked, forgotten) = hosting(h)?.sweep_upload_files(text(root, "root")?)?;
        if !out_checked.is_null() {
            *out_checked = checked as u64;
        }
        if !out_forgotten.is_null() {
            *out_forgotten = forgotten as u64;
        }
        Ok(())
    })
}

/// Releases expired slots and drops window buckets no window reaches (bounded work; repeat
/// while `*out_changed`, which may be NULL, is not zero).
///
/// # Safety
/// `h` is a live handle; `out_changed` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_upload_purge(h: *mut xh_hosting, out_changed: *mut u64) -> xh_status {
    guard(|| {
        let changed = hosting(h)?.purge_upload_ledger()?;
        if !out_changed.is_null() {
            *out_changed = changed as u64;
        }
        Ok(())
    })
}

/// Recounts storage from the files and slots the ledger holds and writes the scopes whose
/// running totals differ, as a JSON array; with `repair`, sets them to the recount. Reads every
/// file record: a maintenance call.
///
/// # Safety
/// `h` is a live handle; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_upload_audit(h: *mut xh_hosting, repair: bool, out_json: *mut *mut c_char) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.audit_upload_ledger(repair)?))
}
