//! Writes nobody waits for, made without any scheduler waiting for another process's lock.
//!
//! `background(H, Write, Reporter, What)`: `Write` is one of
//! - `{account_removed, Domain, User}`: an account removed in the node loses its invites and
//!   upload exceptions (`{ok, #{invites_revoked, upload_limits_cleared}}`);
//! - `{record_activity, Domain, User}`: a login, for the active-account counts (`{ok, null}`);
//! - `{ensure_hosted, Domain}`: a host that loads the invite module is hosted
//!   (`{ok, #{domain, added, log}}`);
//! - `{commit_keyed_upload, SlotKey, Bytes, FileId}`: a finished upload counted (`{ok, null}`);
//! - `{release_keyed_upload, SlotKey, Bytes}`: a failed upload's reservation given back
//!   (`{ok, Released}`);
//! - `{register_archive_store, Domain, Kind, ServerHost, Backend, Location | undefined, Store}`:
//!   where ejabberd keeps a hosted domain's archive of a kind, so the core's housekeeping reports
//!   its sweeps (`{ok, ArchiveStore}`; retried at every housekeeping pass until it is made, each
//!   try of which waited up to the 2 s busy timeout before).
//!
//! The write is tried at once without waiting for any lock, and answered `{ok, Result}` or
//! `{error, {Code, Message}}` as the plain calls are. When another process (the CLI, Prosody on
//! the same store, a backup) holds the store's write lock, the answer is `{later,
//! lock_held_elsewhere}`: the core's worker makes the write once the lock is free, trying again
//! after pauses for minutes (`Hosting::now_or_in_background_saying_why`), each try as of the time
//! of this call. When instead another call of this node (another scheduler: all share the
//! handle) is using the handle's connection, the answer is `{later, connection_in_use}` and the
//! worker makes it the same way, usually at once; nobody else holds anything, so the module
//! does not log it as a held lock. `Reporter` then receives `{xmpp_hosting_background, Kind,
//! What, Why, {ok, Result} | {error, {Code, Message}}}` (`Kind` the write's first atom, `What`
//! the binary given here, to say it in the log, `Why` the atom `later` came with). Before,
//! these were plain calls that waited up to the busy timeout on a dirty scheduler (holding the
//! handle's connection, so other calls waited behind them) and were lost when it ran out.

use rustler::{Atom, Binary, Encoder, Env, LocalPid, NifResult, Term};
use serde_json::Value;
use xmpp_hosting_core::accounts::AccountRemovalRequest;
use xmpp_hosting_core::{Error, Hosting, LaterBecause, NowOrLaterBecause};

use crate::args::{optional_text, text};
use crate::error::error_term;
use crate::handle::Handle;
use crate::json::to_term;
use crate::later::send_when_done;

rustler::atoms! {
    later,
    xmpp_hosting_background,
    lock_held_elsewhere,
    connection_in_use,
}

/// One write of [`background`], owned so that the worker can make it again.
#[derive(Clone)]
enum Write {
    /// One request for all of the write's tries, so that a retry removes only what the store
    /// held at the first (a new account of the same name, made while another process's lock
    /// held the removal back, keeps its invites and exceptions: see the core's
    /// `AccountRemovalRequest`).
    AccountRemoved(AccountRemovalRequest),
    RecordActivity {
        domain: String,
        user: String,
    },
    EnsureHosted {
        domain: String,
    },
    CommitKeyedUpload {
        key: String,
        bytes: i64,
        file: String,
    },
    ReleaseKeyedUpload {
        key: String,
        bytes: i64,
    },
    RegisterArchiveStore {
        domain: String,
        kind: String,
        server_host: String,
        backend: String,
        location: Option<String>,
        store: String,
    },
}

