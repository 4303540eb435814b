//! Upload quotas, for mod_xmpp_hosting_uploads' `http_upload_slot_request` hook and its HTTP
//! handler.
//!
//! ejabberd learns which slot an upload used only when the PUT completes, and names it by the
//! uploader's directory, so a grant is made under that directory as the slot key and the
//! completed upload committed by it (`commit_keyed_upload`). Decisions are the core's shape:
//! `#{decision := <<"granted">>, id, size, expires_at, count_until}` or `#{decision := <<"denied">>, limit,
//! limit_value, usage, requested, retry_at, type, condition, text}`: the stanza error is chosen
//! by the core, so the Erlang side only builds it.

use rustler::{Binary, Encoder, Env, NifResult, Term};
use xmpp_hosting_core::quotas::UploadDecision;
use xmpp_hosting_core::{Error, Hosting};

use crate::args::{optional_text, text};
use crate::error::{error_term, reply, reply_unit};
use crate::handle::Handle;
use crate::json::serialized;
use crate::later::{answered, answered_as, answered_unit, started, Waiter};

/// A size as the request carried it: an integer that fits 64 bits (ejabberd has parsed the
/// attribute, but not bounded it), else the core's `invalid-argument`.
fn size_of(size: Term<'_>) -> NifResult<Result<i64, Error>> {
    if !size.is_integer() {
        return Err(rustler::Error::BadArg);
    }
    Ok(size.decode::<i64>().map_err(|_| Error::InvalidArgument("file size is too large".into())))
}

/// `authorize_upload(H, Domain, User, Size, SlotKey | undefined, Lifetime | undefined)` ->
/// `{ok, Decision}`; with a slot key, the grant holds its bytes for `Lifetime` seconds (the
/// server's slot life) or, when `undefined`, the domain's `slot_lifetime`.
#[rustler::nif(schedule = "DirtyIo", name = "authorize_upload_nif")]
fn authorize_upload<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    user: Binary<'a>,
    size: Term<'a>,
    slot_key: Term<'a>,
    lifetime: Term<'a>,
) -> NifResult<Term<'a>> {
    let (domain, user) = (text(&domain)?.to_owned(), text(&user)?.to_owned());
    let key = optional_text(slot_key)?.map(str::to_owned);
    let lifetime = match lifetime.decode::<u64>() {
        Ok(seconds) => Some(seconds),
        Err(_) if lifetime.atom_to_string().is_ok_and(|a| a == "undefined") => None,
        Err(_) => return Err(rustler::Error::BadArg),
    };
    let size = match size_of(size)? {
        Ok(size) => size,
        Err(e) => return error_term(env, &e),
    };
    let decide = move |h: &Hosting| match &key {
        Some(key) => h.authorize_keyed_upload(&domain, &user, size, key, lifetime),
        None => h.authorize_upload(&domain, &user, size),
    };
    answered_as(env, &handle.hosting, decide, serialized, Waiter::Serving, Some(give_back_late_grant))
}

/// A slot granted on the worker whose answer came too late to be sent: mod_http_upload has told
/// the client the request failed, so no upload will use the slot, and its bytes would otherwise
/// stay reserved for the slot's life. Given back at once, or on the worker once another
/// process's lock is free (nobody waits for it); should that fail for good, the slot's expiry
/// still frees them.
fn give_back_late_grant(hosting: &Hosting, decision: &UploadDecision) {
    if let UploadDecision::Granted(slot) = decision {
        let id = slot.id;
        let _ = hosting.now_or_in_background(move |h| h.release_upload(id));
    }
}

/// `commit_upload(H, Reservation, Bytes, FileId)` -> `ok`.
#[rustler::nif(schedule = "DirtyIo")]
fn commit_upload<'a>(env: Env<'a>, handle: Handle, id: i64, bytes: i64, file: Binary<'a>) -> NifResult<Term<'a>> {
    reply_unit(env, handle.hosting.commit_upload(id, bytes, text(&file)?))
}

/// `commit_keyed_upload(H, SlotKey, Bytes, FileId)` -> `ok`, or `not_found` when no slot of
/// that key and size is waiting.
#[rustler::nif(schedule = "DirtyIo")]
fn commit_keyed_upload<'a>(
    env: Env<'a>,
    handle: Handle,
    key: Binary<'a>,
    bytes: i64,
    file: Binary<'a>,
) -> NifResult<Term<'a>> {
    reply_unit(env, handle.hosting.commit_keyed_upload(text(&key)?, bytes, text(&file)?))
}

