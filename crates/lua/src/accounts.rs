//! `h:account_removed(domain, username)`: the server removed an account; returns
//! `{invites_revoked, upload_limits_cleared}`. `h:account_removed_or_later(domain, username)` is
//! the same for Prosody's loop: that table at once, or a pending result (see pending.rs) while
//! another process holds the store's write lock (nobody waits for it: the core's worker tries
//! again until the lock is free, see `Hosting::now_or_in_background`; only what the account had
//! when it was asked goes, see the core's `AccountRemovalRequest`).

use mlua::prelude::*;

use crate::convert::{outcome, serialized};
use crate::handle::Handle;
use crate::pending::LuaNowOrLater;

pub fn add_methods<M: LuaUserDataMethods<Handle>>(m: &mut M) {
    m.add_method("account_removed", |lua, h, (domain, username): (String, String)| {
        serialized(lua, || h.0.account_removed(&domain, &username))
    });
    m.add_method("account_removed_or_later", |lua, h, (domain, username): (String, String)| {
        outcome(lua, || h.0.account_removed_now_or_in_background(&domain, &username).map(LuaNowOrLater))
    });
}
