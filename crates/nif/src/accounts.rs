//! `account_removed(H, Domain, User)` -> `{ok, #{invites_revoked, upload_limits_cleared}}`: the
//! node removed an account (ejabberd's `remove_user` hook).

use rustler::{Binary, Env, NifResult, Term};

use crate::args::text;
use crate::error::reply;
use crate::handle::Handle;
use crate::json::serialized;

#[rustler::nif(schedule = "DirtyIo")]
fn account_removed<'a>(env: Env<'a>, handle: Handle, domain: Binary<'a>, user: Binary<'a>) -> NifResult<Term<'a>> {
    reply(env, handle.hosting.account_removed(text(&domain)?, text(&user)?), serialized)
}
