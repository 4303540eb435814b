//! Work the core runs on its worker thread (DNS checks, upload upkeep, housekeeping): the NIF returns `ok` at
//! once and the calling process later receives `{xmpp_hosting_result, Tag, {ok, Result} |
//! {error, {Code, Message}}}`, so no scheduler ever waits for it. `Tag` is any integer the caller
//! picks to match the answer.
//!
//! Store calls somebody waits for go through [`answered`] (and its kin: [`answered_unit`],
//! [`answered_as`], [`answered_whole`]): made at once when nobody else holds the store's
//! write lock, else made by the core's worker and answered by message (see [`answer`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustler::env::OwnedEnv;
use rustler::{Encoder, Env, LocalPid, NifResult, Term};
use serde::Serialize;
use xmpp_hosting_core::{locked, Answer, Error, Hosting, NowOrAnswer, Pending};

use crate::atoms;
use crate::error::{error_term, reply, reply_unit};
use crate::json::to_term;

/// Sends the pending result to `pid` as `{xmpp_hosting_result, Tag, Result}` when it is in, the
/// value shown through `view`.
fn answer_later<T: Send + 'static>(
    pid: LocalPid,
    tag: i64,
    pending: Pending<Result<T, Error>>,
    view: impl FnOnce(T) -> Result<serde_json::Value, serde_json::Error> + Send + 'static,
) {
    send_when_done(pid, pending, view, move |env, body| (atoms::xmpp_hosting_result(), tag, body).encode(env));
}

/// Sends the pending result to `pid` when it is in: `message` wraps the result, `{ok, Value}`
/// (the value shown through `view`) or `{error, {Code, Message}}`, into what is sent.
pub(crate) fn send_when_done<T: Send + 'static>(
    pid: LocalPid,
    pending: Pending<Result<T, Error>>,
    view: impl FnOnce(T) -> Result<serde_json::Value, serde_json::Error> + Send + 'static,
    message: impl for<'e> FnOnce(Env<'e>, Term<'e>) -> Term<'e> + Send + 'static,
) {
    send_result(pid, pending, move |env, result| {
        let body = match result {
            Ok(value) => match view(value).map_err(|_| ()).and_then(|v| to_term(env, &v).map_err(|_| ())) {
                Ok(term) => (atoms::ok(), term).encode(env),
                Err(()) => unencodable(env),
            },
            Err(e) => error_term(env, &e).unwrap_or_else(|_| atoms::error().encode(env)),
        };
        message(env, body)
    });
}

/// `{error, {internal, _}}`, for a result that could not be encoded.
fn unencodable(env: Env<'_>) -> Term<'_> {
    error_term(env, &Error::Internal("a result could not be encoded".into()))
        .unwrap_or_else(|_| atoms::error().encode(env))
}

/// Sends `message` of the pending result to `pid` when it is in: the one place that sends from
/// the core's worker.
fn send_result<T: Send + 'static>(
    pid: LocalPid,
    pending: Pending<Result<T, Error>>,
    message: impl for<'e> FnOnce(Env<'e>, Result<T, Error>) -> Term<'e> + Send + 'static,
) {
    deliver(pending, move |result| send(pid, message, result));
}

/// `message` of `result`, sent to `pid`.
fn send<T>(pid: LocalPid, message: impl for<'e> FnOnce(Env<'e>, T) -> Term<'e>, result: T) {
    let mut env = OwnedEnv::new();
    // A process that has exited cannot be told; nothing else is waiting for the answer.
    let _ = env.send_and_clear(&pid, |env| message(env, result));
}

/// Hands the pending result to `then` when it is in.
fn deliver<T: Send + 'static>(
    pending: Pending<Result<T, Error>>,
    then: impl FnOnce(Result<T, Error>) + Send + 'static,
) {
    pending.on_done(move |result| {
        // A result already in when the callback is registered arrives here at once, on the NIF's
        // own (scheduler) thread, where rustler refuses to send from an owned environment: a
        // short-lived thread of our own sends it instead (a quick housekeeping pass, say).
        if rustler::thread::is_scheduler_thread() {
            let _ = std::thread::Builder::new().name("xmpp-hosting-reply".into()).spawn(move || then(result));
        } else {
            then(result);
        }
    });
}

/// The last moment an answer of [`answer`] is sent (the core's [`Answer::sent_by`]): after it,
/// its caller may have stopped waiting.
#[derive(Clone, Copy)]
struct Deadline(Instant);

impl Deadline {
    fn passed(self) -> bool {
        Instant::now() >= self.0
    }
}

