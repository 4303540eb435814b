//! `h:account_removed(domain, username)`: the server removed an account; returns
//! `{invites_revoked, upload_limits_cleared}`.

use mlua::prelude::*;

use crate::convert::serialized;
use crate::handle::Handle;

pub fn add_methods<M: LuaUserDataMethods<Handle>>(m: &mut M) {
    m.add_method("account_removed", |lua, h, (domain, username): (String, String)| {
        serialized(lua, || h.0.account_removed(&domain, &username))
    });
}
