//! Hosted domains: add, look up, list, remove.
//!
//! A domain is a map with atom keys: `name` (IDNA ASCII, the identity), `unicode_name` (always
//! present; equal to `name` for ASCII names), `settings` (see [`crate::json`]), `created_at` and
//! `updated_at` (Unix seconds).

use rustler::{Binary, Encoder, Env, NifResult, Term};
use xmpp_hosting_core::Domain;

use crate::args::text;
use crate::atoms;
use crate::error::{reply, reply_unit};
use crate::handle::Handle;
use crate::later::{answered, answered_unit};

#[rustler::nif(schedule = "DirtyIo", name = "add_domain_nif")]
fn add_domain<'a>(env: Env<'a>, handle: Handle, name: Binary<'a>) -> NifResult<Term<'a>> {
    let name = text(&name)?.to_owned();
    answered(env, &handle.hosting, move |h| h.add_domain(&name), domain_term)
}

/// `{ok, Domain}`, or `{ok, undefined}` when the name is valid but not hosted.
#[rustler::nif(schedule = "DirtyIo")]
fn domain<'a>(env: Env<'a>, handle: Handle, name: Binary<'a>) -> NifResult<Term<'a>> {
    let name = text(&name)?;
    reply(env, handle.hosting.domain(name), |env, found| match found {
        Some(d) => domain_term(env, d),
        None => Ok(atoms::undefined().encode(env)),
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn domains(env: Env<'_>, handle: Handle) -> NifResult<Term<'_>> {
    reply(env, handle.hosting.domains(), |env, all| {
        Ok(all.into_iter().map(|d| domain_term(env, d)).collect::<NifResult<Vec<_>>>()?.encode(env))
    })
}

#[rustler::nif(schedule = "DirtyIo", name = "remove_domain_nif")]
fn remove_domain<'a>(env: Env<'a>, handle: Handle, name: Binary<'a>) -> NifResult<Term<'a>> {
    let name = text(&name)?.to_owned();
    answered_unit(env, &handle.hosting, move |h| h.remove_domain(&name))
}

/// Moves the store's write-ahead log into the database; mod_xmpp_hosting runs it on a timer so
/// that no request pays for it.
#[rustler::nif(schedule = "DirtyIo")]
fn checkpoint(env: Env<'_>, handle: Handle) -> NifResult<Term<'_>> {
    reply_unit(env, handle.hosting.checkpoint().map(|_| ()))
}

pub(crate) fn domain_term(env: Env<'_>, d: Domain) -> NifResult<Term<'_>> {
    // Serialising plain settings data cannot fail; should a core bug make it fail, the caller
    // sees `null` settings instead of a panic inside the VM.
    let settings = serde_json::to_value(&d.settings).unwrap_or(serde_json::Value::Null);
    let keys = [atoms::name(), atoms::unicode_name(), atoms::settings(), atoms::created_at(), atoms::updated_at()];
    let values = [
        d.name.as_str().encode(env),
        d.unicode_name().encode(env),
        crate::json::to_term(env, &settings)?,
        d.created_at.encode(env),
        d.updated_at.encode(env),
    ];
    let keys: Vec<Term<'_>> = keys.iter().map(|k| k.encode(env)).collect();
    Term::map_from_term_arrays(env, &keys, &values)
}
