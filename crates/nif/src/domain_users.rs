//! The hosted domain's users, for mod_xmpp_hosting_users and mod_xmpp_hosting_roster:
//!
//! - `decide_user_command(H, #{domain, requester, operator_admin, action, account, password,
//!   password_verify, policy})` -> `{ok, #{decision := <<"allowed">>, domain, as, username, jid,
//!   if_exists, if_missing, done}}` or `{ok, #{decision := <<"refused">>, type, condition, text}}`;
//! - `domain_user_list(H, Domain, [Username])` -> `{ok, #{jids, text}}`;
//! - `shared_roster(H, Domain, Username | undefined, [Username])` -> `{ok, #{on, id, group,
//!   contacts}}`: `on` says whether the domain has a shared roster; the contacts (every other
//!   account given) are there either way, for the online users' rosters to be brought in line
//!   after a switch; `{ok, #{on := false, id}}` when the domain is not hosted. ejabberd keeps the
//!   group in mod_shared_roster, and takes it out by its id;
//! - `settings_changes(H, Revision | undefined)` -> `{ok, #{revision, domains,
//!   shared_roster_switched, next_in}}`: the domains whose settings changed since `Revision`
//!   (undefined: none, only where to start), and those whose shared roster was switched.

use rustler::{Binary, Env, NifResult, Term};
use xmpp_hosting_core::domain_users::{UserCommand, SHARED_ROSTER_ID};
use xmpp_hosting_core::Error;

use crate::args::{optional_text, text};
use crate::error::{error_term, reply};
use crate::handle::Handle;
use crate::json::{from_term, serialized, to_term};
use crate::later::answered;

fn names(list: Vec<Binary<'_>>) -> NifResult<Vec<String>> {
    list.iter().map(|b| text(b).map(str::to_owned)).collect()
}

/// May write (the registration policy): answered through [`answered`], never waiting for another
/// process's write lock on a scheduler.
#[rustler::nif(schedule = "DirtyIo", name = "decide_user_command_nif")]
fn decide_user_command<'a>(env: Env<'a>, handle: Handle, cmd: Term<'a>) -> NifResult<Term<'a>> {
    match serde_json::from_value::<UserCommand>(from_term(cmd)?) {
        Ok(cmd) => answered(env, &handle.hosting, move |h| h.decide_user_command(&cmd), serialized),
        Err(e) => error_term(env, &Error::InvalidArgument(e.to_string())),
    }
}

#[rustler::nif(schedule = "DirtyIo")]
fn domain_user_list<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    usernames: Vec<Binary<'a>>,
) -> NifResult<Term<'a>> {
    let usernames = names(usernames)?;
    reply(env, handle.hosting.domain_user_list(text(&domain)?, &usernames), serialized)
}

#[rustler::nif(schedule = "DirtyIo")]
fn shared_roster<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    username: Term<'a>,
    accounts: Vec<Binary<'a>>,
) -> NifResult<Term<'a>> {
    let accounts = names(accounts)?;
    let roster = handle.hosting.shared_roster_switch(text(&domain)?, optional_text(username)?, &accounts);
    reply(env, roster, |env, found| match found {
        Some(r) => serialized(env, r),
        None => to_term(env, &serde_json::json!({ "on": false, "id": SHARED_ROSTER_ID })),
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn settings_changes<'a>(env: Env<'a>, handle: Handle, since: Term<'a>) -> NifResult<Term<'a>> {
    let since = if since.is_atom() { None } else { Some(since.decode::<i64>()?) };
    reply(env, handle.hosting.settings_changes(since), serialized)
}
