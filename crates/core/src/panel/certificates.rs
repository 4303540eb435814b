//! The certificate page: what the domain's certificate is (never its key), a new self-signed one
//! (generated on the worker: an RSA key takes long enough to stall a server's loop), the POSH file
//! and the CSR to download, and a CA-signed certificate to upload with the import check's verdict.

use serde_json::{json, Value};

use super::{Answer, Call, Failure};
use crate::certificates::{GenerateOptions, KeyKind, PoshService};
use crate::Error;

/// The certificate, or `{"certificate": null}` when the domain has none yet.
pub(super) fn show(call: &Call<'_>) -> Answer {
    match call.hosting().certificate(call.domain()) {
        Ok(info) => Ok(json!({ "certificate": info })),
        // The certificates module says so with its own variant, under the code "not-found".
        Err(e) if e.code() == "not-found" => Ok(json!({ "certificate": null })),
        Err(e) => Err(e.into()),
    }
}

/// A new key and self-signed certificate (`{"key": "ecdsa"|"rsa", "days": n}`, both optional),
/// made on the worker; the answer is the job to poll.
pub(super) fn generate(call: &Call<'_>) -> Answer {
    let mut options = GenerateOptions::default();
    if let Some(key) = call.body.get("key").and_then(Value::as_str) {
        options.key = KeyKind::parse(key).map_err(|e| Failure::from(Error::Certificate(e)))?;
    }
    if let Some(days) = call.body.get("days") {
        options.days =
            days.as_i64().ok_or_else(|| Failure::new(400, "invalid-argument", "days is a whole number of days"))?;
    }
    let domain = call.domain().to_string();
    let job = call.panel.jobs.start(
        call.hosting(),
        &call.session().account,
        call.domain(),
        "certificate",
        || call.hosting().later(move |h| h.generate_certificate(&domain, options)),
        call.panel.now(),
    )?;
    Ok(json!({ "job": job }))
}

/// Imports a CA-signed certificate (`{"pem": ...}`: the certificate and its chain, no key): the
/// import check's refusal comes back as 422 with its reason.
pub(super) fn import(call: &Call<'_>) -> Answer {
    let pem = call.text("pem")?;
    Ok(json!({ "certificate": call.hosting().import_certificate(call.domain(), pem)? }))
}

/// The POSH file to publish at `/.well-known/posh/xmpp-client.json`, as a download.
pub(super) fn posh(call: &Call<'_>) -> Answer {
    let service = PoshService::Client;
    let content = call.hosting().certificate_posh(call.domain(), service)?;
    Ok(
        json!({"filename": "xmpp-client.json", "path": service.well_known_path(), "content": content, "type": "application/json"}),
    )
}

/// A certificate signing request for the domain's key, as a download.
pub(super) fn csr(call: &Call<'_>) -> Answer {
    let content = call.hosting().certificate_csr(call.domain())?;
    Ok(json!({"filename": format!("{}.csr", call.domain()), "content": content, "type": "application/pkcs10"}))
}
