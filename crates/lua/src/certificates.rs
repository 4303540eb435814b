//! Certificates (see the core's `certificates` module), as methods of the store handle. No
//! method returns or takes a private key: keys leave the core only as 0600 files.
//!
//! - `h:start_generate_certificate(domain, {key = "ecdsa"|"rsa", days = n})` -> a pending result
//!   (`pending.rs`: an RSA key takes a while and must not stall Prosody's loop) whose value is the
//!   certificate's description plus `text` (it in the core's words);
//! - `h:start_acme_certificate(domain)` -> a pending result like the above: a CA-signed
//!   certificate by ACME DNS-01 through the customer's CNAME (the exchange runs on the core's
//!   worker); `h:acme_status(domain)` -> its bookkeeping, or nil;
//! - `h:certificate(domain)` -> the same description; `h:certificate_pem(domain)` -> the
//!   certificate and its chain; `h:certificate_csr(domain)` -> a CSR (PEM);
//! - `h:import_certificate(domain, pem)` -> the description (refused with the reason:
//!   `nil, message, code`); `h:import_certificate_or_later(domain, pem)` is the same write for
//!   Prosody's loop (the admin shell): the answer at once, or a pending result while another
//!   process holds the store's write lock (see pending.rs), so the loop never waits for it. The
//!   other methods only read the store (WAL lets them while another process writes) or already
//!   run on the worker (`start_*`);
//! - `h:certificate_posh(domain, "client"|"server")` -> the POSH JSON;
//!   `h:check_certificate_posh(domain, published_text)` -> `{matches, matched, problems}`;
//! - `h:check_certificates()` -> `{ok, text, expiries}` (`ok` false when one has under 7 days);
//! - `h:install_certificates(dir, "prosody"|"ejabberd")` -> what changed (`installed`,
//!   `removed`, `certfiles`, ...), for a command to reload the server only when needed;
//! - `hk:install_certificates_into(dir, layout)` on the housekeeping object: its certificate
//!   step installs into `dir` from then on (`nil` dir: not at all).

use std::path::PathBuf;

use mlua::prelude::*;
use serde::Serialize;
use xmpp_hosting_core::certificates::{CertificateInfo, GenerateOptions, InstallTarget, KeyKind, Layout, PoshService};
use xmpp_hosting_core::{Error, Housekeeping};

use crate::convert::{outcome, serialized};
use crate::handle::Handle;
use crate::pending::{LuaNowOrLater, LuaPending};

/// A description with its `text`, as every command prints it.
fn described(info: &CertificateInfo) -> serde_json::Value {
    let mut value = serde_json::to_value(info).unwrap_or_default();
    value["text"] = info.describe().into();
    value
}

/// `described`, for values that serialise.
#[derive(Serialize)]
#[serde(transparent)]
struct Described(serde_json::Value);

pub fn layout(name: &str) -> Result<Layout, Error> {
    Layout::parse(name)
        .ok_or_else(|| Error::InvalidArgument(format!("unknown certificate layout {name:?}: use prosody or ejabberd")))
}

fn options(table: Option<LuaTable>) -> LuaResult<Result<GenerateOptions, Error>> {
    let mut o = GenerateOptions::default();
    if let Some(t) = table {
        if let Some(key) = t.get::<Option<String>>("key")? {
            match KeyKind::parse(&key) {
                Ok(k) => o.key = k,
                Err(e) => return Ok(Err(e.into())),
            }
        }
        if let Some(days) = t.get::<Option<i64>>("days")? {
            o.days = days;
        }
    }
    Ok(Ok(o))
}

pub fn add_methods<M: LuaUserDataMethods<Handle>>(m: &mut M) {
    m.add_method("start_generate_certificate", |lua, h, (domain, opts): (String, Option<LuaTable>)| {
        let opts = options(opts)?;
        outcome(lua, || {
            let opts = opts?;
            h.0.later(move |worker| worker.generate_certificate(&domain, opts))
                .map(|p| LuaPending::viewed(p, |info| described(&info)))
        })
    });
    m.add_method("start_acme_certificate", |lua, h, domain: String| {
        outcome(lua, || h.0.acme_issue(&domain).map(|p| LuaPending::viewed(p, |info| described(&info))))
    });
    m.add_method("acme_status", |lua, h, domain: String| serialized(lua, || h.0.acme_status(&domain)));
    m.add_method("certificate", |lua, h, domain: String| {
        serialized(lua, || h.0.certificate(&domain).map(|i| Described(described(&i))))
    });
    m.add_method("certificate_pem", |lua, h, domain: String| outcome(lua, || h.0.certificate_pem(&domain)));
    m.add_method("certificate_csr", |lua, h, domain: String| outcome(lua, || h.0.certificate_csr(&domain)));
    m.add_method("import_certificate", |lua, h, (domain, pem): (String, LuaString)| {
        serialized(lua, || {
            let pem = crate::convert::text(&pem, "certificate file")?;
            h.0.import_certificate(&domain, &pem).map(|i| Described(described(&i)))
        })
    });
    m.add_method("import_certificate_or_later", |lua, h, (domain, pem): (String, LuaString)| {
        outcome(lua, || {
            let pem = crate::convert::text(&pem, "certificate file")?;
            h.0.now_or_later(move |w| w.import_certificate(&domain, &pem).map(|i| described(&i))).map(LuaNowOrLater)
        })
    });
    m.add_method("certificate_posh", |lua, h, (domain, service): (String, Option<String>)| {
        outcome(lua, || {
            let service = match service.as_deref() {
                None => PoshService::Client,
                Some(s) => PoshService::parse(s).ok_or_else(|| {
                    Error::InvalidArgument(format!("unknown POSH service {s:?}: use client or server"))
                })?,
            };
            h.0.certificate_posh(&domain, service)
        })
    });
    m.add_method("check_certificate_posh", |lua, h, (domain, published): (String, LuaString)| {
        serialized(lua, || h.0.check_certificate_posh(&domain, &crate::convert::text(&published, "POSH file")?))
    });
    m.add_method("check_certificates", |lua, h, ()| serialized(lua, || h.0.check_certificates()));
    m.add_method("install_certificates", |lua, h, (dir, name): (String, String)| {
        serialized(lua, || h.0.install_certificates(&PathBuf::from(dir), layout(&name)?))
    });
}

/// `hk:install_certificates_into(dir, layout)`, for the housekeeping object.
pub fn install_into(hk: &Housekeeping, dir: Option<String>, name: Option<String>) -> Result<bool, Error> {
    let target = match dir {
        None => None,
        Some(dir) => {
            Some(InstallTarget { dir: PathBuf::from(dir), layout: layout(name.as_deref().unwrap_or("prosody"))? })
        }
    };
    hk.install_certificates_into(target);
    Ok(true)
}
