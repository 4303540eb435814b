//! Usage and retention: the owner (and admins) see the whole domain's, a user of the domain only
//! their own; a user may choose a shorter archive retention for themselves than the domain's.

use serde_json::{json, Value};

use super::access::Role;
use super::{Answer, Call, Failure};
use crate::quotas::{human_size as size, usage_lines, UploadQuotaView, UsageLine};

/// Whose usage the caller sees: the whole domain's for its owner and admins, else only their own.
fn own_username(call: &Call<'_>) -> Option<String> {
    match call.role() {
        Role::Admin | Role::Owner => None,
        _ => Some(call.session().username().to_string()),
    }
}

/// The rows the page shows, from the core's view of the scope.
fn rows(view: &UploadQuotaView) -> Vec<Value> {
    usage_lines(&view.usage, &view.limits).into_iter().map(row).collect()
}

/// One row: the report's own line, with the numbers for the page's bar.
fn row(l: UsageLine) -> Value {
    // Whole percent, capped for the bar; an exhausted zero limit is full.
    let percent = l.limit.map(|limit| l.used.saturating_mul(100).checked_div(limit).map_or(100, |p| p.min(100)));
    json!({ "label": l.label, "used": l.used, "limit": l.limit, "percent": percent, "text": l.text })
}

pub(super) fn usage(call: &Call<'_>) -> Answer {
    let user = own_username(call);
    let view = call.hosting().upload_quota_view(call.domain(), user.as_deref())?;
    let largest = view.limits.max_file_size.map_or_else(|| "no limit".to_string(), size);
    let mut answer = json!({
        "scope": match &view.user { Some(u) => format!("{u}@{}", view.domain), None => view.domain.clone() },
        "rows": rows(&view),
        "largest_file": largest,
        "in_progress": (view.usage.reserved > 0).then(|| size(view.usage.reserved)),
        "text": view.describe(),
    });
    if let Some(defaults) = &view.user_defaults {
        answer["each_user"] = json!({
            "storage": defaults.storage.map(size),
            "daily": defaults.daily.map(size),
            "weekly": defaults.weekly.map(size),
            "monthly": defaults.monthly.map(size),
        });
    }
    answer["uploads"] = json!(view);
    Ok(answer)
}

pub(super) fn retention(call: &Call<'_>) -> Answer {
    let h = call.hosting();
    let policy = h.retention_policy(call.domain())?;
    let rows = [
        ("One-to-one message archives", policy.archive),
        ("Group chat archives", policy.muc),
        ("Uploaded files", policy.uploads),
        ("Backups (declared)", policy.backups),
    ]
    .map(|(label, period)| json!({ "label": label, "period": period.to_string() }));
    let mut v = json!({ "domain": policy, "text": policy.describe(), "rows": rows });
    // A user of the domain (its owner too, when their account is on it) may keep their own
    // archive for less than the domain promises.
    if call.session().host() == call.domain() {
        v["own_archive"] = json!(h.user_archive_retention(call.domain(), call.session().username())?.to_string());
        v["domain_archive"] = json!(policy.archive.to_string());
    }
    Ok(v)
}

/// A user's own archive retention (`{"archive": "30d"}`; null goes back to the domain's): only
/// shorter than the domain's, which the core checks.
pub(super) fn set_retention(call: &Call<'_>) -> Answer {
    if call.session().host() != call.domain() {
        return Err(Failure::new(403, "not-allowed", "only the domain's users choose their own archive retention"));
    }
    let period = match call.body.get("archive") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Null) => None,
        _ => return Err(Failure::new(400, "invalid-argument", "archive is a period such as \"30d\", or null")),
    };
    call.hosting().set_user_archive_retention(call.domain(), call.session().username(), period)?;
    retention(call)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quotas::{ScopeLimits, UploadUsage};

    #[test]
    fn sizes_and_lines_read_as_a_person_says_them() {
        assert_eq!(size(999), "999 bytes");
        assert_eq!(size(1_500_000), "1.5 MB");
        assert_eq!(size(20_000_000_000), "20 GB");
        // The stored row, for `stored` bytes against a storage limit.
        let line = |stored: u64, storage: Option<u64>| {
            let usage = UploadUsage { stored, ..Default::default() };
            let [stored, ..] = usage_lines(&usage, &ScopeLimits { storage, ..Default::default() });
            row(stored)
        };
        let l = line(250, Some(1000));
        assert_eq!((l["percent"].as_u64(), l["text"].as_str()), (Some(25), Some("250 bytes of 1 kB")));
        assert_eq!(l["label"], "Stored");
        assert_eq!(line(5, Some(0))["percent"], 100, "a zero limit is full");
        assert_eq!(line(5000, Some(1000))["percent"], 100, "over the limit is a full bar");
        assert_eq!(line(5, None)["percent"], Value::Null);
        assert_eq!(line(5, None)["text"], "5 bytes (no limit)");
    }
}