/// The tags of the answers handed to the worker whose caller has not given up, until the worker
/// sends one or its caller gives up (`answer_given_up/1`). The worker takes its tag out only to
/// send (an answer past its [`Deadline`] leaves it, for the caller who is about to give up), and
/// the caller takes it out to give up: under this lock exactly one of them decides, so the worker
/// sends only an answer whose caller still waits, and a caller that gave up knows whether an
/// answer is on its way (it then takes it, so that no message is left in the mailbox: a
/// gen_server such as mod_http_upload's, which lives as long as its host, would log it as
/// unexpected, and a slot it granted would stay reserved). A time check alone left a window: a
/// send decided just before the deadline could arrive after the caller stopped waiting.
static HANDED: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

rustler::atoms! {
    xmpp_hosting_later,
    xmpp_hosting_answer,
    gave_up,
    sent,
}

/// `answer_given_up(Tag)` -> `gave_up` | `sent`: the caller of an answer by message stops
/// waiting for it (`xmpp_hosting_nif:answer/1`, past its time): `gave_up` when no answer was sent
/// (none will be: a success that comes later is undone), `sent` when it is on its way (the
/// caller takes it after all). Quick: a lock and a map lookup.
#[rustler::nif]
fn answer_given_up(tag: u64) -> rustler::Atom {
    if locked(&HANDED).remove(&tag) {
        gave_up()
    } else {
        sent()
    }
}

/// Tags of the answers [`answer`] sends, unique in the node while the library is loaded (the
/// caller's own `{xmpp_hosting_result, Tag, _}` tags are its own, and another message name keeps
/// them apart).
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

/// A store call somebody waits for (an ejabberdctl command, a registration, a slot decision),
/// made without any scheduler waiting for another process's lock: `call` is tried at once
/// without waiting ([`Hosting::now_or_answer`]), and its answer (`whole`: `{ok, V}`, `ok` or the
/// error term) returned; when another process (the CLI, Prosody, a backup) holds the store's
/// write lock, the core's worker makes it once the lock is free, and the NIF returns
/// `{xmpp_hosting_later, Tag, Ms, Unanswered}` at once: the calling process then receives
/// `{xmpp_hosting_answer, Tag, Answer}`, the same answer, within `Ms` milliseconds
/// (`xmpp_hosting_nif:answer/1` waits for it in `receive`), or never: an answer that would come
/// after its caller's [`Deadline`], or after the caller gave up ([`HANDED`]), is not sent, and
/// the caller answers `Unanswered`, the core's [`Answer::unanswered`] through `whole`. Before, such calls
/// waited up to the 2 s busy timeout on a dirty I/O scheduler, and a few dozen at once occupied
/// every one (OTP's file I/O runs there too), stalling the node.
/// `wait`: how long the worker may wait for the lock (see [`Waiter`]). `undo_late`:
/// what gives back a successful call's effect when its answer came too late to be sent (the
/// caller was told it failed), given the server's handle on the worker's thread: it must not
/// wait for the lock there (see [`Hosting::now_or_in_background`]).
fn answer<'a, T, F, W>(
    env: Env<'a>,
    hosting: &Hosting,
    call: F,
    whole: W,
    wait: Duration,
    undo_late: Option<fn(&Hosting, &T)>,
) -> NifResult<Term<'a>>
where
    T: Send + 'static,
    F: FnOnce(&Hosting) -> Result<T, Error> + Clone + Send + 'static,
    W: for<'e> FnOnce(Env<'e>, Result<T, Error>) -> NifResult<Term<'e>> + Clone + Send + 'static,
{
    match hosting.now_or_answer(call, wait) {
        Ok(NowOrAnswer::Now(value)) => whole(env, Ok(value)),
        Ok(NowOrAnswer::Later(later)) => {
            let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
            // Never an early return here: the call is on the worker already, and its answer (or
            // the undo of a late success) must still be settled through HANDED.
            let unanswered = whole.clone()(env, Err(later.unanswered())).unwrap_or_else(|_| unencodable(env));
            let Answer { pending, within, sent_by } = later;
            let deadline = Deadline(sent_by);
            let (pid, hosting) = (env.pid(), hosting.clone());
            locked(&HANDED).insert(tag);
            deliver(pending, move |result| {
                // Past its time the tag stays: the caller is about to give up and takes it out.
                // Not there: the caller gave up first.
                let send_it = {
                    let mut handed = locked(&HANDED);
                    !deadline.passed() && handed.remove(&tag)
                };
                if send_it {
                    send(
                        pid,
                        move |env, result| {
                            let answer = whole(env, result).unwrap_or_else(|_| unencodable(env));
                            (xmpp_hosting_answer(), tag, answer).encode(env)
                        },
                        result,
                    );
                } else if let (Some(undo), Ok(value)) = (undo_late, &result) {
                    undo(&hosting, value);
                }
            });
            let ms = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
            Ok((xmpp_hosting_later(), tag, ms, unanswered).encode(env))
        }
        Err(e) => whole(env, Err(e)),
    }
}

