//! The hosted domain's own users (see the core's `domain_users` module): who may manage them,
//! the list its manager is shown, and the shared roster ("everyone is in everybody else's
//! contact list"). The core decides; the caller carries the decision out through its own
//! account store and answers the client, as the Prosody and ejabberd modules do.

use std::ffi::c_char;

use xmpp_hosting_core::domain_users::UserCommand;
use xmpp_hosting_core::Error;

use crate::error::{guard, xh_status, Failure};
use crate::handle::{hosting, xh_hosting};
use crate::strings::{optional_text, text, write_json};

/// A JSON array of usernames (NULL: none), as the caller's account store listed them.
///
/// # Safety
/// As for [`optional_text`].
unsafe fn usernames(json: *const c_char, name: &'static str) -> Result<Vec<String>, Failure> {
    match optional_text(json, name)? {
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(json)
            .map_err(|e| Failure::Core(Error::InvalidArgument(format!("{name} is not a JSON array of texts: {e}")))),
    }
}

/// Decides a domain-users command and writes the decision. `command_json` is `{"domain",
/// "requester", "operator_admin", "action", "account", "password", "password_verify",
/// "policy"}`: `domain` is the host the command was sent to, `requester` the bare JID that sent
/// it, `operator_admin` whether the caller counts the requester as one of the operator's admins,
/// `action` one of create, list, password, delete, registration (absent: only whether the
/// requester manages the domain's users). The decision is `{"decision": "allowed", "domain",
/// "as", "username", "jid", "if_exists", "if_missing", "done"}` (carry it out; answer with
/// `if_exists` / `if_missing` when the account store says the account is there / is not) or
/// `{"decision": "refused", "type", "condition", "text"}` (the stanza error to answer with). A
/// refusal is `XH_OK`: only a store failure or unreadable JSON is an error.
///
/// # Safety
/// `h` is a live handle; `command_json` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_user_command_decide(
    h: *mut xh_hosting,
    command_json: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let cmd: UserCommand = serde_json::from_str(text(command_json, "command_json")?)
            .map_err(|e| Error::InvalidArgument(format!("user command JSON: {e}")))?;
        write_json(out_json, &hosting(h)?.decide_user_command(&cmd)?)
    })
}

/// Writes a domain's accounts as its manager is shown them, `{"jids": [...], "text"}` (bare
/// JIDs sorted, text such as "3 account(s) on example.org"), from `usernames_json`, a JSON array
/// of the usernames the caller's account store lists (NULL: none).
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `usernames_json` NULL or one;
/// `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_user_list(
    h: *mut xh_hosting,
    domain: *const c_char,
    usernames_json: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let names = usernames(usernames_json, "usernames_json")?;
        write_json(out_json, &hosting(h)?.domain_user_list(text(domain, "domain")?, &names)?)
    })
}

/// Writes the shared roster of `username` (NULL: nobody in particular) on `domain`: `{"id",
/// "group", "contacts": [...]}`, the contacts being every account of `accounts_json` (a JSON
/// array of usernames, NULL: none) but the user's own, as bare JIDs; or `null` when the domain
/// has no shared roster (switched off, or not hosted).
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `username`, `accounts_json` NULL or
/// NUL-terminated strings; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_shared_roster(
    h: *mut xh_hosting,
    domain: *const c_char,
    username: *const c_char,
    accounts_json: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let accounts = usernames(accounts_json, "accounts_json")?;
        let roster =
            hosting(h)?.shared_roster(text(domain, "domain")?, optional_text(username, "username")?, &accounts)?;
        write_json(out_json, &roster)
    })
}

/// Writes the domains whose settings changed since `since` (a `revision` this wrote before), `{"revision",
/// "domains": [...], "shared_roster_switched": [...], "next_in"}`, for a program that keeps something of the
/// settings in memory (online users' rosters) and brings it in line for the domains named; the shared roster
/// is to be re-applied only for the domains in `shared_roster_switched` (its value changed), not for every
/// settings change. Look again after `next_in` seconds. A negative `since` writes no domains, only the revision
/// to start from. Changes made by any process count.
///
/// # Safety
/// `h` is a live handle; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_settings_changes(h: *mut xh_hosting, since: i64, out_json: *mut *mut c_char) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.settings_changes((since >= 0).then_some(since))?))
}
