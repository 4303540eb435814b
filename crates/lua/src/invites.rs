//! Invites and the registration gate, as methods of the store handle.
//!
//! `h:create_invite{domain=..., kind=..., uses=..., expiry=..., ...}` takes the same fields as the
//! core's `NewInvite` (and the CLI's flags); `h:begin_registration{domain, username, ip, token}`
//! returns `{decision = "allowed", id = ..., ...}` or `{decision = "refused", reason, type,
//! condition, text}`, so the Prosody module answers with the stanza error the core chose.

use mlua::prelude::*;
use serde::Deserialize;
use xmpp_hosting_core::invites::{parse_invite_id, AccountOutcome, Creator, NewInvite, RegistrationRequest};

use crate::convert::{from_lua, outcome, serialized};
use crate::handle::Handle;
use crate::pending::{LuaNowOrLater, LuaPending};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    domain: String,
    username: String,
    ip: Option<String>,
    token: Option<String>,
}

impl Registration {
    /// The core's view of the request, borrowing this table's fields.
    fn request(&self) -> RegistrationRequest<'_> {
        RegistrationRequest {
            domain: &self.domain,
            username: &self.username,
            ip: self.ip.as_deref(),
            token: self.token.as_deref(),
        }
    }
}

/// An invite id as an admin typed it (`"12"`) or a number; `1.5` is the admin's mistake, not a
/// conversion error.
fn invite_id(id: &LuaValue) -> Result<i64, xmpp_hosting_core::Error> {
    match id {
        LuaValue::Integer(i) => parse_invite_id(&i.to_string()),
        LuaValue::Number(n) => parse_invite_id(&n.to_string()),
        LuaValue::String(s) => parse_invite_id(&s.to_string_lossy()),
        other => parse_invite_id(other.type_name()),
    }
}

