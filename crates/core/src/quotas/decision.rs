//! What a slot request gets back: a grant holding a reservation, or a denial that says which
//! limit refused it and when trying again can help. Both servers turn a denial into the same
//! XEP-0363 error, so the mapping lives here, once.

use serde::{Serialize, Serializer};

use super::policy::MAX_UPLOAD_SIZE;
use crate::{Error, Result, Timestamp};

/// Which limit a denial is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UploadLimit {
    FileSize,
    UserStorage,
    DomainStorage,
    GlobalStorage,
    UserDaily,
    UserWeekly,
    UserMonthly,
    DomainDaily,
    DomainWeekly,
    DomainMonthly,
    /// Not a limit: the domain is suspended (see [`crate::verification`]) and takes no uploads.
    DomainSuspended,
}

pub(crate) const USER_WINDOWS: [UploadLimit; 3] =
    [UploadLimit::UserDaily, UploadLimit::UserWeekly, UploadLimit::UserMonthly];
pub(crate) const DOMAIN_WINDOWS: [UploadLimit; 3] =
    [UploadLimit::DomainDaily, UploadLimit::DomainWeekly, UploadLimit::DomainMonthly];

/// A refused slot: which limit, its value, the usage it counts, and when enough room frees up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub limit: UploadLimit,
    pub limit_value: u64,
    /// Bytes counted against the limit, reservations included (0 for the file size limit).
    pub usage: u64,
    pub requested: u64,
    /// For windowed limits, when the window will have room for this file; `None` when waiting
    /// does not help (the file is larger than the limit, or storage must be freed first) or when
    /// only reservations stand in the way (they end within a slot's lifetime).
    pub retry_at: Option<Timestamp>,
}

impl Denial {
    /// The XEP-0363 error both servers answer with: a file over the size limit is
    /// `modify/not-acceptable` with `<file-too-large>`; a quota is `wait/resource-constraint`,
    /// with `<retry stamp/>` when `retry_at` is known.
    pub fn condition(&self) -> (&'static str, &'static str) {
        match self.limit {
            UploadLimit::FileSize => ("modify", "not-acceptable"),
            UploadLimit::DomainSuspended => ("cancel", "not-allowed"),
            _ => ("wait", "resource-constraint"),
        }
    }

    /// The stanza error's text, for the user who asked.
    pub fn text(&self) -> String {
        let what = match self.limit {
            UploadLimit::FileSize => return format!("File too large: the maximum is {} bytes", self.limit_value),
            UploadLimit::DomainSuspended => return "This domain is suspended: uploads are not accepted".into(),
            UploadLimit::UserStorage => "your storage",
            UploadLimit::DomainStorage => "this domain's storage",
            UploadLimit::GlobalStorage => "the server's storage",
            UploadLimit::UserDaily => "your daily upload limit",
            UploadLimit::UserWeekly => "your weekly upload limit",
            UploadLimit::UserMonthly => "your monthly upload limit",
            UploadLimit::DomainDaily => "this domain's daily upload limit",
            UploadLimit::DomainWeekly => "this domain's weekly upload limit",
            UploadLimit::DomainMonthly => "this domain's monthly upload limit",
        };
        format!("Quota reached: {what} ({} of {} bytes used)", self.usage, self.limit_value)
    }
}

/// Bindings hand the decision to Lua, Erlang and C as JSON: the denial carries its stanza error
/// type, condition and text so that no binding maps limits to errors itself.
impl Serialize for Denial {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (kind, condition) = self.condition();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("limit", &self.limit)?;
        m.serialize_entry("limit_value", &self.limit_value)?;
        m.serialize_entry("usage", &self.usage)?;
        m.serialize_entry("requested", &self.requested)?;
        if let Some(t) = self.retry_at {
            m.serialize_entry("retry_at", &t)?;
        }
        m.serialize_entry("type", kind)?;
        m.serialize_entry("condition", condition)?;
        m.serialize_entry("text", &self.text())?;
        m.end()
    }
}

/// A granted slot: its bytes are reserved until committed, released or expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub id: i64,
    pub size: u64,
    pub expires_at: Timestamp,
    /// Until when an upload of this slot that completes is still counted (the core keeps the
    /// expired reservation on record until then): a server that watches for the slot's file
    /// stops watching, and releases the slot, after this time. Only the core decides it, so
    /// both servers count a late upload alike.
    pub count_until: Timestamp,
}

/// The answer to a slot request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum UploadDecision {
    Granted(Reservation),
    Denied(Denial),
}

/// Reads a slot request's size attribute: a positive decimal integer of at most
/// [`MAX_UPLOAD_SIZE`]. Both servers call this on the raw attribute, so `-1`, `0`, `1e3`, `abc`
/// and sizes no server could store are refused alike (as `bad-request`).
pub fn parse_upload_size(text: &str) -> Result<i64> {
    let bad = |why: &str| Err(Error::InvalidArgument(format!("file size {text:?} {why}")));
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return bad("is not a whole number of bytes");
    }
    match t.parse::<i64>() {
        Ok(n) => check_upload_size(n).map(|_| n),
        Err(_) => Err(too_large(t)),
    }
}

/// The size of a slot request, whoever parsed it: larger than zero and at most
/// [`MAX_UPLOAD_SIZE`].
pub(crate) fn check_upload_size(size: i64) -> Result<u64> {
    match u64::try_from(size) {
        Ok(0) | Err(_) => Err(Error::InvalidArgument(format!("file size must be larger than zero, not {size}"))),
        Ok(n) if n > MAX_UPLOAD_SIZE => Err(too_large(&size.to_string())),
        Ok(n) => Ok(n),
    }
}

fn too_large(size: &str) -> Error {
    Error::InvalidArgument(format!(
        "a file of {size} bytes is larger than any server can store (the most is {MAX_UPLOAD_SIZE} bytes, 1 PiB)"
    ))
}
