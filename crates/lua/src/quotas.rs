//! Upload quotas, as methods of the store handle, for the upload component's slot hook.
//!
//! `h:authorize_upload(domain, username, size)` takes the size as the request carried it (the
//! attribute's text, or an integer): the core parses it, so both servers refuse the same bad
//! sizes. It returns `{decision = "granted", id, size, expires_at, count_until}` or `{decision = "denied",
//! limit, limit_value, usage, retry_at, type, condition, text}`.
//!
//! `h:authorize_upload_or_later(domain, username, size)` is the same decision for Prosody's loop:
//! that table when it could be made at once, or a pending result (userdata, see `pending.rs`)
//! when another process held the store's write lock; the core's worker then decides once the
//! lock is free, and the loop never waits for it.
//!
//! `h:start_upload_upkeep({root, ...})` runs the purge and the sweep of deleted files on the
//! core's worker and returns a pending result (see `pending.rs`): Prosody's loop waits for none
//! of it.
//!
//! The upload component tells the core where a granted slot's file will land,
//! `h:watch_upload_slot(reservation, path, usable_for)`: queued in the handle and written by its
//! next slot decision's transaction, or by the next slot check, whichever comes first (the core's
//! quotas/slot_watches.rs), so a granted slot costs the loop one store write; a failure shows in
//! the next check's `watch_failures`. `h:write_upload_slot_watches_or_later()` writes what is
//! queued now (as the module unloads and the server runs on): the count, or a pending result
//! while another process holds the store's write lock. `h:write_upload_slot_watches_waiting()`
//! is for Prosody stopping: it returns the count once written, waiting (on the worker, at most
//! its lock timeout) for another process's lock; the loop serves nobody any more, and a write
//! left to the worker would be lost as the process exits. `h:watch_upload_root(root,
//! partial_suffix)` names the directory (once, at start; `h:watch_upload_root_or_later` on
//! Prosody's loop: `true`, or a pending result while another process holds the store's lock),
//! and `h:start_upload_slot_check({root})` has the worker look at the slots awaited there: files
//! finished, uploads still arriving, slots over (see the core's quotas/upkeep.rs).

use mlua::prelude::*;
use xmpp_hosting_core::quotas::{parse_upload_size, UploadDecision};
use xmpp_hosting_core::{Error, NowOrLater};

use crate::convert::{outcome, serialized, to_lua};
use crate::handle::Handle;
use crate::pending::{LuaNowOrLater, LuaPending};

/// A slot decision as the Lua table described above. A grant, the answer to nearly every slot
/// request, is built field by field: through serde (`to_lua`) it cost Prosody's loop about
/// 10 µs a request, most of what the binding adds to the core's decision. A denial goes
/// through serde as every other value.
struct Decision(UploadDecision);

impl IntoLua for Decision {
    fn into_lua(self, lua: &Lua) -> LuaResult<LuaValue> {
        let UploadDecision::Granted(r) = &self.0 else { return to_lua(lua, &self.0) };
        let t = lua.create_table_with_capacity(0, 5)?;
        t.raw_set("decision", "granted")?;
        t.raw_set("id", r.id)?;
        t.raw_set("size", r.size)?;
        t.raw_set("expires_at", r.expires_at)?;
        t.raw_set("count_until", r.count_until)?;
        Ok(LuaValue::Table(t))
    }
}

/// [`Decision`] made at once, or a pending result (whose decision comes through `to_lua`).
struct DecisionNowOrLater(NowOrLater<UploadDecision>);

impl IntoLua for DecisionNowOrLater {
    fn into_lua(self, lua: &Lua) -> LuaResult<LuaValue> {
        match self.0 {
            NowOrLater::Now(decision) => Decision(decision).into_lua(lua),
            NowOrLater::Later(pending) => LuaPending::new(pending).into_lua(lua),
        }
    }
}

fn size_of(value: &LuaValue) -> Result<i64, Error> {
    match value {
        LuaValue::Integer(n) => Ok(*n),
        LuaValue::String(s) => parse_upload_size(&s.to_string_lossy()),
        LuaValue::Nil => Err(Error::InvalidArgument("the request has no size".into())),
        other => Err(Error::InvalidArgument(format!("a size cannot be a {}", other.type_name()))),
    }
}

