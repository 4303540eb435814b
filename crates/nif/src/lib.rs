//! The Erlang NIF that ejabberd loads as module `xmpp_hosting_nif`.
//!
//! Every function is a thin wrapper over [`xmpp_hosting_core::Hosting`]: decode the arguments (a
//! wrong type is `badarg`), run the core on a dirty I/O scheduler (store calls touch the disk and
//! may wait for another process's lock, which must never stall a normal scheduler), and encode the
//! answer as `{ok, V}`, `ok` or `{error, {Code, Message}}` (see [`error`]).
//!
//! One file per concept, so invites and quotas can be added as siblings of [`domains`].

mod accounts;
mod args;
mod atoms;
mod background;
mod certificates;
mod domain_users;
mod domains;
mod error;
mod handle;
mod housekeeping;
mod invites;
mod json;
mod later;
mod panel;
mod publish;
mod quotas;
mod retention;
mod verification;

/// The core library's version, so ejabberd can log which store rules it runs.
#[rustler::nif]
fn version() -> &'static str {
    xmpp_hosting_core::VERSION
}

rustler::init!("xmpp_hosting_nif");
