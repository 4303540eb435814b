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

use mlua::prelude::*;
use xmpp_hosting_core::retention::{Kind, SweepOptions};

use crate::convert::{outcome, serialized};
use crate::handle::Handle;
use crate::pending::LuaPending;

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
    m.add_method("retention_log", |lua, h, (domain, limit): (Option<String>, Option<u32>)| {
        serialized(lua, || h.0.retention_log(domain.as_deref(), limit.unwrap_or(20)))
    });
}
