//! Retention (see the core's `retention` module) for ejabberd: the policy, a user's own
//! shorter archive retention, sweeps on the core's worker (never on a scheduler) and the log.

use rustler::{Binary, Encoder, Env, NifResult, Term};
use xmpp_hosting_core::retention::{Kind, SweepOptions};
use xmpp_hosting_core::Hosting;

use crate::args::{optional_text, text};
use crate::error::reply;
use crate::handle::Handle;
use crate::json::serialized;
use crate::later::{answered, started, started_viewed};

/// `retention_policy(H, Domain)` -> `{ok, #{archive, muc, uploads, backups}}` (periods as
/// written, `<<"never">>` for no expiry).
#[rustler::nif(schedule = "DirtyIo")]
fn retention_policy<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.retention_policy(text(&domain)?), serialized)
}

/// `set_retention(H, Domain, What, Value)` -> `{ok, Policy}`; a period that cannot be meant is
/// `{error, {<<"invalid-argument">>, Why}}`. Behind another process's lock it is answered by
/// message (`xmpp_hosting_nif:answer/1`), as every call somebody waits for.
#[rustler::nif(schedule = "DirtyIo", name = "set_retention_nif")]
fn set_retention<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    what: Binary<'a>,
    value: Binary<'a>,
) -> NifResult<Term<'a>> {
    let (domain, what, value) = (text(&domain)?.to_owned(), text(&what)?.to_owned(), text(&value)?.to_owned());
    answered(env, &handle.hosting, move |h| h.set_retention(&domain, &what, &value), serialized)
}

/// `set_user_archive_retention(H, Domain, User, Value | undefined)` -> `{ok, Period}`: how long
/// that user's archive is kept now (answered as [`set_retention`] is).
#[rustler::nif(schedule = "DirtyIo", name = "set_user_archive_retention_nif")]
fn set_user_archive_retention<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    user: Binary<'a>,
    value: Term<'a>,
) -> NifResult<Term<'a>> {
    let (domain, user) = (text(&domain)?.to_owned(), text(&user)?.to_owned());
    let value = optional_text(value)?.map(str::to_owned);
    let set = move |h: &Hosting| {
        h.set_user_archive_retention(&domain, &user, value.as_deref())?;
        h.user_archive_retention(&domain, &user).map(|period| period.to_string())
    };
    answered(env, &handle.hosting, set, |env, period| Ok(period.encode(env)))
}

/// `retention_sweep(H, Domain, Kind, DryRun, [Root], Tag)` -> `ok`; the sweep's audit record
/// follows as a message (see `later.rs`).
#[rustler::nif(schedule = "DirtyIo")]
fn retention_sweep<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    kind: Binary<'a>,
    dry_run: bool,
    roots: Vec<Binary<'a>>,
    tag: i64,
) -> NifResult<Term<'a>> {
    let roots = roots.iter().map(|r| text(r).map(str::to_owned)).collect::<NifResult<Vec<_>>>()?;
    let domain = text(&domain)?.to_owned();
    let start = Kind::parse(text(&kind)?).and_then(|kind| {
        handle.hosting.start_retention_sweep(domain, kind, roots, SweepOptions { dry_run, ..Default::default() })
    });
    started(env, tag, start)
}

/// `retention_log(H, Domain | undefined, Limit)` -> `{ok, [Record]}`, newest first.
#[rustler::nif(schedule = "DirtyIo")]
fn retention_log<'a>(env: Env<'a>, handle: Handle, domain: Term<'a>, limit: u32) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.retention_log(optional_text(domain)?, limit), serialized)
}

// ---- ejabberd's archives ------------------------------------------------------------------
//
// A sweep of ejabberd's MAM archives runs on the core's worker like any other, but its steps
// are carried out inside ejabberd: on SQL through ejabberd's own connection (its SQLite driver
// sets no busy timeout, so a second connection's lock would fail ejabberd's own queries; queued
// on its connection a step only delays them), on Mnesia by walking `archive_msg`. The process
// that starts the sweep serves its steps: for each one the worker sends it
// `{xmpp_hosting_archive, Id, Request}` and waits for `archive_answer(Id, Answer)`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Mutex;
use std::time::Duration;

use rustler::env::OwnedEnv;
use rustler::LocalPid;
use xmpp_hosting_core::retention::ejabberd_archive::{
    ArchiveSql, ArchiveStep, ArchiveStepDone, ArchiveSteps, Batch, SqlArchive, SqlSchema,
};
use xmpp_hosting_core::{Error, Result as CoreResult};

use crate::json::{from_term, to_term};

/// How long a step may take inside ejabberd before the sweep gives up on it (and pauses, to
/// resume from the same place at the next pass). ejabberd's own SQL call timeout is 60 s.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// Steps waiting for ejabberd's answer, by request id.
static WAITING: Mutex<BTreeMap<u64, SyncSender<serde_json::Value>>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn waiting() -> std::sync::MutexGuard<'static, BTreeMap<u64, SyncSender<serde_json::Value>>> {
    xmpp_hosting_core::locked(&WAITING)
}

