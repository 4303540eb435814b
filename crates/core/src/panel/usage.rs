//! Usage and retention: the owner (and admins) see the whole domain's, a user of the domain only
//! their own; a user may choose a shorter archive retention for themselves than the domain's.

use serde_json::{json, Value};

use super::access::Role;
use super::{Answer, Call, Failure};

/// Whose usage the caller sees: the whole domain's for its owner and admins, else only their own.
fn own_username(call: &Call<'_>) -> Option<String> {
    match call.role() {
        Role::Admin | Role::Owner => None,
        _ => Some(call.session().username().to_string()),
    }
}

pub(super) fn usage(call: &Call<'_>) -> Answer {
    let user = own_username(call);
    let view = call.hosting().upload_quota_view(call.domain(), user.as_deref())?;
    Ok(json!({ "uploads": view }))
}

pub(super) fn retention(call: &Call<'_>) -> Answer {
    let h = call.hosting();
    let policy = h.retention_policy(call.domain())?;
    let mut v = json!({ "domain": policy, "text": policy.describe() });
    if call.session().host() == call.domain() {
        v["own_archive"] = json!(h.user_archive_retention(call.domain(), call.session().username())?.to_string());
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
