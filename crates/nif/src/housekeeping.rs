//! The housekeeping pass (see the core's `housekeeping` module), for mod_xmpp_hosting's one
//! timer.
//!
//! `housekeeping_new(H, #{domain_recheck => 1, ...})` -> `{ok, HK}`: the core's schedule, changed
//! where the map says (the module's options; unknown names and bad values are
//! `{error, {invalid_argument, Message}}`). `housekeeping_stale_registrations(HK)` ->
//! `{ok, [#{id, domain, username}]}`: registrations that never finished, listed only when the
//! invite purge is due; the module answers each from ejabberd's account store.
//! `housekeeping_run(HK, [Root], [#{id => Id, account_exists => Bool}], Tag)` -> `ok`; the
//! finished report follows as `{xmpp_hosting_result, Tag, {ok, Report}}` (see `later.rs`), with
//! `log` lines, `notices` to deliver and `next_in` seconds until the next call. The pass runs on
//! the core's worker: no scheduler waits for DNS or a sweep of the upload directory.

use rustler::{Binary, Encoder, Env, NifResult, ResourceArc, Term};
use xmpp_hosting_core::invites::AccountOutcome;
use xmpp_hosting_core::{Error, Housekeeping, Schedule};

use crate::args::text;
use crate::error::reply;
use crate::handle::Handle;
use crate::json::{from_term, serialized};
use crate::later::started;

pub struct HousekeepingResource {
    pub(crate) housekeeping: Housekeeping,
}

#[rustler::resource_impl]
impl rustler::Resource for HousekeepingResource {}

/// The overrides map as (name, number) pairs; a value that is not a number is the admin's error.
fn overrides(term: Term<'_>) -> NifResult<Result<Vec<(String, f64)>, Error>> {
    let serde_json::Value::Object(fields) = from_term(term)? else { return Err(rustler::Error::BadArg) };
    Ok(fields
        .into_iter()
        .map(|(name, value)| match value.as_f64() {
            Some(n) => Ok((name, n)),
            None => Err(Error::InvalidArgument(format!("the housekeeping setting {name} takes a number, not {value}"))),
        })
        .collect())
}

#[rustler::nif]
fn housekeeping_new<'a>(env: Env<'a>, handle: Handle, options: Term<'a>) -> NifResult<Term<'a>> {
    let made = overrides(options)?.and_then(Schedule::with_overrides).map(|schedule| {
        ResourceArc::new(HousekeepingResource { housekeeping: Housekeeping::new(handle.hosting.clone(), schedule) })
    });
    reply(env, made, |env, hk| Ok(hk.encode(env)))
}

#[rustler::nif(schedule = "DirtyIo")]
fn housekeeping_run<'a>(
    env: Env<'a>,
    hk: ResourceArc<HousekeepingResource>,
    roots: Vec<Binary<'a>>,
    answers: Vec<Term<'a>>,
    tag: i64,
) -> NifResult<Term<'a>> {
    let roots = roots.iter().map(|r| text(r).map(str::to_owned)).collect::<NifResult<Vec<_>>>()?;
    let outcomes = answers
        .into_iter()
        .map(|a| serde_json::from_value::<AccountOutcome>(from_term(a)?).map_err(|_| rustler::Error::BadArg))
        .collect::<NifResult<Vec<_>>>()?;
    started(env, tag, hk.housekeeping.start(roots, outcomes))
}

#[rustler::nif(schedule = "DirtyIo")]
fn housekeeping_stale_registrations(env: Env<'_>, hk: ResourceArc<HousekeepingResource>) -> NifResult<Term<'_>> {
    reply(env, hk.housekeeping.stale_registrations(), serialized)
}

/// Seconds until the next step is due (0: one is due now).
#[rustler::nif]
fn housekeeping_next_in(hk: ResourceArc<HousekeepingResource>) -> u64 {
    hk.housekeeping.next_in()
}