/// The ejabberd process that serves a sweep's steps.
struct Server {
    pid: LocalPid,
}

impl Server {
    /// Sends `request` to the process and waits for its answer (a map): `#{error => Why}` is
    /// the step's failure in ejabberd's words.
    fn ask(&self, request: serde_json::Value) -> CoreResult<serde_json::Value> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = sync_channel(1);
        waiting().insert(id, tx);
        let mut env = OwnedEnv::new();
        let sent = env.send_and_clear(&self.pid, |env| {
            let body = to_term(env, &request).unwrap_or_else(|_| crate::atoms::error().encode(env));
            (atom_archive(env), id, body).encode(env)
        });
        let answer = match sent {
            Ok(()) => rx.recv_timeout(ANSWER_WITHIN).ok(),
            Err(_) => None,
        };
        waiting().remove(&id);
        let answer = answer.ok_or_else(|| {
            Error::Internal(format!(
                "ejabberd did not carry out an archive sweep step within {} s (the sweep resumes at the next pass)",
                ANSWER_WITHIN.as_secs()
            ))
        })?;
        match answer.get("error") {
            Some(why) => Err(Error::Internal(format!(
                "ejabberd's archive storage: {}",
                why.as_str().map(str::to_owned).unwrap_or_else(|| why.to_string())
            ))),
            None => Ok(answer),
        }
    }
}

fn atom_archive(env: Env<'_>) -> Term<'_> {
    rustler::Atom::from_str(env, "xmpp_hosting_archive").map(|a| a.encode(env)).unwrap_or_else(|_| 0.encode(env))
}

/// SQL statements run through ejabberd's connection: `#{sql => Text}` answered with
/// `#{rows => [[Int]]}` (a statement that changes rows answers `[[Changed]]`).
impl ArchiveSql for Server {
    fn query(&mut self, sql: &str) -> CoreResult<Vec<Vec<i64>>> {
        let answer = self.ask(serde_json::json!({ "sql": sql }))?;
        serde_json::from_value(answer.get("rows").cloned().unwrap_or_default())
            .map_err(|e| Error::Internal(format!("ejabberd's answer to an archive query is not rows of integers: {e}")))
    }

    /// `#{batch => [Text], finally => [Text]}`, run by ejabberd as one request on its
    /// connection, answered with `#{results => [Rows], us => Micros}` (`us`: how long its
    /// connection was busy with them).
    fn batch(&mut self, statements: &[String], finally: &[String]) -> CoreResult<Batch> {
        let answer = self.ask(serde_json::json!({ "batch": statements, "finally": finally }))?;
        serde_json::from_value(answer).map_err(|e| {
            Error::Internal(format!("ejabberd's answer to archive statements is not rows of integers: {e}"))
        })
    }

    /// `#{everywhere => Text}`: ejabberd runs it on the host's connection and on that of every
    /// other host whose SQLite database is the same file.
    fn everywhere(&mut self, sql: &str) -> CoreResult<()> {
        self.ask(serde_json::json!({ "everywhere": sql })).map(|_| ())
    }
}

/// A Mnesia step: `#{step => Step}` answered with `#{matched => N, next => Cursor | null}`.
struct Mnesia(Server);

impl ArchiveSteps for Mnesia {
    fn step(&mut self, step: &ArchiveStep) -> CoreResult<ArchiveStepDone> {
        let request = serde_json::json!({ "step": step });
        let answer = self.0.ask(request)?;
        serde_json::from_value(answer)
            .map_err(|e| Error::Internal(format!("ejabberd's answer to an archive step is not a step's result: {e}")))
    }
}

/// What `retention_sweep_archive` takes as its options map.
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ArchiveSweepOptions {
    dry_run: bool,
    /// Stop (resumably) after this many milliseconds of steps.
    budget_ms: Option<u64>,
    /// Stop (resumably) after this many steps.
    max_steps: Option<u64>,
    /// `sql` or `mnesia`.
    backend: String,
    /// For `sql`: `default` or `new` (new_sql_schema).
    schema: Option<String>,
    /// For `sql`: ejabberd's `sql_type` (`sqlite`, `pgsql`, `mysql`).
    sql_type: Option<String>,
    /// For `sql` on SQLite: the database file (`ejabberd_sql:sqlite_file/1`).
    sqlite_file: Option<String>,
}

/// `retention_sweep_archive(H, Domain, Kind, Options, Tag)` -> `ok`: starts (or resumes) the sweep
/// of `Kind` (`<<"archive">>` or `<<"muc">>`) of a domain's ejabberd archives on the core's
/// worker. `Options`: `#{backend => <<"sql">> | <<"mnesia">>, schema => <<"default">> |
/// <<"new">>, sql_type => <<"sqlite">> | ..., sqlite_file => Path, dry_run => Bool, budget_ms => N,
/// max_steps => N}`. The calling process serves the
/// steps (`{xmpp_hosting_archive, Id, Request}`, answered with `archive_answer/2`) until the
/// record arrives as `{xmpp_hosting_result, Tag, {ok, Record} | {error, _}}`.
#[rustler::nif(schedule = "DirtyIo")]
fn retention_sweep_archive<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    kind: Binary<'a>,
    options: Term<'a>,
    tag: i64,
) -> NifResult<Term<'a>> {
    let options: ArchiveSweepOptions = match serde_json::from_value(from_term(options)?) {
        Ok(o) => o,
        Err(e) => return crate::error::error_term(env, &Error::InvalidArgument(format!("archive sweep options: {e}"))),
    };
    let domain = text(&domain)?.to_owned();
    let server = Server { pid: env.pid() };
    let start = Kind::parse(text(&kind)?).and_then(|kind| {
        let sweep = SweepOptions {
            dry_run: options.dry_run,
            budget: options.budget_ms.map(Duration::from_millis),
            max_steps: options.max_steps,
            ..Default::default()
        };
        let mut steps: Box<dyn ArchiveSteps> = match options.backend.as_str() {
            "sql" => {
                let schema = SqlSchema::parse(options.schema.as_deref().unwrap_or("default"))?;
                match options.sql_type.as_deref() {
                    Some("sqlite") => Box::new(SqlArchive::sqlite(schema, server, options.sqlite_file)),
                    _ => Box::new(SqlArchive::new(schema, server)),
                }
            }
            "mnesia" => Box::new(Mnesia(server)),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "{other:?} is not an ejabberd archive backend this module sweeps: sql or mnesia"
                )))
            }
        };
        handle.hosting.later(move |w| w.retention_sweep_archive(&domain, kind, steps.as_mut(), &sweep))
    });
    // The record with its line in the core's words (`text`), as the other command lines print it.
    started_viewed(env, tag, start, |rec| {
        let text = rec.describe();
        let mut value = serde_json::to_value(&rec).unwrap_or_default();
        if let Some(fields) = value.as_object_mut() {
            fields.insert("text".into(), text.into());
        }
        value
    })
}

