//! Retention, as methods of the store handle (see the core's `retention` module).
//!
//! `h:retention_policy(domain)` -> `{archive, muc, uploads, backups}` (periods as written,
//! "never" for no expiry); `h:set_retention(domain, what, value)` -> the policy;
//! `h:set_user_archive_retention(domain, user, value_or_nil)` and
//! `h:user_archive_retention(domain, user)` -> the period kept for that user's archive;
//! `h:start_retention_sweep(domain, kind, {dry_run = bool, upload_roots = {...}})` -> a pending
//! result (the sweep runs on the core's worker, never on Prosody's loop) whose value is the
//! sweep's audit record plus `text` (it in the core's words); `h:retention_log(domain_or_nil,
//! limit_or_nil)` -> records, newest first; `h:describe_retention(domain)` and
//! `h:describe_retention_log(domain_or_nil, limit_or_nil)` -> the same in words.
//!
//! Prosody's archives: `h:register_archive_store(domain, kind, server_host, backend, location_or_nil,
//! store)` says where a host's archive lives (`prosody_sql` with the database file, or
//! `prosody_internal`); `h:archive_stores(domain, kind)` lists them; `h:server_expiry_conflict(domain,
//! kind, server_host, option, value_or_nil)` -> nil or `{level, text}` (Prosody's own expiry next to
//! the policy); `h:begin_driven_sweep(domain, kind, dry_run_or_nil)` -> the first step for Prosody
//! to run through its storage API (a dry run's steps have `dry_run` set: count, delete nothing), `h:driven_step_done(sweep_id, {deleted, failures, next, took_us, batch})` ->
//! `{record, next}` (`record.text` in the core's words; `next` nil once the sweep ended);
//! `h:prosody_sql_gate(path)` -> a gate (`gate:enter()`, `gate:leave()`) Prosody's loop passes
//! for each transaction on its database, so the core's sweep steps there take turns with it;
//! `gate:autocheckpoint()` -> the `wal_autocheckpoint` Prosody's connections to it are given.

use mlua::prelude::*;
use std::sync::Arc;

use xmpp_hosting_core::retention::prosody_archive::{loop_gate, LoopGate};
use xmpp_hosting_core::retention::{DrivenDone, DrivenOutcome, Kind, SweepOptions};
use xmpp_hosting_core::NowOrLater;

use crate::convert::{from_lua, outcome, serialized};
use crate::handle::Handle;
use crate::pending::{LuaNowOrLater, LuaPending};

/// A step's outcome as Lua sees it: `record.text` is the record in the core's words.
fn driven_outcome(out: DrivenOutcome) -> Result<serde_json::Value, xmpp_hosting_core::Error> {
    let text = out.record.describe();
    let mut value = serde_json::to_value(&out).map_err(|e| xmpp_hosting_core::Error::Internal(e.to_string()))?;
    value["record"]["text"] = text.into();
    Ok(value)
}

/// Prosody's loop's side of the core's `LoopGate` on one of its databases: `gate:enter()` before
/// a transaction on it (waits for a sweep step under way to commit, a few milliseconds at most;
/// returns the seconds waited), `gate:leave()` after it, whatever its outcome. While the loop is
/// between the two, no sweep step begins in that database. `gate:autocheckpoint()`: the log length
/// at which Prosody's connections to it may checkpoint, above the sweep's own.
struct LuaGate(Arc<LoopGate>);

impl LuaUserData for LuaGate {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        m.add_method("enter", |_, g, ()| Ok(g.0.enter().as_secs_f64()));
        m.add_method("leave", |_, g, ()| {
            g.0.leave();
            Ok(())
        });
        m.add_method("autocheckpoint", |_, g, ()| Ok(g.0.prosody_autocheckpoint()));
    }
}

