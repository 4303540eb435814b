//! Invites and the registration gate, for mod_xmpp_hosting_invites and the ejabberdctl commands.
//!
//! Results are the core's serde shapes as maps with atom keys (see [`crate::json`]): an invite
//! is `#{id, domain, kind, uses_left, ...}`, a decision `#{decision := <<"allowed">>, id, ...}` or
//! `#{decision := <<"refused">>, reason, type, condition, text}` — the stanza error is chosen by
//! the core, so the Erlang side only sends it.

use rustler::types::map::MapIterator;
use rustler::{Binary, Encoder, Env, NifResult, Term};
use xmpp_hosting_core::invites::{
    parse_invite_id, AccountOutcome, Creator, NewInvite, RegistrationDecision, RegistrationRequest,
};
use xmpp_hosting_core::{Error, Hosting};

use crate::args::{optional_text, text};
use crate::atoms;
use crate::error::{error_term, reply};
use crate::handle::Handle;
use crate::json::{from_term, serialized};
use crate::later::{answered, answered_as, answered_unit, Waiter};

/// `create_invite(H, #{domain => <<"example.org">>, uses => 3, expiry => 86400 | never, ...})`.
/// `uses` and `expiry` may also be digits in a binary: ejabberdctl's commands pass what the admin
/// typed that way, so a 20-digit number is refused in words instead of failing as a bignum.
#[rustler::nif(schedule = "DirtyIo", name = "create_invite_nif")]
fn create_invite<'a>(env: Env<'a>, handle: Handle, spec: Term<'a>) -> NifResult<Term<'a>> {
    let spec = match serde_json::from_value::<NewInvite>(from_term(spec)?) {
        Ok(spec) => spec,
        Err(e) => return error_term(env, &Error::InvalidArgument(e.to_string())),
    };
    answered(env, &handle.hosting, move |h| h.create_invite(&spec), serialized)
}

/// `{ok, Invite}` when the token can be used now, `{ok, undefined}` for any other token.
#[rustler::nif(schedule = "DirtyIo")]
fn check_invite<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, token: Binary<'a>) -> NifResult<Term<'a>> {
    // A token that is not even UTF-8 is simply not one of ours.
    let result = match std::str::from_utf8(token.as_slice()) {
        Ok(token) => handle.hosting.check_invite(text(&domain)?, token),
        Err(_) => Ok(None),
    };
    reply(env, result, |env, found| match found {
        Some(invite) => serialized(env, invite),
        None => Ok(atoms::undefined().encode(env)),
    })
}

/// `{ok, [Invite]}`, each with its `status` (active, expired, used-up, revoked) and the `line`
/// an admin's listing prints, both the core's.
#[rustler::nif(schedule = "DirtyIo")]
fn invites<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.invite_list(text(&domain)?), serialized)
}

/// `revoke_invite(H, Domain, Id)`, Id an integer or its digits in a binary; an id no invite can
/// have (`1.5`, a bignum) is the core's invalid_argument, in words, not badarg.
#[rustler::nif(schedule = "DirtyIo", name = "revoke_invite_nif")]
fn revoke_invite<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, id: Term<'a>) -> NifResult<Term<'a>> {
    let id = match (id.decode::<i64>(), id.decode::<Binary<'a>>()) {
        (Ok(id), _) => parse_invite_id(&id.to_string()),
        (_, Ok(digits)) => parse_invite_id(text(&digits)?),
        _ => parse_invite_id(&format!("{id:?}")),
    };
    let domain = text(&domain)?.to_owned();
    let id = match id {
        Ok(id) => id,
        Err(e) => return error_term(env, &e),
    };
    answered(env, &handle.hosting, move |h| h.revoke_invite(&domain, id, &Creator::Admin), serialized)
}

#[rustler::nif(schedule = "DirtyIo", name = "purge_invites_nif")]
fn purge_invites(env: Env<'_>, handle: Handle) -> NifResult<Term<'_>> {
    answered(env, &handle.hosting, |h| h.purge_invites(), serialized)
}

/// `{ok, [#{id, domain, username}]}`: registrations whose outcome never came, for the node to
/// check with ejabberd_auth:user_exists and answer with [`settle_stale_registrations`].
#[rustler::nif(schedule = "DirtyIo")]
fn stale_registrations(env: Env<'_>, handle: Handle, limit: u32) -> NifResult<Term<'_>> {
    reply(env, handle.hosting.stale_registrations(limit as usize), serialized)
}

/// `settle_stale_registrations(H, [#{id => Id, account_exists => Bool}])` -> `{ok, Settled}`.
#[rustler::nif(schedule = "DirtyIo", name = "settle_stale_registrations_nif")]
fn settle_stale_registrations<'a>(env: Env<'a>, handle: Handle, outcomes: Term<'a>) -> NifResult<Term<'a>> {
    let outcomes =
        serde_json::from_value::<Vec<AccountOutcome>>(from_term(outcomes)?).map_err(|_| rustler::Error::BadArg)?;
    answered(env, &handle.hosting, move |h| h.settle_stale_registrations(&outcomes), serialized)
}

/// `ensure_hosted(H, Domain)` -> `{ok, #{domain, added, log}}`: a host that loads the invite
/// module is hosted (the core's rule; the module logs `log` when the store had to be told).
#[rustler::nif(schedule = "DirtyIo")]
fn ensure_hosted<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.ensure_hosted(text(&domain)?), serialized)
}

