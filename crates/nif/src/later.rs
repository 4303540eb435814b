//! Work the core runs on its worker thread (DNS checks, upload upkeep, housekeeping): the NIF returns `ok` at
//! once and the calling process later receives `{xmpp_hosting_result, Tag, {ok, Result} |
//! {error, {Code, Message}}}`, so no scheduler ever waits for it. `Tag` is any integer the caller
//! picks to match the answer.

use rustler::env::OwnedEnv;
use rustler::{Encoder, Env, LocalPid, NifResult, Term};
use serde::Serialize;
use xmpp_hosting_core::{Error, Pending};

use crate::atoms;
use crate::error::error_term;
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
    pending.on_done(move |result| {
        let send = move || {
            let mut env = OwnedEnv::new();
            // A process that has exited cannot be told; nothing else is waiting for the answer.
            let _ = env.send_and_clear(&pid, |env| {
                let body = match result {
                    Ok(value) => match view(value).map_err(|_| ()).and_then(|v| to_term(env, &v).map_err(|_| ())) {
                        Ok(term) => (atoms::ok(), term).encode(env),
                        Err(()) => error_term(env, &Error::Internal("a result could not be encoded".into()))
                            .unwrap_or_else(|_| atoms::error().encode(env)),
                    },
                    Err(e) => error_term(env, &e).unwrap_or_else(|_| atoms::error().encode(env)),
                };
                message(env, body)
            });
        };
        // A result already in when the callback is registered arrives here at once, on the NIF's
        // own (scheduler) thread, where rustler refuses to send from an owned environment: a
        // short-lived thread of our own sends it instead (a quick housekeeping pass, say).
        if rustler::thread::is_scheduler_thread() {
            let _ = std::thread::Builder::new().name("xmpp-hosting-reply".into()).spawn(send);
        } else {
            send();
        }
    });
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
