//! `require "xmpp_hosting"`: the core as a Lua 5.4 module for Prosody.
//!
//! Conventions, the same for every function: a result on success, or `nil, message, code` on
//! failure, where `code` is the core's stable error code ("invalid-domain", "not-found", ...),
//! so `assert(h:add_domain(name))` reads naturally. Arguments of the wrong type raise a Lua
//! error ("bad argument"), as Lua's own library functions do; text that is not UTF-8 is a bad
//! value (`nil, message, "invalid-argument"`), not a wrong type. A Rust panic never unwinds into
//! Lua: inside a core call it becomes `nil, message, "internal"` (convert.rs), anywhere else in a
//! callback mlua's own catch_unwind turns it into a Lua error.
//!
//! Every call is a short SQLite transaction on the calling thread, or work started on the core's
//! worker that comes back through a descriptor the loop watches (`pending.rs`); nothing here
//! touches Lua from another thread.

mod accounts;
mod certificates;
mod convert;
mod domain_users;
mod domains;
mod handle;
mod housekeeping;
mod invites;
mod panel;
mod pending;
mod publish;
mod quotas;
mod retention;
mod verification;

use mlua::prelude::*;

use crate::handle::Handle;

#[mlua::lua_module(name = "xmpp_hosting")]
fn xmpp_hosting(lua: &Lua) -> LuaResult<LuaTable> {
    let m = lua.create_table()?;
    m.set("version", lua.create_function(|_, ()| Ok(xmpp_hosting_core::VERSION))?)?;
    m.set(
        "open",
        // `xmpp_hosting.open(path [, {busy_timeout = seconds, lock_timeout = seconds}])`: the
        // server's own handle waits only briefly (`busy_timeout`) for another process's lock; what
        // may wait longer goes to the core's worker, which waits `lock_timeout` (the core checks it).
        lua.create_function(|lua, (path, options): (LuaString, Option<LuaTable>)| {
            convert::outcome(lua, || {
                let seconds = |name: &str| {
                    options.as_ref().map(|o| o.get::<Option<f64>>(name)).transpose().map(Option::flatten).map_err(|e| {
                        xmpp_hosting_core::Error::InvalidArgument(format!("{name} must be a number of seconds: {e}"))
                    })
                };
                let (busy_timeout, lock_timeout) = (seconds("busy_timeout")?, seconds("lock_timeout")?);
                Handle::open(&convert::text(&path, "store path")?, busy_timeout, lock_timeout)
            })
        })?,
    )?;
    Ok(m)
}
