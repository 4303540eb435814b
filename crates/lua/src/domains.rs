//! Hosted domains: `h:add_domain(name)`, `h:domain(name)`, `h:domains()`, `h:remove_domain(name)`,
//! `h:set_domain_setting(name, "registration.policy", "open")`.

use mlua::prelude::*;

use crate::convert::{serialized, text};
use crate::handle::Handle;

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
}