/// `archive_answer(Id, Answer)` -> `ok`: ejabberd's answer to step `Id` (a map, see
/// [`retention_sweep_archive`]); an answer nobody waits for any more (timed out) is dropped.
#[rustler::nif]
fn archive_answer<'a>(env: Env<'a>, id: u64, answer: Term<'a>) -> NifResult<Term<'a>> {
    let value = from_term(answer)?;
    if let Some(tx) = waiting().remove(&id) {
        let _ = tx.try_send(value);
    }
    Ok(crate::atoms::ok().encode(env))
}

/// `register_archive_store(H, Domain, Kind, ServerHost, Backend, Location | undefined, Store)` ->
/// `{ok, Store}`: tells the core where ejabberd keeps a domain's archive of a kind
/// (`ejabberd_sql`, `ejabberd_mnesia`), so its housekeeping pass reports the sweep when due.
#[rustler::nif(schedule = "DirtyIo")]
#[allow(clippy::too_many_arguments)]
fn register_archive_store<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    kind: Binary<'a>,
    server_host: Binary<'a>,
    backend: Binary<'a>,
    location: Term<'a>,
    store: Binary<'a>,
) -> NifResult<Term<'a>> {
    let (domain, server_host, backend, store) = (text(&domain)?, text(&server_host)?, text(&backend)?, text(&store)?);
    let location = optional_text(location)?;
    let done = Kind::parse(text(&kind)?)
        .and_then(|kind| handle.hosting.register_archive_store(domain, kind, server_host, backend, location, store));
    reply(env, done, serialized)
}

/// `user_archive_retention(H, Domain, User)` -> `{ok, Period}`: how long that user's archive is
/// kept now (their own shorter choice, else the domain's).
#[rustler::nif(schedule = "DirtyIo")]
fn user_archive_retention<'a>(
    env: Env<'a>,
    handle: Handle,
    domain: Binary<'a>,
    user: Binary<'a>,
) -> NifResult<Term<'a>> {
    let period = handle.hosting.user_archive_retention(text(&domain)?, text(&user)?);
    reply(env, period.map(|p| p.to_string()), |env, p| Ok(p.encode(env)))
}

/// `describe_retention(H, Domain)` -> `{ok, Text}`: the policy in the core's words.
#[rustler::nif(schedule = "DirtyIo")]
fn describe_retention<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>) -> NifResult<Term<'a>> {
    let text = handle.hosting.retention_policy(text(&domain)?).map(|p| p.describe());
    reply(env, text, |env, t| Ok(t.encode(env)))
}

/// `describe_retention_log(H, Domain | undefined, Limit)` -> `{ok, [Text]}`: one line per sweep,
/// newest first, as the other command lines print them.
#[rustler::nif(schedule = "DirtyIo")]
fn describe_retention_log<'a>(env: Env<'a>, handle: Handle, domain: Term<'a>, limit: u32) -> NifResult<Term<'a>> {
    let lines = handle
        .hosting
        .retention_log(optional_text(domain)?, limit)
        .map(|records| records.iter().map(|r| r.describe()).collect::<Vec<_>>());
    reply(env, lines, |env, l| Ok(l.encode(env)))
}