#[rustler::nif(schedule = "DirtyIo")]
fn invite_audit<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, limit: u32) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.invite_audit(text(&domain)?, limit), serialized)
}

/// `begin_registration(H, #{domain => D, username => U, ip => Ip, token => T})`, the same fields
/// as the Lua binding's table; `ip` and `token` may be missing or `undefined`. A map with another
/// key or a non-binary value is a caller bug: `badarg`.
#[rustler::nif(schedule = "DirtyIo", name = "begin_registration_nif")]
fn begin_registration<'a>(env: Env<'a>, handle: Handle, spec: Term<'a>) -> NifResult<Term<'a>> {
    let RegistrationRequest { domain, username, ip, token } = registration_request(spec)?;
    let (domain, username) = (domain.to_owned(), username.to_owned());
    let (ip, token) = (ip.map(str::to_owned), token.map(str::to_owned));
    answered_as(
        env,
        &handle.hosting,
        move |h| {
            let request = RegistrationRequest {
                domain: &domain,
                username: &username,
                ip: ip.as_deref(),
                token: token.as_deref(),
            };
            h.begin_registration(&request)
        },
        serialized,
        Waiter::Patient,
        Some(give_back_late_ticket),
    )
}

/// A registration allowed on the worker whose answer came too late to be sent: the module has
/// told the client it failed and will not finish it, so the invite's use it holds is given back
/// now (at once, or on the worker once another process's lock is free), not when the
/// housekeeping settles it as abandoned ten minutes later, which a single-use invite's holder
/// would have to wait for before trying again.
fn give_back_late_ticket(hosting: &Hosting, decision: &RegistrationDecision) {
    if let RegistrationDecision::Allowed(ticket) = decision {
        let id = ticket.id;
        let _ = hosting.now_or_in_background(move |h| h.finish_registration(id, false));
    }
}

const REGISTRATION_FIELDS: [&str; 4] = ["domain", "username", "ip", "token"];

fn registration_request(spec: Term<'_>) -> NifResult<RegistrationRequest<'_>> {
    let mut fields: [Option<&str>; 4] = [None; 4];
    for (key, value) in MapIterator::new(spec).ok_or(rustler::Error::BadArg)? {
        let key = key.atom_to_string()?;
        let slot = REGISTRATION_FIELDS.iter().position(|f| *f == key).ok_or(rustler::Error::BadArg)?;
        fields[slot] = optional_text(value)?;
    }
    let [domain, username, ip, token] = fields;
    Ok(RegistrationRequest {
        domain: domain.ok_or(rustler::Error::BadArg)?,
        username: username.ok_or(rustler::Error::BadArg)?,
        ip,
        token,
    })
}

/// `finish_registration(H, Ticket, Created)`: `ok`; a failure gives the invite's use back.
#[rustler::nif(schedule = "DirtyIo", name = "finish_registration_nif")]
fn finish_registration(env: Env<'_>, handle: Handle, ticket: i64, created: bool) -> NifResult<Term<'_>> {
    answered_unit(env, &handle.hosting, move |h| h.finish_registration(ticket, created))
}

/// `preauthorize_subscription(H, Inviter, Contact, Token)`, both bare JIDs: `{ok, #{decision :=
/// <<"approved">>, invite_id}}` (the use is spent) or `{ok, #{decision := <<"ignored">>, reason}}`.
#[rustler::nif(schedule = "DirtyIo", name = "preauthorize_subscription_nif")]
fn preauthorize_subscription<'a>(
    env: Env<'a>,
    handle: Handle,
    inviter: Binary<'a>,
    contact: Binary<'a>,
    token: Binary<'a>,
) -> NifResult<Term<'a>> {
    let token = std::str::from_utf8(token.as_slice()).unwrap_or_default().to_owned();
    let (inviter, contact) = (text(&inviter)?.to_owned(), text(&contact)?.to_owned());
    answered(env, &handle.hosting, move |h| h.preauthorize_subscription(&inviter, &contact, &token), serialized)
}

/// `set_domain_setting(H, Domain, <<"registration.policy">>, <<"open">>)` -> `{ok, Domain}`.
#[rustler::nif(schedule = "DirtyIo", name = "set_domain_setting_nif")]
fn set_domain_setting<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    path: Binary<'a>,
    value: Binary<'a>,
) -> NifResult<Term<'a>> {
    let (domain, path, value) = (text(&domain)?.to_owned(), text(&path)?.to_owned(), text(&value)?.to_owned());
    answered(env, &handle.hosting, move |h| h.set_domain_setting(&domain, &path, &value), crate::domains::domain_term)
}
