//! The housekeeping pass (see the core's `housekeeping` module), for Prosody's one timer.
//!
//! `h:housekeeping({domain_recheck = 600, ...})` gives a housekeeping object with the core's
//! schedule, changed where the table says (the server's options; unknown names and bad values
//! come back as `nil, message, "invalid-argument"`). `hk:run({root, ...})` runs what is due on
//! the core's worker and returns a pending result (see `pending.rs`) whose value is the finished
//! report: `log` lines, `notices` to deliver, `next_in` seconds until the next call.
//! Before it, `hk:stale_registrations()` lists the registrations that never finished (only when
//! the invite purge is due): the server answers each from its account store, `{ {id = n,
//! account_exists = bool}, ... }`, as `run`'s second argument. `hk:due()` lists the steps due
//! now, `hk:next_in()` says when the next one is.

use std::collections::HashMap;

use mlua::prelude::*;
use xmpp_hosting_core::invites::AccountOutcome;
use xmpp_hosting_core::{Housekeeping, Schedule};

use crate::convert::{from_lua, outcome, serialized};
use crate::handle::Handle;
use crate::pending::LuaPending;

pub struct LuaHousekeeping(Housekeeping);

impl LuaUserData for LuaHousekeeping {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        m.add_method("run", |lua, hk, (roots, answers): (Option<Vec<String>>, Option<LuaValue>)| {
            outcome(lua, || {
                let outcomes: Vec<AccountOutcome> = match answers {
                    Some(list @ LuaValue::Table(_)) => from_lua(lua, list)?,
                    _ => Vec::new(),
                };
                hk.0.start(roots.unwrap_or_default(), outcomes).map(LuaPending::new)
            })
        });
        m.add_method("stale_registrations", |lua, hk, ()| serialized(lua, || hk.0.stale_registrations()));
        m.add_method("due", |lua, hk, ()| serialized(lua, || Ok(hk.0.due())));
        m.add_method("next_in", |_, hk, ()| Ok(hk.0.next_in()));
        m.add_method("schedule", |lua, hk, ()| serialized(lua, || Ok(hk.0.schedule().clone())));
        // `hk:install_certificates_into(dir, "prosody"|"ejabberd")`: see certificates.rs.
        m.add_method("install_certificates_into", |lua, hk, (dir, layout): (Option<String>, Option<String>)| {
            outcome(lua, || crate::certificates::install_into(&hk.0, dir, layout))
        });
    }
}

pub fn add_methods<M: LuaUserDataMethods<Handle>>(m: &mut M) {
    m.add_method("housekeeping", |lua, h, overrides: Option<LuaValue>| {
        outcome(lua, || {
            let overrides: HashMap<String, f64> = match overrides {
                Some(table @ LuaValue::Table(_)) => from_lua(lua, table)?,
                _ => HashMap::new(),
            };
            let hk = Housekeeping::new(h.0.clone(), Schedule::with_overrides(overrides)?);
            // The Lua module is Prosody's: its pass copies the logs of Prosody's databases that
            // the retention sweeps work in, off Prosody's loop.
            hk.checkpoint_prosody_databases();
            Ok(LuaHousekeeping(hk))
        })
    });
}
