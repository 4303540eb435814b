//! JSON-shaped data (domain settings) as Erlang terms.
//!
//! Settings are defined once, as serde types in the core; converting their JSON form keeps this
//! binding free of a copy of every settings field. Objects become maps with atom keys (the keys
//! are field names of the core's types, a fixed set, never user data), strings become binaries,
//! `null` becomes the atom `null` so the map round-trips through jiffy/`json` encoders unchanged.

use rustler::{Atom, Encoder, Env, NifResult, Term};
use serde_json::Value;

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
                keys.push(Atom::from_str(env, k)?.encode(env));
                values.push(to_term(env, v)?);
            }
            Term::map_from_term_arrays(env, &keys, &values)?
        }
    })
}
