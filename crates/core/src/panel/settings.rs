//! The settings page: what an owner may change of their domain (registration policy, who may
//! invite, the shared roster). Everything else of a domain's settings (limits, retention maxima,
//! the owner) is the operator's, through the CLI or the server's admin commands.

use serde_json::{json, Value};

use super::{Answer, Call, Failure};

/// The settings an owner may change, by their dotted path in the domain's settings.
pub const OWNER_SETTINGS: [&str; 4] =
    ["registration.policy", "registration.users_may_invite", "registration.invite_ttl", "shared_roster"];

fn view(settings: &Value) -> Value {
    let mut out = json!({});
    for path in OWNER_SETTINGS {
        let mut v = settings;
        for part in path.split('.') {
            v = v.get(part).unwrap_or(&Value::Null);
        }
        out[path] = v.clone();
    }
    out
}

pub(super) fn show(call: &Call<'_>) -> Answer {
    let domain = call.hosting().require_domain(call.domain())?;
    Ok(json!({ "settings": view(&serde_json::to_value(&domain.settings).unwrap_or_default()) }))
}

/// Changes the settings named in the body (`{"registration.policy": "invite", ...}`), each
/// checked by the core; none may be outside [`OWNER_SETTINGS`].
pub(super) fn set(call: &Call<'_>) -> Answer {
    let Some(fields) = call.body.as_object().filter(|f| !f.is_empty()) else {
        return Err(Failure::new(400, "invalid-argument", "name at least one setting to change"));
    };
    if let Some(other) = fields.keys().find(|k| !OWNER_SETTINGS.contains(&k.as_str())) {
        return Err(Failure::new(
            403,
            "not-allowed",
            format!(
                "{other} is not a setting a domain's owner may change here; these are: {}",
                OWNER_SETTINGS.join(", ")
            ),
        ));
    }
    let mut domain = None;
    for (path, value) in fields {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => "null".to_string(),
            other => other.to_string(),
        };
        domain = Some(call.hosting().set_domain_setting(call.domain(), path, &text)?);
    }
    let settings = serde_json::to_value(&domain.expect("at least one field").settings).unwrap_or_default();
    Ok(json!({ "settings": view(&settings) }))
}
