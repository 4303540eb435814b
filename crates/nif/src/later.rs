//! Work the core runs on its worker thread (DNS checks, upload upkeep): the NIF returns `ok` at
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

/// Sends the pending result to `pid` as `{xmpp_hosting_result, Tag, Result}` when it is in.
fn answer_later<T: Serialize + Send + 'static>(pid: LocalPid, tag: i64, pending: Pending<Result<T, Error>>) {
    pending.on_done(move |result| {
        let mut env = OwnedEnv::new();
        // A process that has exited cannot be told; nothing else is waiting for the answer.
        let _ = env.send_and_clear(&pid, |env| {
            let body = match result {
                Ok(value) => {
                    match serde_json::to_value(&value).map_err(|_| ()).and_then(|v| to_term(env, &v).map_err(|_| ())) {
                        Ok(term) => (atoms::ok(), term).encode(env),
                        Err(()) => error_term(env, &Error::Internal("a result could not be encoded".into()))
                            .unwrap_or_else(|_| atoms::error().encode(env)),
                    }
                }
                Err(e) => error_term(env, &e).unwrap_or_else(|_| atoms::error().encode(env)),
            };
            (atoms::xmpp_hosting_result(), tag, body).encode(env)
        });
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
            answer_later(env.pid(), tag, pending);
            Ok(atoms::ok().encode(env))
        }
        Err(e) => error_term(env, &e),
    }
}
