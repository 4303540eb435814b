//! The store handle userdata that `xmpp_hosting.open(path)` returns.

use mlua::prelude::*;
use xmpp_hosting_core::{Error, Hosting};

pub struct Handle(pub Hosting);

impl Handle {
    pub fn open(path: &str) -> Result<Handle, Error> {
        if path.is_empty() || path.contains('\0') {
            return Err(Error::InvalidArgument("the store path must be a non-empty file path".into()));
        }
        Ok(Handle(Hosting::open(path)?))
    }
}

impl LuaUserData for Handle {
    fn add_methods<M: LuaUserDataMethods<Self>>(methods: &mut M) {
        crate::accounts::add_methods(methods);
        crate::domains::add_methods(methods);
        crate::invites::add_methods(methods);
        crate::quotas::add_methods(methods);
        crate::verification::add_methods(methods);
    }
}
