//! The one place where core errors become Erlang terms.
//!
//! `{error, {Code, Message}}`: `Code` is the core's stable [`Error::code`] with `-` turned into
//! `_` (so `invalid-domain` becomes the atom `invalid_domain`), `Message` the human-readable text
//! as a UTF-8 binary. New core error variants therefore need no change here. The set of codes is
//! fixed by the core, so creating atoms from them cannot exhaust the atom table.

use rustler::{Atom, Encoder, Env, NifResult, Term};
use xmpp_hosting_core::Error;

use crate::atoms;

/// `{error, {Code, Message}}` for a core error.
pub fn error_term<'a>(env: Env<'a>, err: &Error) -> NifResult<Term<'a>> {
    let code = Atom::from_str(env, &code_atom_name(err.code()))?;
    Ok((atoms::error(), (code, err.to_string())).encode(env))
}

/// `{ok, Value}` for a success, [`error_term`] for a failure.
pub fn reply<'a, T>(
    env: Env<'a>,
    result: Result<T, Error>,
    encode: impl FnOnce(Env<'a>, T) -> NifResult<Term<'a>>,
) -> NifResult<Term<'a>> {
    match result {
        Ok(value) => Ok((atoms::ok(), encode(env, value)?).encode(env)),
        Err(err) => error_term(env, &err),
    }
}

/// Bare `ok` for a success that has nothing to return.
pub fn reply_unit<'a>(env: Env<'a>, result: Result<(), Error>) -> NifResult<Term<'a>> {
    match result {
        Ok(()) => Ok(atoms::ok().encode(env)),
        Err(err) => error_term(env, &err),
    }
}

fn code_atom_name(code: &str) -> String {
    code.replace('-', "_")
}
