//! The housekeeping pass (see the core's `housekeeping` module) for a C program that runs its own
//! timer: make one `xh_housekeeping` per process, call [`xh_housekeeping_run`] from the timer
//! (it blocks while the pass runs: call it from a thread that may wait, not an event loop), log
//! the report's `log` lines, send its `notices`, and call again after `next_in` seconds.

use std::collections::HashMap;
use std::ffi::c_char;

use xmpp_hosting_core::invites::AccountOutcome;
use xmpp_hosting_core::{Error, Housekeeping, Schedule};

use crate::error::{guard, xh_status, Failure};
use crate::handle::{hosting, xh_hosting};
use crate::strings::{optional_text, write_json};

/// One process's housekeeping: the schedule and when each step last ran. Opaque to C: created by
/// [`xh_housekeeping_new`], freed by [`xh_housekeeping_free`]; it keeps the store open on its own.
pub struct xh_housekeeping(Housekeeping);

/// A JSON argument that may be NULL (then `T::default()`).
unsafe fn json_arg<T: serde::de::DeserializeOwned + Default>(
    p: *const c_char,
    name: &'static str,
) -> Result<T, Failure> {
    match optional_text(p, name)? {
        None => Ok(T::default()),
        Some(json) => serde_json::from_str(json)
            .map_err(|e| Failure::Core(Error::InvalidArgument(format!("{name} is not the JSON expected: {e}")))),
    }
}

unsafe fn keeper<'a>(hk: *const xh_housekeeping) -> Result<&'a Housekeeping, Failure> {
    hk.as_ref().map(|hk| &hk.0).ok_or(Failure::Null("hk"))
}

/// Makes the housekeeping of this process. `overrides_json` (NULL for the core's schedule) is an
/// object of seconds by step, e.g. `{"domain_recheck": 60, "upload_upkeep": 30}`, and may set
/// `recheck_batch`.
///
/// # Safety
/// `h` is a live handle; `overrides_json` NULL or a NUL-terminated string; `out` points to
/// storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn xh_housekeeping_new(
    h: *mut xh_hosting,
    overrides_json: *const c_char,
    out: *mut *mut xh_housekeeping,
) -> xh_status {
    guard(|| {
        if out.is_null() {
            return Err(Failure::Null("out"));
        }
        let overrides: HashMap<String, f64> = json_arg(overrides_json, "overrides_json")?;
        let schedule = Schedule::with_overrides(overrides)?;
        *out = Box::into_raw(Box::new(xh_housekeeping(Housekeeping::new(hosting(h)?.clone(), schedule))));
        Ok(())
    })
}

/// Frees a housekeeping object. NULL is ignored.
///
/// # Safety
/// `hk` is NULL or an object from [`xh_housekeeping_new`] that has not been freed.
#[no_mangle]
pub unsafe extern "C" fn xh_housekeeping_free(hk: *mut xh_housekeeping) {
    guard(|| {
        if !hk.is_null() {
            drop(Box::from_raw(hk));
        }
        Ok(())
    });
}

/// Writes the registrations that never finished, `[{"id", "domain", "username"}]`, listed only
/// when the invite purge is due: answer each from your account store in
/// [`xh_housekeeping_run`]'s `answers_json`.
///
/// # Safety
/// `hk` is a live object; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_housekeeping_stale_registrations(
    hk: *mut xh_housekeeping,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &keeper(hk)?.stale_registrations()?))
}

/// Runs the steps due now (blocking) and writes the finished report: `ran`, each step's figures,
/// `failures`, `log` (`[{"level": "debug"|"info"|"warn", "text"}]`), `notices` (`[{"to": "admins",
/// "event", "domain", "account", "text"}]`) and `next_in` (seconds until the next call).
/// `upload_roots_json` is a JSON array of the directories uploads live in, `answers_json` a JSON
/// array of `{"id", "account_exists"}`; either may be NULL for none. A failing step is in the
/// report, not the status: the others still ran.
///
/// # Safety
/// `hk` is a live object; the JSON arguments NULL or NUL-terminated strings; `out_json` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn xh_housekeeping_run(
    hk: *mut xh_housekeeping,
    upload_roots_json: *const c_char,
    answers_json: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let hk = keeper(hk)?;
        let roots: Vec<String> = json_arg(upload_roots_json, "upload_roots_json")?;
        let answers: Vec<AccountOutcome> = json_arg(answers_json, "answers_json")?;
        write_json(out_json, &hk.run(&roots, &answers))
    })
}

/// Writes the seconds until the next step is due (0: one is due now).
///
/// # Safety
/// `hk` is a live object; `out_seconds` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn xh_housekeeping_next_in(hk: *mut xh_housekeeping, out_seconds: *mut u64) -> xh_status {
    guard(|| {
        if out_seconds.is_null() {
            return Err(Failure::Null("out_seconds"));
        }
        *out_seconds = keeper(hk)?.next_in();
        Ok(())
    })
}