/// [`answer`] for a call answered `{ok, V}`, `V` from `encode`, whose caller may wait as long as
/// the core's worker waits for the lock (a command's process, a client's own session).
pub fn answered<'a, T, F, E>(env: Env<'a>, hosting: &Hosting, call: F, encode: E) -> NifResult<Term<'a>>
where
    T: Send + 'static,
    F: FnOnce(&Hosting) -> Result<T, Error> + Clone + Send + 'static,
    E: for<'e> FnOnce(Env<'e>, T) -> NifResult<Term<'e>> + Clone + Send + 'static,
{
    answered_as(env, hosting, call, encode, Waiter::Patient, None)
}

/// How long the caller of [`answered_as`] waits for an answer handed to the worker.
#[derive(Clone, Copy)]
pub enum Waiter {
    /// As long as the core's worker waits for the lock: a command's process, a client's own
    /// session.
    Patient,
    /// A caller that serves others while it waits: mod_http_upload's one process per host decides
    /// every slot there and serves its downloads and uploads (which give up on it after 5 s), so
    /// it waits no longer than a call on its own thread did before (the busy timeout, 2 s), and a
    /// grace.
    Serving,
}

/// [`answered`] for a caller that waits as `waiter` says, and, for a call whose success holds
/// something for its caller (an invite's use for a registration, a slot's reservation),
/// `undo_late` to give it back when the answer came too late to be sent (see [`answer`]): the
/// caller, told the store did not answer, will not finish it.
pub fn answered_as<'a, T, F, E>(
    env: Env<'a>,
    hosting: &Hosting,
    call: F,
    encode: E,
    waiter: Waiter,
    undo_late: Option<fn(&Hosting, &T)>,
) -> NifResult<Term<'a>>
where
    T: Send + 'static,
    F: FnOnce(&Hosting) -> Result<T, Error> + Clone + Send + 'static,
    E: for<'e> FnOnce(Env<'e>, T) -> NifResult<Term<'e>> + Clone + Send + 'static,
{
    let wait = match waiter {
        Waiter::Patient => hosting.worker_wait(),
        Waiter::Serving => hosting.caller_wait(),
    };
    answer(env, hosting, call, move |env, result| reply(env, result, encode), wait, undo_late)
}

/// [`answered`] for a call answered bare `ok`.
pub fn answered_unit<'a, F>(env: Env<'a>, hosting: &Hosting, call: F) -> NifResult<Term<'a>>
where
    F: FnOnce(&Hosting) -> Result<(), Error> + Clone + Send + 'static,
{
    answer(env, hosting, call, reply_unit, hosting.worker_wait(), None)
}

/// [`answered`] for a call whose answer is its own term, errors included (the web panel's: every
/// outcome is an HTTP response, a store that did not answer a 503 like any other failure), made
/// by `whole` from the result.
pub fn answered_whole<'a, T, F, W>(env: Env<'a>, hosting: &Hosting, call: F, whole: W) -> NifResult<Term<'a>>
where
    T: Send + 'static,
    F: FnOnce(&Hosting) -> Result<T, Error> + Clone + Send + 'static,
    W: for<'e> FnOnce(Env<'e>, Result<T, Error>) -> NifResult<Term<'e>> + Clone + Send + 'static,
{
    answer(env, hosting, call, whole, hosting.worker_wait(), None)
}

/// `ok` once the work is on the worker (the answer follows as a message), or the error that
/// kept it from starting.
pub fn started<'a, T: Serialize + Send + 'static>(
    env: Env<'a>,
    tag: i64,
    start: Result<Pending<Result<T, Error>>, Error>,
) -> NifResult<Term<'a>> {
    match start {
        Ok(pending) => {
            answer_later(env.pid(), tag, pending, |v| serde_json::to_value(&v));
            Ok(atoms::ok().encode(env))
        }
        Err(e) => error_term(env, &e),
    }
}

/// Like [`started`], the result shown through `view` (a claim with its sentence, say).
pub fn started_viewed<'a, T: Send + 'static, V: Serialize>(
    env: Env<'a>,
    tag: i64,
    start: Result<Pending<Result<T, Error>>, Error>,
    view: impl FnOnce(T) -> V + Send + 'static,
) -> NifResult<Term<'a>> {
    match start {
        Ok(pending) => {
            answer_later(env.pid(), tag, pending, move |v| serde_json::to_value(view(v)));
            Ok(atoms::ok().encode(env))
        }
        Err(e) => error_term(env, &e),
    }
}
