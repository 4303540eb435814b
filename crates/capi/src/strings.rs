//! Strings across the boundary: C strings in, JSON strings out, and freeing what went out.

use std::ffi::{c_char, CStr, CString};

use serde::Serialize;

use crate::error::Failure;

/// A required string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the call.
pub(crate) unsafe fn text<'a>(p: *const c_char, name: &'static str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::Null(name));
    }
    CStr::from_ptr(p).to_str().map_err(|_| Failure::Utf8(name))
}

/// An optional string argument: NULL means absent.
///
/// # Safety
/// As for [`text`].
pub(crate) unsafe fn optional_text<'a>(p: *const c_char, name: &'static str) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        Ok(None)
    } else {
        text(p, name).map(Some)
    }
}

/// Writes `value` as a JSON string to `*out`, unless `out` is NULL.
///
/// # Safety
/// `out` is NULL or points to writable storage for one pointer.
pub(crate) unsafe fn write_json<T: Serialize>(out: *mut *mut c_char, value: &T) -> Result<(), Failure> {
    if !out.is_null() {
        let json = serde_json::to_string(value).map_err(|e| Failure::Panic(e.to_string()))?;
        // serde_json escapes NUL as \u0000, so the text has no interior NUL.
        *out = CString::new(json).map_err(|e| Failure::Panic(e.to_string()))?.into_raw();
    }
    Ok(())
}

/// Frees a string returned by this library. NULL is ignored.
///
/// # Safety
/// `s` is NULL or a string this library returned and that has not been freed yet.
#[no_mangle]
pub unsafe extern "C" fn xh_string_free(s: *mut c_char) {
    if !s.is_null() {
        drop(CString::from_raw(s));
    }
}
