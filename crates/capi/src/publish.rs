//! Publication (see the core's `publish` module): a domain's description and the values it
//! enforces, the provider file, the disco#info forms and the policy page.

use std::ffi::{c_char, CString};

use xmpp_hosting_core::publish::UsageStatistics;

use crate::error::{guard, xh_status, Failure};
use crate::handle::{hosting, xh_hosting};
use crate::strings::{optional_text, text, write_json};

/// Writes `text` as is (not as a JSON string) to `*out`, unless `out` is NULL. The core's
/// outputs are JSON or escaped HTML, which carry no NUL.
unsafe fn write_text(out: *mut *mut c_char, text: String) -> Result<(), Failure> {
    if !out.is_null() {
        *out = CString::new(text).map_err(|e| Failure::Panic(e.to_string()))?.into_raw();
    }
    Ok(())
}

/// Writes a domain's publication: `{"domain", "description", "enforced"}`.
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_publish_show(
    h: *mut xh_hosting,
    domain: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.publication(text(domain, "domain")?)?))
}

/// Sets one field of a domain's description (`field`: `jurisdiction`, `terms`,
/// `contacts.abuse`...; `value`: JSON or plain text, `null` clears) and writes the publication.
/// A value that cannot be published (an http link, a country that is not ISO 3166-1, a language
/// that is not BCP 47, an unknown organization type, an enforced value) is
/// `XH_ERR_INVALID_ARGUMENT` with the reason.
///
/// # Safety
/// `h` is a live handle; `domain`, `field`, `value` NUL-terminated strings; `out_json` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn xh_publish_set(
    h: *mut xh_hosting,
    domain: *const c_char,
    field: *const c_char,
    value: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let p = hosting(h)?.set_publication(text(domain, "domain")?, text(field, "field")?, text(value, "value")?)?;
        write_json(out_json, &p)
    })
}

/// Writes the provider file v2 of a domain: the JSON text to serve at
/// `/.well-known/xmpp-provider-v2.json`.
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `out_text` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_publish_provider_file(
    h: *mut xh_hosting,
    domain: *const c_char,
    out_text: *mut *mut c_char,
) -> xh_status {
    guard(|| write_text(out_text, hosting(h)?.provider_file(text(domain, "domain")?)?.to_json()))
}

/// Writes the data forms for a domain's disco#info: `[{"form_type", "fields": [{"var",
/// "values"}]}]` (XEP-0157 contact addresses, the enforced policy).
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_publish_disco(
    h: *mut xh_hosting,
    domain: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.disco_forms(text(domain, "domain")?)?))
}

/// Writes the policy page of a domain for a reader of `language` (a BCP 47 tag or an
/// Accept-Language value; NULL for the domain's own): HTML, or with `as_json` non-zero the same
/// content as JSON. `accounts` is the number of accounts the caller counted, negative if unknown
/// (shown approximately).
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `language` NULL or one; `out_text`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_publish_page(
    h: *mut xh_hosting,
    domain: *const c_char,
    language: *const c_char,
    accounts: i64,
    as_json: i32,
    out_text: *mut *mut c_char,
) -> xh_status {
    guard(|| {
        let stats = UsageStatistics { accounts: u64::try_from(accounts).ok(), ..Default::default() };
        let language = optional_text(language, "language")?.unwrap_or("");
        let doc = hosting(h)?.policy_document(text(domain, "domain")?, language, stats)?;
        write_text(out_text, if as_json != 0 { doc.to_json() } else { doc.to_html() })
    })
}

/// Records a login of `username` on `domain`, for the daily and monthly active accounts the
/// policy page shows (a domain the store does not host is ignored).
///
/// # Safety
/// `h` is a live handle; `domain`, `username` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn xh_publish_record_activity(
    h: *mut xh_hosting,
    domain: *const c_char,
    username: *const c_char,
) -> xh_status {
    guard(|| Ok(hosting(h)?.record_activity(text(domain, "domain")?, text(username, "username")?)?))
}

/// Writes the support room bookmark (XEP-0402) a new account of `domain` gets:
/// `{"jid", "name", "autojoin"}`, or `null` when the domain names no support room.
///
/// # Safety
/// `h` is a live handle; `domain` a NUL-terminated string; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xh_publish_support_bookmark(
    h: *mut xh_hosting,
    domain: *const c_char,
    out_json: *mut *mut c_char,
) -> xh_status {
    guard(|| write_json(out_json, &hosting(h)?.support_bookmark(text(domain, "domain")?)?))
}
