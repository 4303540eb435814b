//! Argument decoding shared by every NIF.
//!
//! Strings cross as binaries. A string argument must be a UTF-8 binary: a list, an atom or a
//! binary that is not UTF-8 is a type error (`badarg`), the same way the core's `&str` API
//! cannot be handed bytes. Size is not limited here; the core refuses absurd inputs cheaply.

use rustler::{Binary, Error, NifResult, Term, TermType};

/// The text of a UTF-8 binary argument.
pub fn text<'a>(arg: &Binary<'a>) -> NifResult<&'a str> {
    std::str::from_utf8(arg.as_slice()).map_err(|_| Error::BadArg)
}

/// An optional string argument: a UTF-8 binary, or the atom `undefined` for none.
pub fn optional_text<'a>(arg: Term<'a>) -> NifResult<Option<&'a str>> {
    match arg.get_type() {
        TermType::Atom if arg.atom_to_string()? == "undefined" => Ok(None),
        TermType::Binary => {
            let bin: Binary<'a> = arg.decode()?;
            text(&bin).map(Some)
        }
        _ => Err(Error::BadArg),
    }
}