pub fn add_methods<M: LuaUserDataMethods<Handle>>(m: &mut M) {
    m.add_method("retention_policy", |lua, h, domain: String| serialized(lua, || h.0.retention_policy(&domain)));
    m.add_method("set_retention", |lua, h, (domain, what, value): (String, String, String)| {
        serialized(lua, || h.0.set_retention(&domain, &what, &value))
    });
    m.add_method("set_user_archive_retention", |lua, h, (domain, user, value): (String, String, Option<String>)| {
        outcome(lua, || {
            h.0.set_user_archive_retention(&domain, &user, value.as_deref())?;
            h.0.user_archive_retention(&domain, &user).map(|p| p.to_string())
        })
    });
    // Both for the admin shell on Prosody's loop: the answer at once, or a pending result while
    // another process holds the store's write lock (see pending.rs).
    m.add_method("set_retention_or_later", |lua, h, (domain, what, value): (String, String, String)| {
        outcome(lua, || h.0.now_or_later(move |w| w.set_retention(&domain, &what, &value)).map(LuaNowOrLater))
    });
    m.add_method(
        "set_user_archive_retention_or_later",
        |lua, h, (domain, user, value): (String, String, Option<String>)| {
            outcome(lua, || {
                h.0.now_or_later(move |w| {
                    w.set_user_archive_retention(&domain, &user, value.as_deref())?;
                    w.user_archive_retention(&domain, &user).map(|p| p.to_string())
                })
                .map(LuaNowOrLater)
            })
        },
    );
    m.add_method("user_archive_retention", |lua, h, (domain, user): (String, String)| {
        outcome(lua, || h.0.user_archive_retention(&domain, &user).map(|p| p.to_string()))
    });
    m.add_method("start_retention_sweep", |lua, h, (domain, kind, options): (String, String, Option<LuaTable>)| {
        let dry_run = options.as_ref().map(|o| o.get::<Option<bool>>("dry_run")).transpose()?.flatten();
        let roots = options.as_ref().map(|o| o.get::<Option<Vec<String>>>("upload_roots")).transpose()?.flatten();
        outcome(lua, || {
            let options = SweepOptions { dry_run: dry_run.unwrap_or(false), ..Default::default() };
            // The record, and `text`: it in the core's words.
            h.0.start_retention_sweep(domain, Kind::parse(&kind)?, roots.unwrap_or_default(), options).map(|p| {
                LuaPending::viewed(p, |rec| {
                    let text = rec.describe();
                    let mut value = serde_json::to_value(rec).expect("records serialise");
                    value["text"] = text.into();
                    value
                })
            })
        })
    });
    // `h:describe_retention(domain)`: the policy in the core's words, for the admin commands.
    m.add_method("describe_retention", |lua, h, domain: String| {
        outcome(lua, || h.0.retention_policy(&domain).map(|p| p.describe()))
    });
    // `h:describe_retention_log(domain_or_nil, limit_or_nil)`: one record a line (errors below).
    m.add_method("describe_retention_log", |lua, h, (domain, limit): (Option<String>, Option<u32>)| {
        outcome(lua, || {
            let log = h.0.retention_log(domain.as_deref(), limit.unwrap_or(20))?;
            Ok(if log.is_empty() {
                "No sweep yet".to_string()
            } else {
                log.iter().map(|s| s.describe()).collect::<Vec<_>>().join("\n")
            })
        })
    });
    m.add_method(
        "register_archive_store",
        |lua, h, (domain, kind, host, backend, location, store): (String, String, String, String, Option<String>, String)| {
            serialized(lua, || {
                h.0.register_archive_store(&domain, Kind::parse(&kind)?, &host, &backend, location.as_deref(), &store)
            })
        },
    );
    // Prosody's loop calls the next three (at load, from the housekeeping pass's event, from a
    // step's timer): the answer at once, or a pending result while another process holds the
    // store's write lock (see pending.rs), so the loop never waits for it. The registration is
    // tried by the worker until the lock is free (`now_or_in_background`).
    m.add_method(
        "register_archive_store_or_later",
        |lua, h, (domain, kind, host, backend, location, store): (String, String, String, String, Option<String>, String)| {
            outcome(lua, || {
                let kind = Kind::parse(&kind)?;
                h.0.now_or_in_background(move |w| {
                    w.register_archive_store(&domain, kind, &host, &backend, location.as_deref(), &store)
                })
                .map(LuaNowOrLater)
            })
        },
    );
    m.add_method("begin_driven_sweep_or_later", |lua, h, (domain, kind, dry_run): (String, String, Option<bool>)| {
        outcome(lua, || {
            let kind = Kind::parse(&kind)?;
            let dry_run = dry_run.unwrap_or(false);
            h.0.now_or_later(move |w| {
                if dry_run {
                    w.begin_driven_dry_run(&domain, kind)
                } else {
                    w.begin_driven_sweep(&domain, kind)
                }
            })
            .map(LuaNowOrLater)
        })
    });
    m.add_method("driven_step_done_or_later", |lua, h, (sweep, done): (i64, LuaValue)| {
        let done: Result<DrivenDone, _> = from_lua(lua, done);
        outcome(lua, || {
            let done = done?;
            let call = move |w: &xmpp_hosting_core::Hosting| driven_outcome(w.driven_step_done(sweep, done.clone())?);
            if sweep < 0 {
                // A dry run's last step takes its record out of the process's list of dry runs
                // before writing it: tried on the loop and failing on the lock, it could not be
                // tried again. Its steps go to the worker, which waits for the lock.
                h.0.later(call).map(|p| LuaNowOrLater(NowOrLater::Later(p)))
            } else {
                h.0.now_or_later(call).map(LuaNowOrLater)
            }
        })
    });
    m.add_method("archive_stores", |lua, h, (domain, kind): (String, String)| {
        serialized(lua, || h.0.archive_stores(&domain, Kind::parse(&kind)?))
    });
    m.add_method(
        "server_expiry_conflict",
        |lua, h, (domain, kind, host, option, value): (String, String, String, String, Option<String>)| {
            serialized(lua, || {
                h.0.server_expiry_conflict(&domain, Kind::parse(&kind)?, &host, &option, value.as_deref())
            })
        },
    );
    m.add_method("begin_driven_sweep", |lua, h, (domain, kind, dry_run): (String, String, Option<bool>)| {
        serialized(lua, || {
            let kind = Kind::parse(&kind)?;
            if dry_run.unwrap_or(false) {
                h.0.begin_driven_dry_run(&domain, kind)
            } else {
                h.0.begin_driven_sweep(&domain, kind)
            }
        })
    });
    m.add_method("driven_step_done", |lua, h, (sweep, done): (i64, LuaValue)| {
        let done: Result<DrivenDone, _> = from_lua(lua, done);
        outcome(lua, || {
            let value = driven_outcome(h.0.driven_step_done(sweep, done?)?)?;
            crate::convert::to_lua(lua, &value).map_err(|e| xmpp_hosting_core::Error::Internal(e.to_string()))
        })
    });
    // `h:prosody_sql_gate(path)`: the gate of Prosody's database `path` in this process (see
    // LuaGate); mod_xmpp_hosting_retention wraps the SQL engine's transactions with it.
    m.add_method("prosody_sql_gate", |_, _h, path: String| Ok(LuaGate(loop_gate(&path))));
    m.add_method("retention_log", |lua, h, (domain, limit): (Option<String>, Option<u32>)| {
        serialized(lua, || h.0.retention_log(domain.as_deref(), limit.unwrap_or(20)))
    });
}
