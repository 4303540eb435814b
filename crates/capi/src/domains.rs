//! Hosted domains.

use std::ffi::c_char;

use crate::error::{guard, xh_status};
use crate::handle::{hosting, xh_hosting};
use crate::strings::{text, write_json};

/// Starts hosting `name` (Unicode or ASCII form); writes the domain as JSON to `*out_json`.
///
/// # Safety
/// `h` is a live handle; `name` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_domain_add(
    h: *mut xh_hosting,
    name: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.add_domain(text(name, "name")?)?))
}

/// Writes the hosted domain `name` as JSON; `XH_ERR_NOT_FOUND` when it is not hosted.
///
/// # Safety
/// As for [`xh_domain_add`].
#[no_mangle]
pub unsafe extern "C" fn xh_domain_get(
    h: *mut xh_hosting,
    name: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.require_domain(text(name, "name")?)?))
}

/// Writes every hosted domain as a JSON array, ordered by name.
///
/// # Safety
/// `h` is a live handle; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_domain_list(h: *mut xh_hosting, out_json: *mut *mut c_char) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.domains()?))
}

/// Changes one setting of a domain by its dotted path (`registration.policy`); `value` is JSON
/// or a plain string. Writes the updated domain.
///
/// # Safety
/// As for [`xh_domain_add`]; `setting` and `value` are NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn xh_domain_set(
    h: *mut xh_hosting,
    name: *const c_char,
    setting: *const c_char,
    value: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let d =
            hosting(h)?.set_domain_setting(text(name, "name")?, text(setting, "setting")?, text(value, "value")?)?;
        write_json(out_json, &d)
    })
}

/// Stops hosting `name` and deletes everything stored for it.
///
/// # Safety
/// `h` is a live handle; `name` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn xh_domain_remove(h: *mut xh_hosting, name: *const c_char) -> xh_status {
    guard(|| Ok(hosting(h)?.remove_domain(text(name, "name")?)?))
}
