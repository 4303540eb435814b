//! The customer's web panel for mod_xmpp_hosting_panel (ejabberd's request handler): the core's
//! router, converted. The functions that touch the store run on a dirty I/O scheduler. A request and a
//! login's completion may write (a session touched or begun, a setting changed): they never wait
//! for another process's write lock there but are answered through [`answered_whole`], which
//! hands them to the core's worker while it is held, their wrappers in xmpp_hosting_nif.erl
//! waiting for the answer in `receive`. An account change's completion only reads.
//!
//! - `panel_open(H, Base)` -> `{ok, Panel}`: one per node (it keeps the running jobs and the
//!   logins waiting for ejabberd's password check);
//! - `panel_handle(Panel, Method, Path, Cookie, Csrf, ContentType, Body, Address, Tls)` ->
//!   `{respond, Status, Reason, [{Name, Value}], Body}` or `{check_password, Ticket, User, Host,
//!   Password}` for a login, which the module checks with ejabberd_auth and completes with
//! - `panel_finish_login(Panel, Ticket, PasswordOk, IsAdmin)` -> `{respond, Status, Reason, Headers, Body}`;
//! - for the users page, `panel_handle` answers `{account, Ticket, Action, Host, Username,
//!   Password, Require}` (`<<>>` for none): the module carries the change out with ejabberd_auth
//!   and completes it with `panel_finish_account(Panel, Ticket, NotServed, Existed, Done, Error,
//!   Usernames)` -> `{respond, ...}` (Error `<<>>` for none; Usernames for `list`).
//!
//! Absent headers are empty binaries.

use rustler::{Binary, Encoder, Env, NifResult, ResourceArc, Term};
use xmpp_hosting_core::panel::{AccountResult, Outcome, Panel, PanelOptions, Request, Response};
use xmpp_hosting_core::Hosting;

use crate::args::text;
use crate::error::reply;
use crate::handle::Handle;
use crate::later::answered_whole;

/// The panel, on the store handle it was opened with (`Panel::hosting`, where its calls are
/// tried at once).
pub struct PanelResource(Panel);

#[rustler::resource_impl]
impl rustler::Resource for PanelResource {}

mod atoms {
    rustler::atoms! { respond, check_password, account }
}

fn respond<'a>(env: Env<'a>, r: Response) -> Term<'a> {
    let reason = r.reason();
    let headers: Vec<(String, String)> = r.headers.into_iter().collect();
    (atoms::respond(), r.status, reason, headers, r.body).encode(env)
}

/// What the client sent, as text: bytes that are not UTF-8 (a path segment ejabberd percent-decoded,
/// a forged cookie) become U+FFFD, which matches no route, session or token, so the router answers
/// them (404, no session, 403) instead of the request failing with badarg and ejabberd dropping the
/// connection without a response.
fn sent(b: &Binary) -> String {
    String::from_utf8_lossy(b.as_slice()).into_owned()
}

/// An absent header comes as an empty binary.
fn optional(b: &Binary) -> Option<String> {
    Some(sent(b)).filter(|t| !t.is_empty())
}

#[rustler::nif(schedule = "DirtyIo")]
fn panel_open<'a>(env: Env<'a>, handle: Handle, base: Binary<'a>) -> NifResult<Term<'a>> {
    let options = PanelOptions { base: text(&base)?.to_string(), ..PanelOptions::default() };
    let panel = Panel::new(handle.hosting.clone(), options);
    reply(env, Ok(ResourceArc::new(PanelResource(panel))), |env, p| Ok(p.encode(env)))
}

fn outcome<'a>(env: Env<'a>, outcome: Outcome) -> Term<'a> {
    match outcome {
        Outcome::Respond(r) => respond(env, r),
        Outcome::CheckPassword { check_password: c } => {
            (atoms::check_password(), c.ticket, c.username, c.host, c.password).encode(env)
        }
        Outcome::Account { account: t } => {
            let or_none = |v: Option<String>| v.unwrap_or_default();
            let fields = (t.ticket, t.action, t.host, or_none(t.username), or_none(t.password));
            (atoms::account(), fields.0, fields.1, fields.2, fields.3, fields.4, t.require.unwrap_or_default())
                .encode(env)
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[rustler::nif(schedule = "DirtyIo", name = "panel_handle_nif")]
fn panel_handle<'a>(
    env: Env<'a>,
    panel: ResourceArc<PanelResource>,
    method: Binary<'a>,
    path: Binary<'a>,
    cookie: Binary<'a>,
    csrf: Binary<'a>,
    content_type: Binary<'a>,
    body: Binary<'a>,
    address: Binary<'a>,
    tls: bool,
) -> NifResult<Term<'a>> {
    let request = Request {
        method: sent(&method),
        path: sent(&path),
        cookie: optional(&cookie),
        csrf: optional(&csrf),
        content_type: optional(&content_type),
        // A body that is not UTF-8 is not JSON either: the router refuses it as such.
        body: sent(&body),
        address: text(&address)?.to_string(),
        tls,
    };
    let (on, failed) = (panel.clone(), panel.clone());
    answered_whole(
        env,
        panel.0.hosting(),
        move |h| on.0.try_handle_on(h, &request),
        move |env, answered| Ok(outcome(env, answered.unwrap_or_else(|e| Outcome::Respond(failed.0.failed(e))))),
    )
}

#[rustler::nif(schedule = "DirtyIo", name = "panel_finish_login_nif")]
fn panel_finish_login<'a>(
    env: Env<'a>,
    panel: ResourceArc<PanelResource>,
    ticket: Binary<'a>,
    password_ok: bool,
    admin: bool,
) -> NifResult<Term<'a>> {
    let ticket = text(&ticket)?.to_owned();
    let (on, failed) = (panel.clone(), panel.clone());
    let finish = move |h: &Hosting| on.0.try_finish_login_on(h, &ticket, password_ok, admin);
    answered_whole(env, panel.0.hosting(), finish, move |env, answered| {
        Ok(respond(env, answered.unwrap_or_else(|e| failed.0.failed(e))))
    })
}

#[allow(clippy::too_many_arguments)]
#[rustler::nif(schedule = "DirtyIo")]
fn panel_finish_account<'a>(
    env: Env<'a>,
    panel: ResourceArc<PanelResource>,
    ticket: Binary<'a>,
    not_served: bool,
    existed: bool,
    done: bool,
    error: Binary<'a>,
    usernames: Vec<Binary<'a>>,
) -> NifResult<Term<'a>> {
    let result = AccountResult {
        not_served,
        existed,
        done,
        error: optional(&error),
        // A username that is not UTF-8 cannot be one the core made; it shows as such, not as a crash.
        usernames: usernames.iter().map(sent).collect(),
    };
    Ok(respond(env, panel.0.finish_account(text(&ticket)?, &result)))
}