impl Write {
    /// The write from its Erlang tuple, and the atom it begins with (which the reporter's
    /// message carries back: the one spelling of each write's atom is its arm below); another
    /// shape is the caller's bug (`badarg`).
    fn decode(term: Term<'_>) -> NifResult<(Write, Atom)> {
        let fields = rustler::types::tuple::get_tuple(term)?;
        let field = |i: usize| fields.get(i).copied().ok_or(rustler::Error::BadArg);
        let owned = |i: usize| -> NifResult<String> { text(&field(i)?.decode::<Binary<'_>>()?).map(str::to_owned) };
        let number = |i: usize| -> NifResult<i64> { field(i)?.decode() };
        let kind: Atom = field(0)?.decode()?;
        let write = match (kind.to_term(term.get_env()).atom_to_string()?.as_str(), fields.len()) {
            ("account_removed", 3) => Write::AccountRemoved(AccountRemovalRequest::new(&owned(1)?, &owned(2)?)),
            ("record_activity", 3) => Write::RecordActivity { domain: owned(1)?, user: owned(2)? },
            ("ensure_hosted", 2) => Write::EnsureHosted { domain: owned(1)? },
            ("commit_keyed_upload", 4) => {
                Write::CommitKeyedUpload { key: owned(1)?, bytes: number(2)?, file: owned(3)? }
            }
            ("release_keyed_upload", 3) => Write::ReleaseKeyedUpload { key: owned(1)?, bytes: number(2)? },
            ("register_archive_store", 7) => Write::RegisterArchiveStore {
                domain: owned(1)?,
                kind: owned(2)?,
                server_host: owned(3)?,
                backend: owned(4)?,
                location: optional_text(field(5)?)?.map(str::to_owned),
                store: owned(6)?,
            },
            _ => return Err(rustler::Error::BadArg),
        };
        Ok((write, kind))
    }

    /// Makes the write on `h`; the result as the plain call's.
    fn make(&self, h: &Hosting) -> Result<Value, Error> {
        fn value<T: serde::Serialize>(v: T) -> Result<Value, Error> {
            serde_json::to_value(v).map_err(|e| Error::Internal(format!("a result could not be encoded: {e}")))
        }
        match self {
            Write::AccountRemoved(request) => value(h.remove_account(request)?),
            Write::RecordActivity { domain, user } => value(h.record_activity(domain, user)?),
            Write::EnsureHosted { domain } => value(h.ensure_hosted(domain)?),
            Write::CommitKeyedUpload { key, bytes, file } => value(h.commit_keyed_upload(key, *bytes, file)?),
            Write::ReleaseKeyedUpload { key, bytes } => value(h.release_keyed_upload(key, *bytes)?),
            Write::RegisterArchiveStore { domain, kind, server_host, backend, location, store } => {
                let kind = xmpp_hosting_core::retention::Kind::parse(kind)?;
                value(h.register_archive_store(domain, kind, server_host, backend, location.as_deref(), store)?)
            }
        }
    }
}

/// `background(H, Write, Reporter, What)` -> `{ok, Result}` | `{later, Why}` | `{error, {Code, Message}}`
/// (see the module's documentation). On a dirty I/O scheduler: the try at once touches the disk,
/// but never waits for another process's lock.
#[rustler::nif(schedule = "DirtyIo")]
fn background<'a>(
    env: Env<'a>,
    handle: Handle,
    write: Term<'a>,
    reporter: LocalPid,
    what: Binary<'a>,
) -> NifResult<Term<'a>> {
    let (write, kind) = Write::decode(write)?;
    let what = String::from_utf8_lossy(what.as_slice()).into_owned();
    match handle.hosting.now_or_in_background_saying_why(move |w| write.make(w)) {
        Ok(NowOrLaterBecause::Now(value)) => Ok((rustler::types::atom::ok(), to_term(env, &value)?).encode(env)),
        Ok(NowOrLaterBecause::Later(pending, because)) => {
            let why = match because {
                LaterBecause::LockHeldElsewhere => lock_held_elsewhere(),
                LaterBecause::ConnectionInUse => connection_in_use(),
            };
            send_when_done(reporter, pending, Ok, move |env, body| {
                (xmpp_hosting_background(), kind, what.as_str(), why, body).encode(env)
            });
            Ok((later(), why).encode(env))
        }
        Err(e) => error_term(env, &e),
    }
}
