//! Hosted domains: `h:add_domain(name)`, `h:domain(name)`, `h:domains()`, `h:remove_domain(name)`,
//! `h:set_domain_setting(name, "registration.policy", "open")`. `h:add_domain_or_later`,
//! `h:set_domain_setting_or_later` and `h:remove_domain_or_later` are the same writes for
//! Prosody's loop (the admin shell): the answer at once, or a pending result while another
//! process holds the store's write lock (see pending.rs), so the loop never waits for it.

use mlua::prelude::*;

use crate::convert::{outcome, serialized, text};
use crate::handle::Handle;
use crate::pending::LuaNowOrLater;

const NAME: &str = "domain name";

pub fn add_methods<M: LuaUserDataMethods<Handle>>(m: &mut M) {
    m.add_method("add_domain", |lua, h, name: LuaString| serialized(lua, || h.0.add_domain(&text(&name, NAME)?)));
    // A domain that is not hosted is `nil` with no error, so `if h:domain(x)` reads naturally.
    m.add_method("domain", |lua, h, name: LuaString| serialized(lua, || h.0.domain(&text(&name, NAME)?)));
    m.add_method("domains", |lua, h, ()| serialized(lua, || h.0.domains()));
    m.add_method("set_domain_setting", |lua, h, (name, path, value): (LuaString, String, String)| {
        serialized(lua, || h.0.set_domain_setting(&text(&name, NAME)?, &path, &value))
    });
    // The servers' timer moves the WAL into the database so that no request pays for it.
    m.add_method("checkpoint", |lua, h, ()| serialized(lua, || h.0.checkpoint().map(|_| true)));
    m.add_method("remove_domain", |lua, h, name: LuaString| {
        serialized(lua, || h.0.remove_domain(&text(&name, NAME)?).map(|()| true))
    });
    m.add_method("add_domain_or_later", |lua, h, name: LuaString| {
        outcome(lua, || {
            let name = text(&name, NAME)?;
            h.0.now_or_later(move |w| w.add_domain(&name)).map(LuaNowOrLater)
        })
    });
    m.add_method("set_domain_setting_or_later", |lua, h, (name, path, value): (LuaString, String, String)| {
        outcome(lua, || {
            let name = text(&name, NAME)?;
            h.0.now_or_later(move |w| w.set_domain_setting(&name, &path, &value)).map(LuaNowOrLater)
        })
    });
    m.add_method("remove_domain_or_later", |lua, h, name: LuaString| {
        outcome(lua, || {
            let name = text(&name, NAME)?;
            h.0.now_or_later(move |w| w.remove_domain(&name).map(|()| true)).map(LuaNowOrLater)
        })
    });
}
