//! Certificates (see the core's `certificates` module) for ejabberd. No function takes or returns
//! a private key: keys leave the core only as 0600 files.
//!
//! - `cert_generate(H, Domain, Key, Days, Tag)` -> `ok`, then `{xmpp_hosting_result, Tag,
//!   {ok, Info}}` (on the core's worker: an RSA key takes a while, no scheduler waits for it);
//! - `cert_acme(H, Domain, Tag)` -> `ok`, then `{xmpp_hosting_result, Tag, {ok, Info}}`: a
//!   CA-signed certificate by ACME DNS-01 through the customer's CNAME, the exchange with the CA
//!   on the core's worker;
//! - `cert_show(H, Domain)`, `cert_import(H, Domain, Pem)` -> `{ok, Info}`; Info carries `text`,
//!   the description in the core's words;
//! - `cert_pem(H, Domain)` (certificate and chain), `cert_csr(H, Domain)`, `cert_posh(H, Domain,
//!   Service)` -> `{ok, Binary}`; `cert_posh_check(H, Domain, Published)` -> `{ok, #{matches, ...}}`;
//! - `cert_check(H)` -> `{ok, #{ok, text, expiries}}`;
//! - `cert_install(H, Dir, Layout)` -> `{ok, #{installed, removed, certfiles, ...}}`: what the
//!   module hands `ejabberd_pkix` before its commit;
//! - `housekeeping_install_certificates(HK, Dir | undefined, Layout)` -> `ok`: the housekeeping
//!   pass installs into Dir from then on.

use std::path::PathBuf;

use rustler::{Binary, Encoder, Env, NifResult, ResourceArc, Term};
use xmpp_hosting_core::certificates::{CertificateInfo, GenerateOptions, InstallTarget, KeyKind, Layout, PoshService};
use xmpp_hosting_core::Error;

use crate::args::{optional_text, text};
use crate::error::reply;
use crate::handle::Handle;
use crate::housekeeping::HousekeepingResource;
use crate::json::serialized;
use crate::later::started_viewed;

/// A description with its `text`.
fn described(info: &CertificateInfo) -> serde_json::Value {
    let mut value = serde_json::to_value(info).unwrap_or_default();
    value["text"] = info.describe().into();
    value
}

fn layout(name: &str) -> Result<Layout, Error> {
    Layout::parse(name)
        .ok_or_else(|| Error::InvalidArgument(format!("unknown certificate layout {name:?}: use prosody or ejabberd")))
}

/// `Key` is `<<"ecdsa">>` or `<<"rsa">>`; `Days` 0 for the default.
#[rustler::nif(schedule = "DirtyIo")]
fn cert_generate<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    key: Binary<'a>,
    days: i64,
    tag: i64,
) -> NifResult<Term<'a>> {
    let domain = text(&domain)?.to_owned();
    let start = KeyKind::parse(text(&key)?).map_err(Error::from).and_then(|key| {
        let days = if days == 0 { GenerateOptions::default().days } else { days };
        handle.hosting.later(move |worker| worker.generate_certificate(&domain, GenerateOptions { key, days }))
    });
    started_viewed(env, tag, start, |info| described(&info))
}

#[rustler::nif(schedule = "DirtyIo")]
fn cert_acme<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, tag: i64) -> NifResult<Term<'a>> {
    started_viewed(env, tag, handle.hosting.acme_issue(text(&domain)?), |info| described(&info))
}

#[rustler::nif(schedule = "DirtyIo")]
fn cert_show<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.certificate(text(&domain)?).map(|i| described(&i)), serialized)
}

#[rustler::nif(schedule = "DirtyIo", name = "cert_import_nif")]
fn cert_import<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, pem: Binary<'a>) -> NifResult<Term<'a>> {
    let domain = text(&domain)?.to_owned();
    let pem = match std::str::from_utf8(pem.as_slice()) {
        Ok(pem) => pem.to_owned(),
        Err(_) => {
            return crate::error::error_term(
                env,
                &Error::InvalidArgument("the certificate file is not text (PEM)".into()),
            )
        }
    };
    let import = move |h: &xmpp_hosting_core::Hosting| h.import_certificate(&domain, &pem).map(|i| described(&i));
    crate::later::answered(env, &handle.hosting, import, serialized)
}

#[rustler::nif(schedule = "DirtyIo")]
fn cert_pem<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.certificate_pem(text(&domain)?), |env, s| Ok(s.encode(env)))
}

#[rustler::nif(schedule = "DirtyIo")]
fn cert_csr<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.certificate_csr(text(&domain)?), |env, s| Ok(s.encode(env)))
}

#[rustler::nif(schedule = "DirtyIo")]
fn cert_posh<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, service: Binary<'a>) -> NifResult<Term<'a>> {
    let (domain, service) = (text(&domain)?, text(&service)?);
    let json = PoshService::parse(service)
        .ok_or_else(|| Error::InvalidArgument(format!("unknown POSH service {service:?}: use client or server")))
        .and_then(|s| handle.hosting.certificate_posh(domain, s));
    reply(env, json, |env, s| Ok(s.encode(env)))
}

#[rustler::nif(schedule = "DirtyIo")]
fn cert_posh_check<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, published: Binary<'a>) -> NifResult<Term<'a>> {
    let domain = text(&domain)?;
    let published = std::str::from_utf8(published.as_slice())
        .map_err(|_| Error::InvalidArgument("the POSH file is not text (JSON)".into()));
    let checked = published.and_then(|p| handle.hosting.check_certificate_posh(domain, p));
    reply(env, checked, serialized)
}

#[rustler::nif(schedule = "DirtyIo")]
fn cert_check(env: Env<'_>, handle: Handle) -> NifResult<Term<'_>> {
    reply(env, handle.hosting.check_certificates(), serialized)
}

#[rustler::nif(schedule = "DirtyIo")]
fn cert_install<'a>(env: Env<'a>, handle: Handle, dir: Binary<'a>, name: Binary<'a>) -> NifResult<Term<'a>> {
    let dir = PathBuf::from(text(&dir)?);
    let installed = layout(text(&name)?).and_then(|l| handle.hosting.install_certificates(&dir, l));
    reply(env, installed, serialized)
}

#[rustler::nif]
fn housekeeping_install_certificates<'a>(
    env: Env<'a>,
    hk: ResourceArc<HousekeepingResource>,
    dir: Term<'a>,
    name: Binary<'a>,
) -> NifResult<Term<'a>> {
    let target = match optional_text(dir)? {
        None => Ok(None),
        Some(dir) => layout(text(&name)?).map(|layout| Some(InstallTarget { dir: PathBuf::from(dir), layout })),
    };
    reply(env, target.map(|t| hk.housekeeping.install_certificates_into(t)), |env, ()| Ok(true.encode(env)))
}
