//! JSON-shaped data (domain settings) as Erlang terms.
//!
//! Settings are defined once, as serde types in the core; converting their JSON form keeps this
//! binding free of a copy of every settings field. Objects become maps whose keys are atoms when
//! they look like the core's field names (what Erlang matches on) and binaries otherwise: some
//! keys are data an admin typed (the language tags of a domain's publication: `de-CH`, or a valid
//! tag of 300 characters), and such a key as an atom would fill the never-collected atom table or
//! fail past 255 characters (then no domain could be listed). Strings become binaries, `null`
//! becomes the atom `null` so the map round-trips through jiffy/`json` encoders unchanged.
//!
//! The way back ([`from_term`]) lets Erlang hand the core a map where the core takes a serde
//! type (a new invite, say): the core's own types check the fields, so no binding repeats them.

use rustler::types::map::MapIterator;
use rustler::{Atom, Binary, Encoder, Env, Error, ListIterator, NifResult, Term, TermType};
use serde_json::{Map, Number, Value};

use crate::atoms;

pub fn to_term<'a>(env: Env<'a>, value: &Value) -> NifResult<Term<'a>> {
    Ok(match value {
        Value::Null => atoms::null().encode(env),
        Value::Bool(b) => b.encode(env),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.encode(env)
            } else if let Some(i) = n.as_i64() {
                i.encode(env)
            } else {
                // JSON has no NaN or infinity, so every other number is a finite f64.
                n.as_f64().unwrap_or_default().encode(env)
            }
        }
        Value::String(s) => s.encode(env),
        Value::Array(items) => items.iter().map(|v| to_term(env, v)).collect::<NifResult<Vec<_>>>()?.encode(env),
        Value::Object(fields) => {
            let mut keys = Vec::with_capacity(fields.len());
            let mut values = Vec::with_capacity(fields.len());
            for (k, v) in fields {
                keys.push(if is_field_name(k) { Atom::from_str(env, k)?.encode(env) } else { k.encode(env) });
                values.push(to_term(env, v)?);
            }
            Term::map_from_term_arrays(env, &keys, &values)?
        }
    })
}

/// Whether an object key is shaped like a field name of the core's types (`snake_case`, at most
/// 63 characters), and so becomes an atom.
fn is_field_name(key: &str) -> bool {
    let mut chars = key.chars();
    key.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Nesting deeper than this is refused: the inputs are small maps built by our Erlang code.
const MAX_DEPTH: usize = 16;

/// An Erlang term as JSON: maps with atom or binary keys become objects, UTF-8 binaries strings,
/// `true`/`false` booleans, `null`/`undefined` null, other atoms strings (enum values such as
/// `roster`), lists arrays. Anything else (tuples, pids, non-UTF-8 binaries) is `badarg`.
pub fn from_term(term: Term<'_>) -> NifResult<Value> {
    from_term_at(term, 0)
}

fn from_term_at(term: Term<'_>, depth: usize) -> NifResult<Value> {
    if depth > MAX_DEPTH {
        return Err(Error::BadArg);
    }
    Ok(match term.get_type() {
        TermType::Atom => match term.atom_to_string()?.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" | "undefined" => Value::Null,
            other => Value::String(other.to_string()),
        },
        TermType::Binary => Value::String(crate::args::text(&term.decode::<Binary<'_>>()?)?.to_string()),
        TermType::Integer => match term.decode::<i64>() {
            Ok(i) => Value::Number(i.into()),
            Err(_) => Value::Number(term.decode::<u64>()?.into()),
        },
        TermType::Float => Number::from_f64(term.decode::<f64>()?).map(Value::Number).ok_or(Error::BadArg)?,
        TermType::List => Value::Array(
            term.decode::<ListIterator<'_>>()?.map(|t| from_term_at(t, depth + 1)).collect::<NifResult<_>>()?,
        ),
        TermType::Map => {
            let mut object = Map::new();
            for (k, v) in MapIterator::new(term).ok_or(Error::BadArg)? {
                let key = match k.get_type() {
                    TermType::Atom => k.atom_to_string()?,
                    TermType::Binary => crate::args::text(&k.decode::<Binary<'_>>()?)?.to_string(),
                    _ => return Err(Error::BadArg),
                };
                object.insert(key, from_term_at(v, depth + 1)?);
            }
            Value::Object(object)
        }
        _ => return Err(Error::BadArg),
    })
}

/// Any core value as the JSON-shaped term above.
pub fn serialized<'a, T: serde::Serialize>(env: Env<'a>, value: T) -> NifResult<Term<'a>> {
    // Core types serialise plain data; a failure would be a core bug, reported as badarg
    // rather than a panic inside the VM.
    to_term(env, &serde_json::to_value(value).map_err(|_| Error::BadArg)?)
}
