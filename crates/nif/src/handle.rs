//! The store handle Erlang holds: a [`Hosting`] inside a resource.
//!
//! The resource is reference-counted by the BEAM, so the store closes when the last process
//! holding the handle lets go of it; `Hosting` is internally synchronised, so one handle may be
//! shared by every ejabberd process.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rustler::{Binary, Env, NifResult, ResourceArc, Term};
use xmpp_hosting_core::Hosting;

use crate::error::reply;

pub struct HostingResource {
    pub hosting: Hosting,
}

#[rustler::resource_impl]
impl rustler::Resource for HostingResource {}

pub type Handle = ResourceArc<HostingResource>;

/// Opens (creating and migrating if needed) the store file. The path is a binary of raw bytes:
/// file names need not be UTF-8.
#[rustler::nif(schedule = "DirtyIo")]
fn open<'a>(env: Env<'a>, path: Binary<'a>) -> NifResult<Term<'a>> {
    let path = OsStr::from_bytes(path.as_slice());
    reply(env, Hosting::open(path), |env, hosting| {
        Ok(rustler::Encoder::encode(&ResourceArc::new(HostingResource { hosting }), env))
    })
}
