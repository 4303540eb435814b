//! The invites page: create (with expiry and uses), list, revoke. The token of a new invite is
//! shown once, in the answer that creates it (the store keeps only its hash); listings never
//! carry it.

use serde_json::{json, Value};

use super::{Answer, Call, Failure};
use crate::invites::{Creator, Expiry, NewInvite};

pub(super) fn list(call: &Call<'_>) -> Answer {
    Ok(json!({ "invites": call.hosting().invite_list(call.domain())? }))
}

/// `{"uses": n, "expires_in": seconds or "never", "note": text}`, all optional.
pub(super) fn create(call: &Call<'_>) -> Answer {
    // The owner is the domain's admin: their invites are the admin's (users' own invites, with the
    // domain's rules for users, are made by XMPP clients, not here).
    let mut new = NewInvite::account(call.domain());
    new.created_by = Creator::Admin;
    if let Some(uses) = call.body.get("uses") {
        new.uses = uses
            .as_u64()
            .and_then(|u| u32::try_from(u).ok())
            .ok_or_else(|| Failure::new(400, "invalid-argument", "uses is a whole number"))?;
    }
    if let Some(expiry) = call.body.get("expires_in") {
        let text = match expiry {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        new.expiry = Expiry::parse(&text)?;
    }
    new.note = call.body.get("note").and_then(Value::as_str).map(str::to_string);
    let created = call.hosting().create_invite(&new)?;
    // The link the page shows, and the same link as a QR code beside it for a phone's camera:
    // the token is in both and shown this once, so the code is drawn here and never by URL. The
    // invite exists by now: a link too long for a QR code (an admin's long landing URL) still
    // answers the link, with the reason instead of the image.
    let link = created.landing_url.clone().unwrap_or_else(|| created.uri.clone());
    let mut answer = json!(created);
    match qr_svg(&link) {
        Ok(svg) => answer["qr_svg"] = json!(svg),
        Err(why) => answer["qr_error"] = json!(why),
    }
    answer["link"] = json!(link);
    Ok(answer)
}

/// `text` as a QR code, an SVG image one unit per module (with the quiet zone readers need):
/// the page scales it, and the image is drawn by the core so the page loads no QR script.
pub(crate) fn qr_svg(text: &str) -> Result<String, String> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| format!("the invite link cannot be drawn as a QR code: {e}"))?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().module_dimensions(1, 1).quiet_zone(true).build())
}

pub(super) fn revoke(call: &Call<'_>) -> Answer {
    let id: i64 = call
        .params
        .first()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| Failure::new(404, "not-found", "no such invite"))?;
    // Only the owner and admins reach this route, and the owner is the domain's admin: their
    // invites are made as the admin's (see `create`), so they revoke as the admin too.
    Ok(json!({ "invite": call.hosting().revoke_invite(call.domain(), id, &Creator::Admin)? }))
}
