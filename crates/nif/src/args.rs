//! Argument decoding shared by every NIF.
//!
//! Strings cross as binaries. A string argument must be a UTF-8 binary: a list, an atom or a
//! binary that is not UTF-8 is a type error (`badarg`), the same way the core's `&str` API
//! cannot be handed bytes. Size is not limited here; the core refuses absurd inputs cheaply.

use rustler::{Binary, Error, NifResult};

/// The text of a UTF-8 binary argument.
pub fn text<'a>(arg: &Binary<'a>) -> NifResult<&'a str> {
    std::str::from_utf8(arg.as_slice()).map_err(|_| Error::BadArg)
}
