//! Publication, as methods of the store handle (see the core's `publish` module).
//!
//! `h:publication(domain)` -> `{domain, description, enforced}`; `h:set_publication(domain,
//! field, value)` -> the same after the change (refusals as `nil, message, "invalid-argument"`);
//! `h:describe_publication(domain)` -> it in words; `h:provider_file(domain)` -> the provider
//! file's JSON text, to serve as is; `h:disco_forms(domain)` -> `{{form_type = ..., fields =
//! {{var = ..., values = {...}}, ...}}, ...}` for the host's disco#info;
//! `h:policy_page(domain, accept_language, counts_or_nil)` -> the HTML page and
//! `h:policy_json(...)` the same as JSON text, where counts is `{accounts = n, daily_active = n,
//! monthly_active = n}` as far as the server counted them. `h:record_activity_or_later(domain,
//! username)` counts a login: `true` at once, or a pending result while another process holds
//! the store's write lock.

use mlua::prelude::*;
use xmpp_hosting_core::publish::UsageStatistics;

use crate::convert::{outcome, serialized};
use crate::handle::Handle;
use crate::pending::LuaNowOrLater;

/// The counts a server hands in, `{accounts = n, daily_active = n, monthly_active = n}`, each
/// optional (an empty table is no counts).
fn counts(table: Option<LuaTable>) -> LuaResult<UsageStatistics> {
    let Some(t) = table else { return Ok(UsageStatistics::default()) };
    Ok(UsageStatistics {
        accounts: t.get("accounts")?,
        daily_active: t.get("daily_active")?,
        monthly_active: t.get("monthly_active")?,
    })
}

pub fn add_methods<M: LuaUserDataMethods<Handle>>(m: &mut M) {
    m.add_method("publication", |lua, h, domain: String| serialized(lua, || h.0.publication(&domain)));
    m.add_method("set_publication", |lua, h, (domain, field, value): (String, String, String)| {
        serialized(lua, || h.0.set_publication(&domain, &field, &value))
    });
    m.add_method("describe_publication", |lua, h, domain: String| {
        outcome(lua, || h.0.publication(&domain).map(|p| p.describe()))
    });
    m.add_method("provider_file", |lua, h, domain: String| {
        outcome(lua, || h.0.provider_file(&domain).map(|f| f.to_json()))
    });
    // `h:support_bookmark(domain)` -> `{jid, name, autojoin}` or nil: the bookmark (XEP-0402) a
    // new account gets.
    m.add_method("support_bookmark", |lua, h, domain: String| serialized(lua, || h.0.support_bookmark(&domain)));
    // `h:record_activity(domain, username)`: a login, for the daily and monthly active counts.
    m.add_method("record_activity", |lua, h, (domain, user): (String, String)| {
        outcome(lua, || h.0.record_activity(&domain, &user).map(|()| true))
    });
    // The same for Prosody's loop: `true` at once, or a pending result while another process
    // holds the store's write lock (see pending.rs), so a login never waits for it; the core's
    // worker counts it once the lock is free, however long that takes (`now_or_in_background`).
    m.add_method("record_activity_or_later", |lua, h, (domain, user): (String, String)| {
        outcome(lua, || {
            h.0.now_or_in_background(move |w| w.record_activity(&domain, &user).map(|()| true)).map(LuaNowOrLater)
        })
    });
    m.add_method("disco_forms", |lua, h, domain: String| serialized(lua, || h.0.disco_forms(&domain)));
    m.add_method("policy_page", |lua, h, (domain, language, stats): (String, Option<String>, Option<LuaTable>)| {
        let stats = counts(stats)?;
        outcome(lua, || {
            let doc = h.0.policy_document(&domain, language.as_deref().unwrap_or(""), stats)?;
            Ok(doc.to_html())
        })
    });
    m.add_method("policy_json", |lua, h, (domain, language, stats): (String, Option<String>, Option<LuaTable>)| {
        let stats = counts(stats)?;
        outcome(lua, || {
            let doc = h.0.policy_document(&domain, language.as_deref().unwrap_or(""), stats)?;
            Ok(doc.to_json())
        })
    });
}
