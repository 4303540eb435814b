//! Publication (see the core's `publish` module) for ejabberd: the description and the enforced
//! values, the provider file and the policy page as ready-to-serve text, the disco#info forms.
//!
//! The description's language maps are keyed by what admins typed (language tags), so the
//! description crosses as JSON text, never as maps with atom keys made from user data. The
//! disco forms' keys are the core's field names (a fixed set) and cross as maps.

use rustler::{Binary, Encoder, Env, NifResult, Term};
use xmpp_hosting_core::publish::UsageStatistics;

use crate::args::{optional_text, text};
use crate::error::reply;
use crate::handle::Handle;
use crate::json::serialized;

fn json<T: serde::Serialize>(value: &T) -> String {
    // The core's publication types are plain data: serialising them cannot fail.
    serde_json::to_string(value).expect("publication serialises")
}

/// `publication(H, Domain)` -> `{ok, Json}`: `{"domain", "description", "enforced"}` as JSON text.
#[rustler::nif(schedule = "DirtyIo")]
fn publication<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.publication(text(&domain)?), |env, p| Ok(json(&p).encode(env)))
}

/// `set_publication(H, Domain, Field, Value)` -> `{ok, Json}` after the change; a value that
/// cannot be published is `{error, {invalid_argument, Why}}`.
#[rustler::nif(schedule = "DirtyIo", name = "set_publication_nif")]
fn set_publication<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    field: Binary<'a>,
    value: Binary<'a>,
) -> NifResult<Term<'a>> {
    let (domain, field, value) = (text(&domain)?.to_owned(), text(&field)?.to_owned(), text(&value)?.to_owned());
    let set = move |h: &xmpp_hosting_core::Hosting| h.set_publication(&domain, &field, &value);
    crate::later::answered(env, &handle.hosting, set, |env, p| Ok(json(&p).encode(env)))
}

/// `describe_publication(H, Domain)` -> `{ok, Text}`: the publication in the core's words.
#[rustler::nif(schedule = "DirtyIo")]
fn describe_publication<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.publication(text(&domain)?), |env, p| Ok(p.describe().encode(env)))
}

/// `provider_file(H, Domain)` -> `{ok, Json}`: the provider file v2, to serve as is.
#[rustler::nif(schedule = "DirtyIo")]
fn provider_file<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.provider_file(text(&domain)?), |env, f| Ok(f.to_json().encode(env)))
}

/// `disco_forms(H, Domain)` -> `{ok, [#{form_type, fields => [#{var, values}]}]}`.
#[rustler::nif(schedule = "DirtyIo")]
fn disco_forms<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.disco_forms(text(&domain)?), serialized)
}

/// `policy_page(H, Domain, Language, Accounts, Format)` -> `{ok, Text}`: the policy page for a
/// reader of `Language` (a tag or an Accept-Language value, `<<>>` for the domain's own), with
/// `Accounts` counted by ejabberd (or `undefined`), as `html` or `json`.
#[rustler::nif(schedule = "DirtyIo")]
fn policy_page<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    language: Term<'a>,
    accounts: Term<'a>,
    format: Term<'a>,
) -> NifResult<Term<'a>> {
    let language = optional_text(language)?.unwrap_or("");
    let accounts: Option<u64> = if accounts.is_atom() { None } else { Some(accounts.decode()?) };
    let html = match format.atom_to_string()?.as_str() {
        "html" => true,
        "json" => false,
        _ => return Err(rustler::Error::BadArg),
    };
    let stats = UsageStatistics { accounts, ..Default::default() };
    reply(env, handle.hosting.policy_document(text(&domain)?, language, stats), |env, doc| {
        Ok(if html { doc.to_html() } else { doc.to_json() }.encode(env))
    })
}

/// `support_bookmark(H, Domain)` -> `{ok, #{jid, name, autojoin}}` or `{ok, null}`: the bookmark
/// (XEP-0402) a new account of the domain gets for its support room.
#[rustler::nif(schedule = "DirtyIo")]
fn support_bookmark<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.support_bookmark(text(&domain)?), serialized)
}

/// `record_activity(H, Domain, User)` -> `ok`: a login, for the daily and monthly active counts.
#[rustler::nif(schedule = "DirtyIo")]
fn record_activity<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, user: Binary<'a>) -> NifResult<Term<'a>> {
    crate::error::reply_unit(env, handle.hosting.record_activity(text(&domain)?, text(&user)?))
}
