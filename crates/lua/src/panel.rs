//! The customer's web panel for mod_xmpp_hosting_panel: the core's router, converted.
//!
//! - `h:panel{base = "/panel"}` -> a panel (one per server; it keeps the running jobs and the
//!   logins waiting for the server's password check);
//! - `panel:handle{method=, path=, cookie=, csrf=, content_type=, body=, address=, tls=}` ->
//!   `{status=, headers={["content-type"]=...}, body=}`, or `{check_password = {ticket=,
//!   username=, host=, password=}}` for a login: the module checks the password with the server's
//!   own authentication and calls
//! - `panel:finish_login(ticket, password_ok, is_admin)` -> `{status=, headers=, body=}`;
//! - for the users page, `handle` answers `{account = {ticket=, action=, host=, username=,
//!   password=, require=}}`: the module carries the change out with Prosody's own account API
//!   (usermanager) and calls `panel:finish_account(ticket, {not_served=, existed=, done=, error=,
//!   usernames={...}})` -> `{status=, headers=, body=}`.
//!
//! Every call is a short store transaction on the calling thread; verification and the DNS tester
//! run on the core's worker and the page polls them, so nothing here waits for DNS. On Prosody's
//! loop, `panel:handle_or_later(request)` and `panel:finish_login_or_later(ticket, ok, admin)`
//! answer the same at once, or with a pending result (see pending.rs) while another process
//! holds the store's write lock: the request is then answered by the core's worker once the
//! lock is free. (`finish_account` only reads the store.)

use mlua::prelude::*;
use xmpp_hosting_core::panel::{AccountResult, Panel, PanelOptions, Request};

use crate::convert::{from_lua, outcome, serialized, text};
use crate::handle::Handle;
use crate::pending::LuaNowOrLater;

pub struct LuaPanel(Panel);

impl LuaUserData for LuaPanel {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        m.add_method("handle", |lua, p, request: LuaValue| {
            serialized(lua, || {
                let request: Request = from_lua(lua, request)?;
                Ok(p.0.handle(&request))
            })
        });
        m.add_method("finish_login", |lua, p, (ticket, ok, admin): (LuaString, bool, Option<bool>)| {
            serialized(lua, || Ok(p.0.finish_login(&text(&ticket, "ticket")?, ok, admin.unwrap_or(false))))
        });
        // Both for Prosody's loop: the answer at once, or a pending result (see pending.rs) while
        // another process holds the store's write lock; the module's handler waits for it in its
        // runner. A session's touch, a login, a logout, a job's start, a change made from the
        // panel: none of them waits on the loop.
        m.add_method("handle_or_later", |lua, p, request: LuaValue| {
            outcome(lua, || {
                let request: Request = from_lua(lua, request)?;
                p.0.handle_now_or_later(request).map(LuaNowOrLater)
            })
        });
        m.add_method("finish_login_or_later", |lua, p, (ticket, ok, admin): (LuaString, bool, Option<bool>)| {
            outcome(lua, || {
                p.0.finish_login_now_or_later(text(&ticket, "ticket")?, ok, admin.unwrap_or(false)).map(LuaNowOrLater)
            })
        });
        m.add_method("finish_account", |lua, p, (ticket, result): (LuaString, LuaValue)| {
            serialized(lua, || {
                let result: AccountResult = from_lua(lua, result)?;
                Ok(p.0.finish_account(&text(&ticket, "ticket")?, &result))
            })
        });
    }
}

pub fn add_methods<M: LuaUserDataMethods<Handle>>(m: &mut M) {
    m.add_method("panel", |lua, h, options: Option<LuaTable>| {
        outcome(lua, || {
            let mut o = PanelOptions::default();
            if let Some(options) = options {
                if let Some(base) = options.get::<Option<LuaString>>("base").ok().flatten() {
                    o.base = text(&base, "base")?;
                }
            }
            Ok(LuaPanel(Panel::new(h.0.clone(), o)))
        })
    });
}
