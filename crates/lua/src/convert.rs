//! The one place where core results become Lua values: `value` or `nil, message, code`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use mlua::prelude::*;
use mlua::serde::SerializeOptions;
use serde::Serialize;
use xmpp_hosting_core::Error;

/// Runs `f` and turns its outcome into Lua return values: the value, or `nil, message, code`
/// for a core error, or `nil, message, "internal"` for a panic (which must not unwind into Lua).
fn returns<T>(
    lua: &Lua,
    f: impl FnOnce() -> Result<T, Error>,
    to_lua: impl FnOnce(&Lua, T) -> LuaResult<LuaMultiValue>,
) -> LuaResult<LuaMultiValue> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => to_lua(lua, value),
        Ok(Err(e)) => failure(lua, &e),
        Err(panic) => (LuaNil, format!("internal error: {}", panic_message(&*panic)), "internal").into_lua_multi(lua),
    }
}

/// `nil, message, code` for a core error: the one mapping every binding function uses.
pub fn failure(lua: &Lua, e: &Error) -> LuaResult<LuaMultiValue> {
    (LuaNil, e.to_string(), e.code()).into_lua_multi(lua)
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// For results that are Lua values already (userdata handles).
pub fn outcome<T: IntoLua>(lua: &Lua, f: impl FnOnce() -> Result<T, Error>) -> LuaResult<LuaMultiValue> {
    returns(lua, f, |lua, v| v.into_lua_multi(lua))
}

/// For core values: they become plain Lua tables.
pub fn serialized<T: Serialize>(lua: &Lua, f: impl FnOnce() -> Result<T, Error>) -> LuaResult<LuaMultiValue> {
    returns(lua, f, |lua, v| to_lua(lua, &v)?.into_lua_multi(lua))
}

/// A core value as a plain Lua table; absent optional fields are `nil`, not a null sentinel.
pub fn to_lua<T: Serialize>(lua: &Lua, value: &T) -> LuaResult<LuaValue> {
    let opts =
        SerializeOptions::new().serialize_none_to_null(false).serialize_unit_to_null(false).set_array_metatable(false);
    lua.to_value_with(value, opts)
}

/// A string argument as text. Bytes that are not UTF-8 are a bad value, not a wrong type: they
/// give `nil, message, "invalid-argument"` like any other bad value, so an admin command can
/// print one clear line instead of a traceback.
pub fn text(value: &LuaString, what: &str) -> Result<String, Error> {
    value
        .to_str()
        .map(|s| (*s).to_owned())
        .map_err(|_| Error::InvalidArgument(format!("the {what} is not valid UTF-8")))
}

/// Reads a Lua table into a core value that knows its own defaults (e.g. `NewInvite`).
pub fn from_lua<T: serde::de::DeserializeOwned>(lua: &Lua, value: LuaValue) -> Result<T, Error> {
    lua.from_value(value).map_err(|e| Error::InvalidArgument(e.to_string()))
}
