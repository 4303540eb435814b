//! Retention (see the core's `retention` module) for ejabberd: the policy, a user's own
//! shorter archive retention, sweeps on the core's worker (never on a scheduler) and the log.

use rustler::{Binary, Encoder, Env, NifResult, Term};
use xmpp_hosting_core::retention::{Kind, SweepOptions};

use crate::args::{optional_text, text};
use crate::error::reply;
use crate::handle::Handle;
use crate::json::serialized;
use crate::later::started;

/// `retention_policy(H, Domain)` -> `{ok, #{archive, muc, uploads, backups}}` (periods as
/// written, `<<"never">>` for no expiry).
#[rustler::nif(schedule = "DirtyIo")]
fn retention_policy<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.retention_policy(text(&domain)?), serialized)
}

/// `set_retention(H, Domain, What, Value)` -> `{ok, Policy}`; a period that cannot be meant is
/// `{error, {<<"invalid-argument">>, Why}}`.
#[rustler::nif(schedule = "DirtyIo")]
fn set_retention<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    what: Binary<'a>,
    value: Binary<'a>,
) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.set_retention(text(&domain)?, text(&what)?, text(&value)?), serialized)
}

/// `set_user_archive_retention(H, Domain, User, Value | undefined)` -> `{ok, Period}`: how long
/// that user's archive is kept now.
#[rustler::nif(schedule = "DirtyIo")]
fn set_user_archive_retention<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    user: Binary<'a>,
    value: Term<'a>,
) -> NifResult<Term<'a>> {
    let (domain, user, value) = (text(&domain)?, text(&user)?, optional_text(value)?);
    let h = &handle.hosting;
    let period =
        h.set_user_archive_retention(domain, user, value).and_then(|()| h.user_archive_retention(domain, user));
    reply(env, period.map(|p| p.to_string()), |env, p| Ok(p.encode(env)))
}

/// `retention_sweep(H, Domain, Kind, DryRun, [Root], Tag)` -> `ok`; the sweep's audit record
/// follows as a message (see `later.rs`).
#[rustler::nif(schedule = "DirtyIo")]
fn retention_sweep<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    kind: Binary<'a>,
    dry_run: bool,
    roots: Vec<Binary<'a>>,
    tag: i64,
) -> NifResult<Term<'a>> {
    let roots = roots.iter().map(|r| text(r).map(str::to_owned)).collect::<NifResult<Vec<_>>>()?;
    let domain = text(&domain)?.to_owned();
    let start = Kind::parse(text(&kind)?).and_then(|kind| {
        handle.hosting.start_retention_sweep(domain, kind, roots, SweepOptions { dry_run, ..Default::default() })
    });
    started(env, tag, start)
}

/// `retention_log(H, Domain | undefined, Limit)` -> `{ok, [Record]}`, newest first.
#[rustler::nif(schedule = "DirtyIo")]
fn retention_log<'a>(env: Env<'a>, handle: Handle, domain: Term<'a>, limit: u32) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.retention_log(optional_text(domain)?, limit), serialized)
}
