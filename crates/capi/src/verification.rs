//! Customers' domains: claims, verification and the DNS tester.
//!
//! The DNS calls here wait for their answer on the calling thread (up to the configured
//! timeouts): call them from a thread that may block, not from an event loop.

use std::ffi::c_char;

use serde_json::json;

use crate::error::{guard, xh_status};
use crate::handle::{hosting, xh_hosting};
use crate::strings::{text, write_json};

/// Starts (or returns) `account`'s claim on `domain`; writes `{claim, instructions}` with the
/// TXT and CNAME records that prove it.
///
/// # Safety
/// `h` is a live handle; `domain`, `account` NUL-terminated strings; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_domain_claim(
    h: *mut xh_hosting,
    domain: *const c_char,
    account: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let h = hosting(h)?;
        let account = text(account, "account")?;
        let claim = h.claim_domain(text(domain, "domain")?, account)?;
        let instructions = h.verification_instructions(&claim.domain, account)?;
        write_json(out_json, &json!({ "claim": claim, "instructions": instructions }))
    })
}

/// Looks for the proof now (blocking on DNS) and writes the claim as it is afterwards: `{domain,
/// account, state, …, last_error, finding}`, where `last_error` says why DNS gave no answer and
/// `finding` what was found instead of the proof (`found TXT "verify=…" at …, expected TXT
/// "verify=…"`, `no TXT record at …`), both `null` once verified. A claim that stays `pending`
/// is still `XH_OK`: the call worked, the answer is no.
///
/// # Safety
/// As for [`xh_domain_claim`].
#[no_mangle]
pub unsafe extern "C" fn xh_domain_verify(
    h: *mut xh_hosting,
    domain: *const c_char,
    account: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        write_json(out_json, &hosting(h)?.verify_domain(text(domain, "domain")?, text(account, "account")?)?.wait()?)
    })
}

/// Runs the DNS tester (blocking on DNS) and writes `{domain, rows: [{name, type, expected,
/// found, status, problem, dnssec}]}`; `XH_ERR_INVALID_ARGUMENT` while the provider expects no
/// record at all.
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_dns_check(
    h: *mut xh_hosting,
    domain: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.dns_test(text(domain, "domain")?)?.wait()?))
}
