//! User accounts the server removes.

use std::ffi::c_char;

use crate::error::{guard, xh_status};
use crate::handle::{hosting, xh_hosting};
use crate::strings::{text, write_json};

/// The server removed `username`'s account on `domain`: its invites are revoked and its upload
/// exceptions dropped. Writes `{invites_revoked, upload_limits_cleared}`; a domain the store does
/// not host has nothing to remove.
///
/// # Safety
/// `h` is a live handle; `domain`, `username` NUL-terminated strings; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_account_removed(
    h: *mut xh_hosting,
    domain: *const c_char,
    username: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.account_removed(text(domain, "domain")?, text(username, "username")?)?))
}
