//! Results the core computes on its worker thread (DNS checks), handed to Lua as a userdata
//! that Prosody's event loop can watch: `p:getfd()` becomes readable when the result is in
//! (for `server.watchfd`), `p:ready()` says whether it is, `p:result()` gives it (value, or
//! `nil, message, code`). Lua is only ever touched from Prosody's own thread.
//!
//! A call tried on the loop first ([`NowOrLater`]) gives Lua its value at once, or such a pending
//! result when another process held the store's lock: the caller tells them apart by type
//! (`type(r) == "userdata"`).

use std::cell::RefCell;

use mlua::prelude::*;
use serde::Serialize;
use xmpp_hosting_core::{Error, NowOrLater, Pending};

use crate::convert::{failure, to_lua};

/// A pending core result of any serialisable type, seen as JSON.
trait JsonPending {
    fn fd(&self) -> i32;
    fn take(&self) -> Option<Result<serde_json::Value, Error>>;
}

impl<T: Serialize + Send + 'static> JsonPending for Pending<Result<T, Error>> {
    fn fd(&self) -> i32 {
        Pending::fd(self)
    }

    fn take(&self) -> Option<Result<serde_json::Value, Error>> {
        self.try_take().map(|r| r.and_then(|v| serde_json::to_value(v).map_err(|e| Error::Internal(e.to_string()))))
    }
}

/// A pending result shown to Lua through `view`: bulk operations hand Lua a summary, because
/// turning ten thousand reports into Lua tables would stall Prosody's loop for most of a second.
struct Viewed<T, F> {
    pending: Pending<Result<T, Error>>,
    view: F,
}

impl<T: Send + 'static, F: Fn(T) -> serde_json::Value> JsonPending for Viewed<T, F> {
    fn fd(&self) -> i32 {
        self.pending.fd()
    }

    fn take(&self) -> Option<Result<serde_json::Value, Error>> {
        self.pending.try_take().map(|r| r.map(&self.view))
    }
}

pub struct LuaPending {
    inner: Box<dyn JsonPending>,
    result: RefCell<Option<Result<serde_json::Value, Error>>>,
}

impl LuaPending {
    pub fn new<T: Serialize + Send + 'static>(p: Pending<Result<T, Error>>) -> Self {
        LuaPending { inner: Box::new(p), result: RefCell::new(None) }
    }

    /// Like [`LuaPending::new`], showing the result through `view`.
    pub fn viewed<T: Send + 'static>(
        p: Pending<Result<T, Error>>,
        view: impl Fn(T) -> serde_json::Value + 'static,
    ) -> Self {
        LuaPending { inner: Box::new(Viewed { pending: p, view }), result: RefCell::new(None) }
    }

    fn poll(&self) -> bool {
        let mut slot = self.result.borrow_mut();
        if slot.is_none() {
            *slot = self.inner.take();
        }
        slot.is_some()
    }
}

impl LuaUserData for LuaPending {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        m.add_method("getfd", |_, p, ()| Ok(p.inner.fd()));
        m.add_method("ready", |_, p, ()| Ok(p.poll()));
        m.add_method("result", |lua, p, ()| {
            if !p.poll() {
                return (LuaNil, "the result is not ready yet", "pending").into_lua_multi(lua);
            }
            match p.result.borrow().as_ref().expect("polled") {
                Ok(v) => to_lua(lua, v)?.into_lua_multi(lua),
                Err(e) => failure(lua, e),
            }
        });
    }
}

/// A core result given at once (as a plain Lua value) or still running on the worker (as a
/// [`LuaPending`]).
pub struct LuaNowOrLater<T>(pub NowOrLater<T>);

impl<T: Serialize + Send + 'static> IntoLua for LuaNowOrLater<T> {
    fn into_lua(self, lua: &Lua) -> LuaResult<LuaValue> {
        match self.0 {
            NowOrLater::Now(value) => to_lua(lua, &value),
            NowOrLater::Later(pending) => LuaPending::new(pending).into_lua(lua),
        }
    }
}
