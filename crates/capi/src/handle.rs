//! Opening and closing a store.

use std::ffi::c_char;

use xmpp_hosting_core::Hosting;

use crate::error::{guard, xh_status, Failure};
use crate::strings::text;

/// An open store. Opaque to C: created by [`xh_open`], freed by [`xh_close`]. One handle may be
/// used from several threads; calls on it are serialised.
pub struct xh_hosting(pub(crate) Hosting);

// The header promises that one handle may be shared between threads: keep that true at compile time.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<xh_hosting>();
};

/// Opens (creating if needed) the store file at `path` and writes the handle to `*out`.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` points to storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn xh_open(path: *const c_char, out: *mut *mut xh_hosting) -> xh_status {
    guard(|| {
        if out.is_null() {
            return Err(Failure::Null("out"));
        }
        let path = text(path, "path")?;
        *out = Box::into_raw(Box::new(xh_hosting(Hosting::open(path)?)));
        Ok(())
    })
}

/// Closes a store handle. NULL is ignored. A failure while closing (reported by
/// `xh_last_error_code`) still frees the handle.
///
/// Closing a handle does not stop the library's worker threads: they serve every handle and
/// live until the process exits. The library must therefore not be unloaded (`dlclose`) while
/// the process runs, even after every handle is closed: those threads would run unmapped code.
///
/// # Safety
/// `h` is NULL or a handle from [`xh_open`] that has not been closed.
#[no_mangle]
pub unsafe extern "C" fn xh_close(h: *mut xh_hosting) {
    // Dropping closes the handle's SQLite connections (its worker connection too, once calls
    // still running on the worker have let go of it); the worker's threads are the process's and
    // go on. Guarded like every other entry point.
    guard(|| {
        if !h.is_null() {
            drop(Box::from_raw(h));
        }
        Ok(())
    });
}

/// The hosting behind a handle argument.
///
/// # Safety
/// `h` is NULL or a live handle from [`xh_open`].
pub(crate) unsafe fn hosting<'a>(h: *const xh_hosting) -> Result<&'a Hosting, Failure> {
    h.as_ref().map(|h| &h.0).ok_or(Failure::Null("h"))
}
