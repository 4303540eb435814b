//! Customers' domains: claims and DNS checks for ejabberd.
//!
//! DNS runs on the core's worker thread, never on a scheduler: `verify_domain(H, D, A, Tag)`
//! returns `ok` at once and the calling process later receives
//! `{xmpp_hosting_result, Tag, {ok, Claim} | {error, {Code, Message}}}`; likewise `dns_test/3`
//! and `recheck_due/3`. `Tag` is any integer the caller picks to match the answer.

use rustler::env::OwnedEnv;
use rustler::{Binary, Encoder, Env, LocalPid, NifResult, Term};
use serde::Serialize;
use serde_json::json;
use xmpp_hosting_core::{Error, Pending};

use crate::args::text;
use crate::atoms;
use crate::error::{error_term, reply};
use crate::handle::Handle;
use crate::json::{serialized, to_term};

/// Sends the pending result to `pid` as `{xmpp_hosting_result, Tag, Result}` when it is in.
fn answer_later<T: Serialize + Send + 'static>(pid: LocalPid, tag: i64, pending: Pending<Result<T, Error>>) {
    pending.on_done(move |result| {
        let mut env = OwnedEnv::new();
        // A process that has exited cannot be told; nothing else is waiting for the answer.
        let _ = env.send_and_clear(&pid, |env| {
            let body = match result {
                Ok(value) => {
                    match serde_json::to_value(&value).map_err(|_| ()).and_then(|v| to_term(env, &v).map_err(|_| ())) {
                        Ok(term) => (atoms::ok(), term).encode(env),
                        Err(()) => error_term(env, &Error::Internal("a result could not be encoded".into()))
                            .unwrap_or_else(|_| atoms::error().encode(env)),
                    }
                }
                Err(e) => error_term(env, &e).unwrap_or_else(|_| atoms::error().encode(env)),
            };
            (atoms::xmpp_hosting_result(), tag, body).encode(env)
        });
    });
}

/// `{ok, #{claim => Claim, instructions => #{name, txt, cname}}}`.
#[rustler::nif(schedule = "DirtyIo")]
fn claim_domain<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, account: Binary<'a>) -> NifResult<Term<'a>> {
    let (domain, account) = (text(&domain)?, text(&account)?);
    let result = handle.hosting.claim_domain(domain, account).and_then(|claim| {
        let instructions = handle.hosting.verification_instructions(&claim.domain, account)?;
        Ok(json!({ "claim": claim, "instructions": instructions }))
    });
    reply(env, result, serialized)
}

/// `{ok, [Claim]}` for one domain, or for all with `undefined`.
#[rustler::nif(schedule = "DirtyIo")]
fn claims<'a>(env: Env<'a>, handle: Handle, domain: Term<'a>) -> NifResult<Term<'a>> {
    let domain = crate::args::optional_text(domain)?;
    reply(env, handle.hosting.claims(domain), serialized)
}

/// `ok` once the work is on the worker (the answer follows as a message), or the error that
/// kept it from starting.
fn started<'a, T: Serialize + Send + 'static>(
    env: Env<'a>,
    tag: i64,
    start: Result<Pending<Result<T, Error>>, Error>,
) -> NifResult<Term<'a>> {
    match start {
        Ok(pending) => {
            answer_later(env.pid(), tag, pending);
            Ok(atoms::ok().encode(env))
        }
        Err(e) => error_term(env, &e),
    }
}

#[rustler::nif(schedule = "DirtyIo")]
fn verify_domain<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    account: Binary<'a>,
    tag: i64,
) -> NifResult<Term<'a>> {
    started(env, tag, handle.hosting.verify_domain(text(&domain)?, text(&account)?))
}

#[rustler::nif(schedule = "DirtyIo")]
fn dns_test<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, tag: i64) -> NifResult<Term<'a>> {
    started(env, tag, handle.hosting.dns_test(text(&domain)?))
}

#[rustler::nif(schedule = "DirtyIo")]
fn recheck_due(env: Env<'_>, handle: Handle, limit: u32, tag: i64) -> NifResult<Term<'_>> {
    started(env, tag, handle.hosting.recheck_due(limit))
}
