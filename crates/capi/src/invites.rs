//! Invites and the registration gate.

use std::ffi::c_char;

use xmpp_hosting_core::invites::{Creator, NewInvite, RegistrationRequest};
use xmpp_hosting_core::Error;

use crate::error::{guard, xh_status};
use crate::handle::{hosting, xh_hosting};
use crate::strings::{optional_text, text, write_json};

/// Creates an invite from JSON (`{"domain": "example.org", "uses": 3, "expiry": 86400}`; only
/// `domain` is required) and writes `{token, uri, landing_url, invite}`. The token is shown only
/// here.
///
/// # Safety
/// `h` is a live handle; `new_invite_json` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_invite_create(
    h: *mut xh_hosting,
    new_invite_json: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let spec: NewInvite = serde_json::from_str(text(new_invite_json, "new_invite_json")?)
            .map_err(|e| Error::InvalidArgument(format!("new invite JSON: {e}")))?;
        write_json(out_json, &hosting(h)?.create_invite(&spec)?)
    })
}

/// Writes the invite a token stands for if it can be used now; `XH_ERR_NOT_FOUND` otherwise.
///
/// # Safety
/// `h` is a live handle; `domain`, `token` NUL-terminated strings; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_invite_check(
    h: *mut xh_hosting,
    domain: *const c_char,
    token: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let invite = hosting(h)?.check_invite(text(domain, "domain")?, text(token, "token")?)?;
        let invite = invite.ok_or_else(|| Error::NotFound { what: "usable invite", key: "token".into() })?;
        write_json(out_json, &invite)
    })
}

/// Writes a domain's invites (active or not, until purged) as a JSON array; each has its
/// `status` (active, expired, used-up, revoked) and the `line` an admin's listing prints.
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_invite_list(
    h: *mut xh_hosting,
    domain: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.invite_list(text(domain, "domain")?)?))
}

/// Revokes an invite as the admin; `XH_ERR_NOT_FOUND` when the domain has no invite `id`.
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn xh_invite_revoke(h: *mut xh_hosting, domain: *const c_char, id: i64) -> xh_status {
    guard(|| {
        hosting(h)?.revoke_invite(text(domain, "domain")?, id, &Creator::Admin)?;
        Ok(())
    })
}

/// Deletes unusable invites (in short steps, each its own transaction); writes
/// `{invites_removed, registrations_unsettled}`. Registrations that never finished keep their
/// invite's use until a server that knows the account store settles them.
///
/// # Safety
/// `h` is a live handle; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_invite_purge(h: *mut xh_hosting, out_json: *mut *mut c_char) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.purge_invites()?))
}

/// Decides a registration and writes the decision: `{"decision": "allowed", "id": …}` (finish it
/// with [`xh_registration_finish`]) or `{"decision": "refused", "reason", "type", "condition",
/// "text"}`. `ip` and `token` may be NULL.
///
/// # Safety
/// `h` is a live handle; string arguments NUL-terminated or (ip, token) NULL; `out_json` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn xh_registration_begin(
    h: *mut xh_hosting,
    domain: *const c_char,
    username: *const c_char,
    ip: *const c_char,
    token: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let request = RegistrationRequest {
            domain: text(domain, "domain")?,
            username: text(username, "username")?,
            ip: optional_text(ip, "ip")?,
            token: optional_text(token, "token")?,
        };
        write_json(out_json, &hosting(h)?.begin_registration(&request)?)
    })
}

/// Reports whether the account of an allowed registration was created; a failure gives the
/// invite's use back.
///
/// # Safety
/// `h` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn xh_registration_finish(h: *mut xh_hosting, ticket: i64, created: bool) -> xh_status {
    guard(|| Ok(hosting(h)?.finish_registration(ticket, created)?))
}

/// Decides a subscription request from `contact` to the local user `inviter` (both bare JIDs)
/// that carried a roster invite's token (XEP-0379), and writes `{"decision": "approved",
/// "invite_id": …}` (approve it for the inviter; the use is spent) or `{"decision": "ignored",
/// "reason": …}` (let the inviter decide).
///
/// # Safety
/// `h` is a live handle; string arguments NUL-terminated; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_subscription_preauthorize(
    h: *mut xh_hosting,
    inviter: *const c_char,
    contact: *const c_char,
    token: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let decision = hosting(h)?.preauthorize_subscription(
            text(inviter, "inviter")?,
            text(contact, "contact")?,
            text(token, "token")?,
        )?;
        write_json(out_json, &decision)
    })
}