/// `release_keyed_upload(H, SlotKey, Bytes)` -> `{ok, Released}`: a PUT failed after the slot
/// was used up; the oldest open reservation of that key and size is given back now.
#[rustler::nif(schedule = "DirtyIo")]
fn release_keyed_upload<'a>(env: Env<'a>, handle: Handle, key: Binary<'a>, bytes: i64) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.release_keyed_upload(text(&key)?, bytes), |env, released| Ok(released.encode(env)))
}

#[rustler::nif(schedule = "DirtyIo")]
fn release_upload(env: Env<'_>, handle: Handle, id: i64) -> NifResult<Term<'_>> {
    reply_unit(env, handle.hosting.release_upload(id))
}

/// `forget_file(H, FileId)` -> `{ok, Known}`.
#[rustler::nif(schedule = "DirtyIo")]
fn forget_file<'a>(env: Env<'a>, handle: Handle, file: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.forget_file(text(&file)?), |env, known| Ok(known.encode(env)))
}

/// `upload_report(H, Domain, User | undefined)` -> `{ok, #{usage, limits}}`.
#[rustler::nif(schedule = "DirtyIo")]
fn upload_report<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, user: Term<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.upload_report(text(&domain)?, optional_text(user)?), serialized)
}

/// `describe_upload_usage(H, Domain, User | undefined)` -> `{ok, Text}`: the report in words,
/// for the user's ad-hoc command.
#[rustler::nif(schedule = "DirtyIo")]
fn describe_upload_usage<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, user: Term<'a>) -> NifResult<Term<'a>> {
    let report = handle.hosting.upload_report(text(&domain)?, optional_text(user)?);
    reply(env, report.map(|r| r.describe()), |env, text| Ok(text.encode(env)))
}

/// `describe_upload_quota(H, Domain, User | undefined)` -> `{ok, Text}`: what an admin's
/// `quota show` prints, the scope on the first line (the same text on every command line).
#[rustler::nif(schedule = "DirtyIo")]
fn describe_upload_quota<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, user: Term<'a>) -> NifResult<Term<'a>> {
    let view = handle.hosting.upload_quota_view(text(&domain)?, optional_text(user)?);
    reply(env, view.map(|v| v.describe()), |env, text| Ok(text.encode(env)))
}

/// `upload_upkeep(H, [Root], Tag)` -> `ok`; `#{purged, files_checked, files_forgotten}` follows
/// as a message.
#[rustler::nif(schedule = "DirtyIo")]
fn upload_upkeep<'a>(env: Env<'a>, handle: Handle, roots: Vec<Binary<'a>>, tag: i64) -> NifResult<Term<'a>> {
    let roots = roots.iter().map(|r| text(r).map(str::to_owned)).collect::<NifResult<Vec<_>>>()?;
    started(env, tag, handle.hosting.start_upload_upkeep(roots))
}

/// `set_upload_limit(H, Domain, User | undefined, Limit, Value)` -> `{ok, Report}`: one limit by
/// the name an admin types (see the core), for the domain or one user.
#[rustler::nif(schedule = "DirtyIo", name = "set_upload_limit_nif")]
fn set_upload_limit<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    user: Term<'a>,
    limit: Binary<'a>,
    value: Binary<'a>,
) -> NifResult<Term<'a>> {
    let (domain, user) = (text(&domain)?.to_owned(), optional_text(user)?.map(str::to_owned));
    let (limit, value) = (text(&limit)?.to_owned(), text(&value)?.to_owned());
    answered(env, &handle.hosting, move |h| h.set_upload_limit(&domain, user.as_deref(), &limit, &value), serialized)
}

/// `clear_user_upload_limits(H, Domain, User)` -> `ok`: the user is back on the domain's limits.
#[rustler::nif(schedule = "DirtyIo", name = "clear_user_upload_limits_nif")]
fn clear_user_upload_limits<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    user: Binary<'a>,
) -> NifResult<Term<'a>> {
    let (domain, user) = (text(&domain)?.to_owned(), text(&user)?.to_owned());
    answered_unit(env, &handle.hosting, move |h| h.set_user_upload_limits(&domain, &user, None))
}

/// `audit_upload_ledger(H, Repair)` -> `{ok, [Drift]}`. Recounts every file: a maintenance call.
#[rustler::nif(schedule = "DirtyIo", name = "audit_upload_ledger_nif")]
fn audit_upload_ledger(env: Env<'_>, handle: Handle, repair: bool) -> NifResult<Term<'_>> {
    // Each drift with the core's line for it (`text`), which the commands print as it is.
    let audit = move |h: &Hosting| {
        h.audit_upload_ledger(repair).map(|ds| {
            ds.into_iter()
                .map(|d| {
                    let text = d.describe();
                    xmpp_hosting_core::texts::Described::new(d, text)
                })
                .collect::<Vec<_>>()
        })
    };
    answered(env, &handle.hosting, audit, serialized)
}
