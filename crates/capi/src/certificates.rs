//! Certificates (see the core's `certificates` module): a domain's self-signed certificate, its
//! CSR, POSH, the import of a CA-signed one and the files each server reads. No function here
//! hands out a private key: only `xh_cert_export` writes it, to a 0600 file. Generating an RSA
//! key takes a while: call `xh_cert_generate` from a thread that may wait.

use std::ffi::c_char;
use std::path::Path;

use serde::Serialize;
use xmpp_hosting_core::certificates::{CertificateError, GenerateOptions, KeyKind, Layout, PoshService, DEFAULT_DAYS};
use xmpp_hosting_core::Error;

use crate::error::{guard, xh_status};
use crate::handle::{hosting, xh_hosting};
use crate::strings::{optional_text, text, write_json};

/// PEM text handed out as `{"pem": "..."}`.
#[derive(Serialize)]
struct PemText {
    pem: String,
}

/// Makes a new key and self-signed certificate for `domain` and its service names and writes
/// what `xh_cert_show` writes. `key`: `"ecdsa"` (NULL: the default) or `"rsa"`; `days`: 1 to
/// 3650, 0 for the default 365.
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `key` NULL or one; `out_json` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn xh_cert_generate(
    h: *mut xh_hosting,
    domain: *const c_char,
    key: *const c_char,
    days: i64,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let key = match optional_text(key, "key")? {
            Some(k) => KeyKind::parse(k).map_err(Error::from)?,
            None => KeyKind::Ecdsa,
        };
        let days = if days == 0 { DEFAULT_DAYS } else { days };
        write_json(out_json, &hosting(h)?.generate_certificate(text(domain, "domain")?, GenerateOptions { key, days })?)
    })
}

/// Writes the served certificate's description: `domain`, `source` (`self-signed`, `imported`),
/// `key`, `not_before`, `not_after`, `days_left`, `fingerprint` (`sha256_hex`, `sha256_base64`),
/// `names`, `services_covered`, `services_not_covered`, `chain_length`, `updated_at`.
/// A domain without a certificate is `XH_ERR_NOT_FOUND`.
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_cert_show(
    h: *mut xh_hosting,
    domain: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.certificate(text(domain, "domain")?)?))
}

/// Writes `{"pem": ...}`: the certificate followed by its chain (never the key).
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_cert_pem(
    h: *mut xh_hosting,
    domain: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &PemText { pem: hosting(h)?.certificate_pem(text(domain, "domain")?)? }))
}

/// Writes `{"pem": ...}`: a CSR for the domain and its service names from the domain's key.
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_cert_csr(
    h: *mut xh_hosting,
    domain: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &PemText { pem: hosting(h)?.certificate_csr(text(domain, "domain")?)? }))
}

/// Writes the POSH file (`{"fingerprints":[{"sha-256":...}],"expires":...}`) for `service`
/// (`"client"`, `"server"`; NULL: client).
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `service` NULL or one; `out_json`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_cert_posh(
    h: *mut xh_hosting,
    domain: *const c_char,
    service: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let service = match optional_text(service, "service")? {
            None => PoshService::Client,
            Some(s) => PoshService::parse(s)
                .ok_or_else(|| Error::InvalidArgument(format!("unknown POSH service {s:?}: use client or server")))?,
        };
        let posh = hosting(h)?.certificate_posh(text(domain, "domain")?, service)?;
        let value: serde_json::Value = serde_json::from_str(&posh).map_err(|e| Error::Internal(e.to_string()))?;
        write_json(out_json, &value)
    })
}

/// Compares the POSH file the customer published (`published`, its text) with the served
/// certificate: writes `{"matches", "matched", "redirect", "problems"}`. Text that is not a POSH
/// file is `XH_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `h` is a live handle; `domain`, `published` NUL-terminated strings; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_cert_posh_check(
    h: *mut xh_hosting,
    domain: *const c_char,
    published: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        write_json(
            out_json,
            &hosting(h)?.check_certificate_posh(text(domain, "domain")?, text(published, "published")?)?,
        )
    })
}

/// Serves a CA-signed certificate (`pem`: the certificate, then its chain) for `domain` and writes
/// what `xh_cert_show` writes. One that does not fit (another domain, another key, expired, not
/// yet valid, a chain that does not link, not PEM, a private key included) is
/// `XH_ERR_INVALID_ARGUMENT` with the reason, and nothing changes.
///
/// # Safety
/// `h` is a live handle; `domain`, `pem` NUL-terminated strings; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_cert_import(
    h: *mut xh_hosting,
    domain: *const c_char,
    pem: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.import_certificate(text(domain, "domain")?, text(pem, "pem")?)?))
}

/// Writes `domain`'s certificate and key into the directory `dir` as `layout` (`"prosody"`:
/// DOMAIN.crt 0644 and DOMAIN.key 0600; `"ejabberd"`: DOMAIN.pem 0600) and writes the list of
/// files.
///
/// # Safety
/// `h` is a live handle; `domain`, `dir`, `layout` NUL-terminated strings; `out_json` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn xh_cert_export(
    h: *mut xh_hosting,
    domain: *const c_char,
    dir: *const c_char,
    layout: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let name = text(layout, "layout")?;
        let layout = Layout::parse(name).ok_or_else(|| {
            Error::from(CertificateError::Export(format!("unknown layout {name:?}: use prosody or ejabberd")))
        })?;
        let files = hosting(h)?.export_certificate(text(domain, "domain")?, Path::new(text(dir, "dir")?), layout)?;
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        write_json(out_json, &files)
    })
}

/// Writes the days left of every domain's certificate, soonest first:
/// `[{"domain", "source", "not_after", "days_left"}]`.
///
/// # Safety
/// `h` is a live handle; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_cert_expiry(h: *mut xh_hosting, out_json: *mut *mut c_char) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.certificate_expiry()?))
}

/// Obtains a CA-signed certificate for `domain` and `*.domain` by ACME DNS-01 through the
/// customer's `_acme-challenge` CNAME (provider settings `acme.*`), serves it, and writes what
/// `xh_cert_show` writes. Blocks for the whole exchange with the CA (seconds): call it from a
/// thread that may wait. A missing or wrong CNAME is `XH_ERR_NOT_ALLOWED` with what was found
/// (nothing is asked of the CA then); missing settings `XH_ERR_INVALID_ARGUMENT`; the CA or the
/// DNS update failing `XH_ERR_INTERNAL` with the reason.
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_cert_acme(
    h: *mut xh_hosting,
    domain: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.acme_issue(text(domain, "domain")?)?.wait()?))
}

/// Writes `domain`'s ACME bookkeeping: `{domain, cname: {name, target}, serving, issued_at,
/// renew_at, last_attempt_at, failures, next_attempt_at, last_error}`, or `null` when ACME was
/// never used for it.
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_cert_acme_status(
    h: *mut xh_hosting,
    domain: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.acme_status(text(domain, "domain")?)?))
}

/// Renews every ACME certificate that is due (blocking, like `xh_cert_acme`) and writes
/// `[{domain, renewed, error, notice, owner}]`: `renewed` is the new certificate's description,
/// or `error` and `notice` (for the admins and `owner`) say why not.
///
/// # Safety
/// `h` is a live handle; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_cert_acme_renew_due(h: *mut xh_hosting, out_json: *mut *mut c_char) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.acme_renew_due()?))
}
