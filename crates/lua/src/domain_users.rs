//! The hosted domain's users, for mod_xmpp_hosting_users and mod_xmpp_hosting_roster:
//!
//! - `h:decide_user_command{domain=, requester=, operator_admin=, action=, account=, password=,
//!   password_verify=, policy=}` -> `{decision="allowed", domain, as, username, jid, if_exists,
//!   if_missing, done}` or `{decision="refused", type, condition, text}`;
//! - `h:domain_user_list(domain, {usernames...})` -> `{jids = {...}, text}`;
//! - `h:shared_roster(domain, username|nil, {usernames...})` -> `{id, group, contacts = {...}}`,
//!   or `false` when the domain has no shared roster (or is not hosted here);
//! - `h:settings_changes(revision|nil)` -> `{revision, domains = {...}, shared_roster_switched =
//!   {...}, next_in}`: the domains whose settings changed since `revision` (nil: none, only where
//!   to start from), and those of them whose shared roster was switched (the only ones to push).

use mlua::prelude::*;
use xmpp_hosting_core::domain_users::UserCommand;

use crate::convert::{from_lua, serialized, text};
use crate::handle::Handle;

/// A value, or `false` where the core says "none": nil is how a failure begins.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum OrFalse<T> {
    Value(T),
    False(bool),
}

fn names(list: Option<Vec<LuaString>>) -> Result<Vec<String>, xmpp_hosting_core::Error> {
    list.unwrap_or_default().iter().map(|u| text(u, "username")).collect()
}

pub fn add_methods<M: LuaUserDataMethods<Handle>>(m: &mut M) {
    m.add_method("decide_user_command", |lua, h, cmd: LuaValue| {
        serialized(lua, || h.0.decide_user_command(&from_lua::<UserCommand>(lua, cmd)?))
    });
    m.add_method("domain_user_list", |lua, h, (domain, usernames): (LuaString, Option<Vec<LuaString>>)| {
        serialized(lua, || h.0.domain_user_list(&text(&domain, "domain")?, &names(usernames)?))
    });
    m.add_method("settings_changes", |lua, h, since: Option<i64>| serialized(lua, || h.0.settings_changes(since)));
    m.add_method(
        "shared_roster",
        |lua, h, (domain, username, accounts): (LuaString, Option<LuaString>, Option<Vec<LuaString>>)| {
            serialized(lua, || {
                let username = username.map(|u| text(&u, "username")).transpose()?;
                let roster = h.0.shared_roster(&text(&domain, "domain")?, username.as_deref(), &names(accounts)?)?;
                Ok(roster.map_or(OrFalse::False(false), OrFalse::Value))
            })
        },
    );
}