pub fn add_methods<M: LuaUserDataMethods<Handle>>(m: &mut M) {
    m.add_method("authorize_upload", |lua, h, (domain, username, size): (String, String, LuaValue)| {
        outcome(lua, || h.0.authorize_upload(&domain, &username, size_of(&size)?).map(Decision))
    });
    // The slot hook's call: the decision at once, or, while another process holds the store's
    // write lock, a pending result that the worker fills once it could decide (see pending.rs).
    m.add_method("authorize_upload_or_later", |lua, h, (domain, username, size): (String, String, LuaValue)| {
        outcome(lua, || h.0.authorize_upload_now_or_later(&domain, &username, size_of(&size)?).map(DecisionNowOrLater))
    });
    m.add_method("commit_upload", |lua, h, (id, bytes, file_id): (i64, i64, String)| {
        serialized(lua, || h.0.commit_upload(id, bytes, &file_id).map(|()| true))
    });
    m.add_method("release_upload", |lua, h, id: i64| serialized(lua, || h.0.release_upload(id).map(|()| true)));
    // `true` at once, or a pending result while another process holds the store's write lock:
    // the worker tries it again until the lock is free (`now_or_in_background`), since a release
    // lost would keep the bytes reserved until the reservation expires.
    m.add_method("release_upload_or_later", |lua, h, id: i64| {
        outcome(lua, || h.0.now_or_in_background(move |w| w.release_upload(id).map(|()| true)).map(LuaNowOrLater))
    });
    m.add_method("forget_file", |lua, h, file_id: String| serialized(lua, || h.0.forget_file(&file_id)));
    m.add_method("upload_usage", |lua, h, (domain, username): (String, Option<String>)| {
        serialized(lua, || h.0.upload_usage(&domain, username.as_deref()))
    });
    m.add_method("upload_report", |lua, h, (domain, username): (String, Option<String>)| {
        serialized(lua, || h.0.upload_report(&domain, username.as_deref()))
    });
    m.add_method("describe_upload_usage", |lua, h, (domain, username): (String, Option<String>)| {
        outcome(lua, || h.0.upload_report(&domain, username.as_deref()).map(|r| r.describe()))
    });
    // `h:describe_upload_quota(domain, user_or_nil)`: what an admin's `quota show` prints, the
    // scope on the first line (the same text on every command line).
    m.add_method("describe_upload_quota", |lua, h, (domain, username): (String, Option<String>)| {
        outcome(lua, || h.0.upload_quota_view(&domain, username.as_deref()).map(|v| v.describe()))
    });
    // `h:set_upload_limit(domain, user_or_nil, limit, value)`: the admin commands' one way to
    // set a limit by name (see the core); returns the scope's report.
    m.add_method(
        "set_upload_limit",
        |lua, h, (domain, username, limit, value): (String, Option<String>, String, String)| {
            serialized(lua, || h.0.set_upload_limit(&domain, username.as_deref(), &limit, &value))
        },
    );
    m.add_method("clear_user_upload_limits", |lua, h, (domain, username): (String, String)| {
        serialized(lua, || h.0.set_user_upload_limits(&domain, &username, None).map(|()| true))
    });
    // Both for the admin shell on Prosody's loop: the answer at once, or a pending result while
    // another process holds the store's write lock (see pending.rs).
    m.add_method(
        "set_upload_limit_or_later",
        |lua, h, (domain, username, limit, value): (String, Option<String>, String, String)| {
            outcome(lua, || {
                h.0.now_or_later(move |w| w.set_upload_limit(&domain, username.as_deref(), &limit, &value))
                    .map(LuaNowOrLater)
            })
        },
    );
    m.add_method("clear_user_upload_limits_or_later", |lua, h, (domain, username): (String, String)| {
        outcome(lua, || {
            h.0.now_or_later(move |w| w.set_user_upload_limits(&domain, &username, None).map(|()| true))
                .map(LuaNowOrLater)
        })
    });
    // Recounts every file (seconds for a million): on the worker, a pending result to await.
    m.add_method("start_upload_audit", |lua, h, repair: Option<bool>| {
        // `{drifts = {...}, text = "..."}`: the core words the answer, as for every server.
        let repair = repair.unwrap_or(false);
        outcome(lua, || {
            h.0.start_upload_audit(repair).map(|p| {
                LuaPending::viewed(p, move |drifts| {
                    let text = xmpp_hosting_core::texts::describe_audit(&drifts, repair);
                    serde_json::json!({ "drifts": drifts, "text": text })
                })
            })
        })
    });
    m.add_method("start_upload_upkeep", |lua, h, roots: Vec<String>| {
        outcome(lua, || h.0.start_upload_upkeep(roots).map(LuaPending::new))
    });
    m.add_method("watch_upload_slot", |lua, h, (id, path, usable_for): (i64, String, u64)| {
        outcome(lua, || h.0.queue_upload_slot_watch(id, path, usable_for).map(|()| true))
    });
    m.add_method("write_upload_slot_watches_or_later", |lua, h, ()| {
        outcome(lua, || h.0.write_upload_slot_watches_now_or_in_background().map(LuaNowOrLater))
    });
    m.add_method("write_upload_slot_watches_waiting", |lua, h, ()| {
        outcome(lua, || h.0.write_upload_slot_watches_waiting())
    });
    m.add_method("watch_upload_root", |lua, h, (root, partial_suffix): (String, Option<String>)| {
        outcome(lua, || h.0.watch_upload_root(&root, partial_suffix.as_deref().unwrap_or("")).map(|()| true))
    });
    // The same for Prosody's loop: `true` at once, or a pending result while another process
    // holds the store's write lock (see pending.rs; the worker tries until the lock is free).
    m.add_method("watch_upload_root_or_later", |lua, h, (root, partial_suffix): (String, Option<String>)| {
        let suffix = partial_suffix.unwrap_or_default();
        outcome(lua, || {
            h.0.now_or_in_background(move |w| w.watch_upload_root(&root, &suffix).map(|()| true)).map(LuaNowOrLater)
        })
    });
    m.add_method("start_upload_slot_check", |lua, h, roots: Option<Vec<String>>| {
        outcome(lua, || h.0.start_upload_slot_check(roots.unwrap_or_default()).map(LuaPending::new))
    });
}