pub fn add_methods<M: LuaUserDataMethods<Handle>>(m: &mut M) {
    m.add_method("create_invite", |lua, h, spec: LuaTable| {
        serialized(lua, || h.0.create_invite(&from_lua::<NewInvite>(lua, LuaValue::Table(spec))?))
    });
    // An unusable token is `nil` with no error: clients get one answer for every bad token.
    m.add_method("check_invite", |lua, h, (domain, token): (String, LuaString)| {
        serialized(lua, || match token.to_str() {
            Ok(t) => h.0.check_invite(&domain, &t),
            Err(_) => Ok(None),
        })
    });
    // `h:create_invite_from_options(domain, {"--uses", "3", "--expires-in", "never"})`: what an
    // admin typed on prosodyctl, read and refused by the core in their words.
    m.add_method("create_invite_from_options", |lua, h, (domain, args): (String, Vec<String>)| {
        serialized(lua, || h.0.create_invite(&NewInvite::from_options(&domain, &args)?))
    });
    // The admin shell's writes on Prosody's loop: the same answers at once, or a pending result
    // while another process holds the store's write lock (see pending.rs).
    m.add_method("create_invite_or_later", |lua, h, spec: LuaTable| {
        outcome(lua, || {
            let spec = from_lua::<NewInvite>(lua, LuaValue::Table(spec))?;
            h.0.now_or_later(move |w| w.create_invite(&spec)).map(LuaNowOrLater)
        })
    });
    m.add_method("create_invite_from_options_or_later", |lua, h, (domain, args): (String, Vec<String>)| {
        outcome(lua, || {
            let spec = NewInvite::from_options(&domain, &args)?;
            h.0.now_or_later(move |w| w.create_invite(&spec)).map(LuaNowOrLater)
        })
    });
    // Each invite with its `status` and the `line` an admin's listing prints.
    m.add_method("invites", |lua, h, domain: String| serialized(lua, || h.0.invite_list(&domain)));
    // The id as typed (`"12"`) or a number; `1.5` is the admin's mistake, not a conversion error.
    m.add_method("revoke_invite", |lua, h, (domain, id, by): (String, LuaValue, Option<String>)| {
        serialized(lua, || h.0.revoke_invite(&domain, invite_id(&id)?, &by.map_or(Creator::Admin, Creator::from)))
    });
    m.add_method("revoke_invite_or_later", |lua, h, (domain, id, by): (String, LuaValue, Option<String>)| {
        outcome(lua, || {
            let id = invite_id(&id)?;
            let by = by.map_or(Creator::Admin, Creator::from);
            h.0.now_or_later(move |w| w.revoke_invite(&domain, id, &by)).map(LuaNowOrLater)
        })
    });
    m.add_method("purge_invites", |lua, h, ()| serialized(lua, || h.0.purge_invites()));
    // The purge on the core's worker: a pending result (see pending.rs), so thousands of invites
    // never stall Prosody's loop.
    m.add_method("start_purge_invites", |lua, h, ()| outcome(lua, || h.0.start_purge_invites().map(LuaPending::new)));
    // Registrations whose outcome never came: `{{id, domain, username}, ...}`, for the server to
    // check in its account store and answer with `h:settle_stale_registrations{{id, account_exists}}`.
    m.add_method("stale_registrations", |lua, h, limit: Option<usize>| {
        serialized(lua, || h.0.stale_registrations(limit.unwrap_or(100)))
    });
    m.add_method("settle_stale_registrations", |lua, h, outcomes: LuaValue| {
        serialized(lua, || h.0.settle_stale_registrations(&from_lua::<Vec<AccountOutcome>>(lua, outcomes)?))
    });
    // The same for Prosody's loop (the admin shell's purge): the count at once, or a pending
    // result while another process holds the store's write lock (see pending.rs).
    m.add_method("settle_stale_registrations_or_later", |lua, h, outcomes: LuaValue| {
        outcome(lua, || {
            let outcomes = from_lua::<Vec<AccountOutcome>>(lua, outcomes)?;
            h.0.now_or_later(move |w| w.settle_stale_registrations(&outcomes)).map(LuaNowOrLater)
        })
    });
    // A host that loads the invite module is hosted: `{domain, added, log}`.
    m.add_method("ensure_hosted", |lua, h, domain: String| serialized(lua, || h.0.ensure_hosted(&domain)));
    // The same at module load on Prosody's loop: the answer at once, or a pending result while
    // another process holds the store's write lock (see pending.rs; the worker tries until the
    // lock is free).
    m.add_method("ensure_hosted_or_later", |lua, h, domain: String| {
        outcome(lua, || h.0.now_or_in_background(move |w| w.ensure_hosted(&domain)).map(LuaNowOrLater))
    });
    m.add_method("invite_audit", |lua, h, (domain, limit): (String, Option<u32>)| {
        serialized(lua, || h.0.invite_audit(&domain, limit.unwrap_or(50)))
    });
    m.add_method("begin_registration", |lua, h, spec: LuaTable| {
        serialized(lua, || {
            let r: Registration = from_lua(lua, LuaValue::Table(spec))?;
            h.0.begin_registration(&r.request())
        })
    });
    // `h:preauthorize_subscription(inviter, contact, token)`: `{decision = "approved", invite_id}`
    // or `{decision = "ignored", reason}`. A token that is not UTF-8 is simply not one of ours.
    m.add_method("preauthorize_subscription", |lua, h, (inviter, contact, token): (String, String, LuaString)| {
        let token = token.to_str().map(|t| t.to_string()).unwrap_or_default();
        serialized(lua, || h.0.preauthorize_subscription(&inviter, &contact, &token))
    });
    // The same for Prosody's loop, where anyone on the federation can send a token: the decision
    // at once, or a pending result while another process holds the store's write lock (see
    // pending.rs; only a token that approves something needs it).
    m.add_method(
        "preauthorize_subscription_or_later",
        |lua, h, (inviter, contact, token): (String, String, LuaString)| {
            let token = token.to_str().map(|t| t.to_string()).unwrap_or_default();
            outcome(lua, || {
                h.0.now_or_later(move |w| w.preauthorize_subscription(&inviter, &contact, &token)).map(LuaNowOrLater)
            })
        },
    );
    m.add_method("finish_registration", |lua, h, (id, created): (i64, bool)| {
        serialized(lua, || h.0.finish_registration(id, created).map(|()| true))
    });
    // The same two on the core's worker, for Prosody's loop: a pending result (see pending.rs)
    // instead of a wait for another process's write lock.
    m.add_method("begin_registration_later", |lua, h, spec: LuaTable| {
        outcome(lua, || {
            let r: Registration = from_lua(lua, LuaValue::Table(spec))?;
            h.0.later(move |w| w.begin_registration(&r.request())).map(LuaPending::new)
        })
    });
    m.add_method("finish_registration_later", |lua, h, (id, created): (i64, bool)| {
        outcome(lua, || h.0.later(move |w| w.finish_registration(id, created).map(|()| true)).map(LuaPending::new))
    });
}
