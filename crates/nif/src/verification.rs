//! Customers' domains: claims and DNS checks for ejabberd.
//!
//! DNS runs on the core's worker thread, never on a scheduler: `verify_domain(H, D, A, Tag)`
//! returns `ok` at once and the calling process later receives
//! `{xmpp_hosting_result, Tag, {ok, Claim} | {error, {Code, Message}}}`; likewise `dns_test/3`
//! and `recheck_due/3`. `Tag` is any integer the caller picks to match the answer.
//!
//! A claim is a map with, beside its state, `last_error` (why DNS gave no answer) and `finding`
//! (what a check found instead of the proof, in the admin's words), `null` when there is none.

use rustler::{Binary, Env, NifResult, Term};
use serde_json::json;
use xmpp_hosting_core::texts::Described;
use xmpp_hosting_core::verification::Claim;

use crate::args::text;
use crate::error::reply;
use crate::handle::Handle;
use crate::json::serialized;
use crate::later::{started, started_viewed};

/// A claim with the core's sentence for it (`text`), which the commands print as it is.
fn described(claim: Claim) -> Described<Claim> {
    let text = claim.describe();
    Described::new(claim, text)
}

/// `{ok, #{claim => Claim, instructions => #{name, txt, cname}, text => Sentence}}`.
#[rustler::nif(schedule = "DirtyIo", name = "claim_domain_nif")]
fn claim_domain<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, account: Binary<'a>) -> NifResult<Term<'a>> {
    let (domain, account) = (text(&domain)?.to_owned(), text(&account)?.to_owned());
    let claim = move |h: &xmpp_hosting_core::Hosting| {
        h.claim_domain(&domain, &account).and_then(|claim| {
            let instructions = h.verification_instructions(&claim.domain, &account)?;
            let text = claim.describe_with(&instructions);
            Ok(json!({ "claim": claim, "instructions": instructions, "text": text }))
        })
    };
    crate::later::answered(env, &handle.hosting, claim, serialized)
}

/// `{ok, [Claim]}` for one domain, or for all with `undefined`.
#[rustler::nif(schedule = "DirtyIo")]
fn claims<'a>(env: Env<'a>, handle: Handle, domain: Term<'a>) -> NifResult<Term<'a>> {
    let domain = crate::args::optional_text(domain)?;
    let claims = handle.hosting.claims(domain).map(|cs| cs.into_iter().map(described).collect::<Vec<_>>());
    reply(env, claims, serialized)
}

#[rustler::nif(schedule = "DirtyIo")]
fn verify_domain<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    account: Binary<'a>,
    tag: i64,
) -> NifResult<Term<'a>> {
    started_viewed(env, tag, handle.hosting.verify_domain(text(&domain)?, text(&account)?), described)
}

#[rustler::nif(schedule = "DirtyIo")]
fn dns_test<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, tag: i64) -> NifResult<Term<'a>> {
    started(env, tag, handle.hosting.dns_test(text(&domain)?))
}

#[rustler::nif(schedule = "DirtyIo")]
fn recheck_due(env: Env<'_>, handle: Handle, limit: u32, tag: i64) -> NifResult<Term<'_>> {
    started(env, tag, handle.hosting.recheck_due(limit))
}
