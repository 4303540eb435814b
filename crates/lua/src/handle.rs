//! The store handle userdata that `xmpp_hosting.open(path)` returns.

use mlua::prelude::*;

use xmpp_hosting_core::{Error, Hosting, OpenOptions};

pub struct Handle(pub Hosting);

impl Handle {
    /// `lock_timeout`: how long the worker's store calls wait for another process's lock
    /// (Prosody's `xmpp_hosting_store_lock_timeout`), checked by the core.
    pub fn open(path: &str, busy_timeout: Option<f64>, lock_timeout: Option<f64>) -> Result<Handle, Error> {
        let mut options = OpenOptions::default();
        if let Some(seconds) = busy_timeout {
            options.busy_timeout = xmpp_hosting_core::busy_timeout_setting(seconds)?;
        }
        if let Some(seconds) = lock_timeout {
            options.worker_busy_timeout =
                xmpp_hosting_core::lock_timeout_setting("xmpp_hosting_store_lock_timeout", seconds)?;
        }
        Ok(Handle(Hosting::open_with(path, &options)?))
    }
}

impl LuaUserData for Handle {
    fn add_methods<M: LuaUserDataMethods<Self>>(methods: &mut M) {
        crate::accounts::add_methods(methods);
        crate::certificates::add_methods(methods);
        crate::domain_users::add_methods(methods);
        crate::domains::add_methods(methods);
        crate::housekeeping::add_methods(methods);
        crate::invites::add_methods(methods);
        crate::panel::add_methods(methods);
        crate::publish::add_methods(methods);
        crate::quotas::add_methods(methods);
        crate::retention::add_methods(methods);
        crate::verification::add_methods(methods);
    }
}
