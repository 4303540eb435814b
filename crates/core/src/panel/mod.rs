//! The customer's web panel (issue 16): one JSON API, implemented here once, that each server's
//! HTTP (Prosody's mod_http, ejabberd's request handlers) only converts to and from.
//!
//! A binding hands [`Panel::handle`] the request as it came (method, path under the panel's base,
//! the Cookie and X-CSRF-Token headers, the body, the peer address, whether it came over TLS) and
//! gets back either a finished [`Response`] (status, headers, body) or, for a login, a
//! [`PasswordCheck`]: the password is checked by the SERVER's own authentication, never here (the
//! core never sees stored passwords), and the binding completes the exchange with
//! [`Panel::finish_login`] and the server's verdict.
//!
//! Everything else is decided here: sessions ([`session`]), CSRF, login throttling
//! ([`throttle`]), who may see which domain ([`access`]), the routes ([`routes`]) and the
//! pages themselves ([`assets`], built into the library from `web/panel/`). Long operations
//! (verification, the DNS tester) run on the core's worker and answer with a job id the page
//! polls ([`jobs`]), so no request waits for DNS.

pub mod access;
pub mod assets;
mod certificates;
mod domains;
mod invites;
pub mod jobs;
pub mod routes;
pub mod session;
mod settings;
pub mod throttle;
mod usage;
pub mod users;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::locked::locked;
use crate::{Error, Hosting, NowOrLater, Timestamp};
use access::Role;
use routes::{Access, Handler, Route};
use session::Session;
pub use users::{AccountResult, AccountTask};

/// How a server mounts the panel.
#[derive(Debug, Clone)]
pub struct PanelOptions {
    /// The URL path the panel is served under (`/panel`); the session cookie is limited to it.
    pub base: String,
    /// Longest life of a session, whatever its use.
    pub session_lifetime: i64,
    /// A session unused this long ends.
    pub idle_timeout: i64,
}

impl Default for PanelOptions {
    fn default() -> Self {
        PanelOptions { base: "/panel".into(), session_lifetime: 12 * 3600, idle_timeout: 3600 }
    }
}

/// An HTTP request as the server received it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Request {
    pub method: String,
    /// The path under the panel's base, starting with `/` (`/api/session`, `/`).
    pub path: String,
    /// The Cookie header, as sent.
    pub cookie: Option<String>,
    /// The X-CSRF-Token header, as sent.
    pub csrf: Option<String>,
    /// The Content-Type header, as sent.
    pub content_type: Option<String>,
    pub body: String,
    /// The peer's address (what login throttling counts per address).
    pub address: String,
    /// Whether the request came over TLS (the cookie is then `Secure`).
    pub tls: bool,
}

/// What to send back. Header names are lower case; a binding writes them as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Response {
    /// The status line's reason phrase, for servers whose HTTP layer knows only some codes
    /// (ejabberd 23.01's has no phrase for 422 or 429 and fails the request without one).
    pub fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            301 => "Moved Permanently",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            415 => "Unsupported Media Type",
            422 => "Unprocessable Content",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        }
    }
}

/// A login's password, to be checked by the server's own authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PasswordCheck {
    /// Hand it back to [`Panel::finish_login`] with the verdict.
    pub ticket: String,
    pub username: String,
    pub host: String,
    pub password: String,
}

/// What [`Panel::handle`] asks of the binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Respond(Response),
    CheckPassword {
        check_password: PasswordCheck,
    },
    /// Carry out an account change with the server's own account API, then
    /// [`Panel::finish_account`].
    Account {
        account: AccountTask,
    },
}

/// The panel of one server: the store (where jobs are kept, see `jobs.rs`), and what lives only as
/// long as the server (logins and account changes waiting for the server's verdict). A clone
/// shares that state: [`Panel::handle_now_or_later`] answers with a clone on the worker's handle.
#[derive(Clone)]
pub struct Panel {
    hosting: Hosting,
    options: PanelOptions,
    jobs: Arc<jobs::Jobs>,
    logins: Arc<Mutex<HashMap<String, session::LoginTicket>>>,
    /// Account changes handed to the server and not yet finished.
    accounts: Arc<users::Tasks>,
}

/// A refusal or failure, as the API answers it: `{"error": code, "message": text}`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub retry_after: Option<i64>,
    /// The store error, when another connection held the lock the request needed: during a
    /// [`Hosting::now_or_later`] attempt the request is then answered again on the worker.
    pub busy: Option<Box<Error>>,
}

impl Failure {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Failure { status, code: code.into(), message: message.into(), retry_after: None, busy: None }
    }

    /// The store error to hand back when this failure is a held lock met during a
    /// [`Hosting::now_or_later`] attempt (where the request is answered again on the worker);
    /// otherwise the failure itself, to answer with.
    fn or_retry(mut self) -> std::result::Result<Failure, Error> {
        match self.busy.take() {
            Some(e) if !crate::off_loop::waits_for_locks() => Err(*e),
            busy => Ok(Failure { busy, ..self }),
        }
    }
}

/// Core errors as HTTP answers: the caller's mistakes are 4xx in the core's words; a busy store is
/// 503 (try again); the machine's failures are 500.
impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::InvalidDomain(_) | Error::PublicSuffix(_) | Error::InvalidArgument(_) | Error::InvalidPeriod(_) => {
                400
            }
            // A domain without a certificate yet is a missing thing, not a refused one.
            e if e.code() == "not-found" => 404,
            Error::Certificate(_) => 422,
            Error::NotFound { .. } => 404,
            Error::AlreadyExists { .. } => 409,
            Error::NotAllowed(_) => 403,
            e if e.is_busy() => 503,
            _ => 500,
        };
        let failure = Failure::new(status, e.code(), e.to_string());
        Failure { busy: e.is_busy().then(|| Box::new(e)), ..failure }
    }
}

pub(crate) type Answer = Result<Value, Failure>;

/// What a route handler gets: the panel, the caller, the domain named in the path (already
/// authorised), the other path parameters and the parsed body.
pub(crate) struct Call<'a> {
    pub panel: &'a Panel,
    pub session: Option<&'a Session>,
    pub domain: Option<&'a str>,
    pub role: Option<Role>,
    pub params: &'a [String],
    pub body: &'a Value,
}

impl Call<'_> {
    pub fn hosting(&self) -> &Hosting {
        &self.panel.hosting
    }
    pub fn session(&self) -> &Session {
        self.session.expect("routes other than Public have a session")
    }
    pub fn domain(&self) -> &str {
        self.domain.expect("routes with {domain} have one")
    }
    pub fn role(&self) -> Role {
        self.role.expect("routes with {domain} have a role")
    }
    /// A text field of the body, required.
    pub fn text(&self, field: &str) -> Result<&str, Failure> {
        self.body
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::new(400, "invalid-argument", format!("the request needs a text field {field:?}")))
    }
}

impl Panel {
    pub fn new(hosting: Hosting, options: PanelOptions) -> Self {
        Panel { hosting, options, jobs: Arc::default(), logins: Arc::default(), accounts: Arc::default() }
    }

    /// The store handle the panel was opened on, where a binding tries its calls at once.
    pub fn hosting(&self) -> &Hosting {
        &self.hosting
    }

    /// This panel (its logins, account changes and jobs) on another handle of the same store.
    fn on(&self, hosting: &Hosting) -> Panel {
        Panel { hosting: hosting.clone(), ..self.clone() }
    }

    pub fn options(&self) -> &PanelOptions {
        &self.options
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.hosting.now()
    }

    /// Answers one request. Never panics across a binding: a handler's panic is caught and answered 500.
    pub fn handle(&self, request: &Request) -> Outcome {
        self.try_handle(request).unwrap_or_else(|e| Outcome::Respond(self.failure(Failure::from(e))))
    }

    /// [`Panel::handle`] for a server's event loop (Prosody's): the request is answered at once
    /// without waiting for any lock; while another process holds the store's write lock (the
    /// CLI, the other server, a backup), the core's worker answers it once the lock is free and
    /// the caller watches the [`crate::Pending`] (see [`Hosting::now_or_later`]). A session's touch, a
    /// logout, a job's start, a setting changed from the panel: none of them waits on the loop.
    pub fn handle_now_or_later(&self, request: Request) -> crate::Result<NowOrLater<Outcome>> {
        let panel = self.clone();
        let answered = self.hosting.now_or_later(move |h| panel.on(h).try_handle(&request));
        self.or_unavailable(answered, Outcome::Respond)
    }

    /// [`Panel::finish_login`] for a server's event loop, as [`Panel::handle_now_or_later`].
    pub fn finish_login_now_or_later(
        &self,
        ticket: String,
        password_ok: bool,
        admin: bool,
    ) -> crate::Result<NowOrLater<Response>> {
        let panel = self.clone();
        let answered = self.hosting.now_or_later(move |h| panel.on(h).try_finish_login(&ticket, password_ok, admin));
        self.or_unavailable(answered, |r| r)
    }

    /// [`Panel::handle`] for a binding that hands the request to the core's worker itself and
    /// waits for the answer its own way (ejabberd: [`Hosting::now_or_answer`], the calling process
    /// then waits in `receive`): the request on `hosting` (the caller's handle, or the worker's),
    /// and the store's error when it met another connection's lock during an attempt that does
    /// not wait for it, before changing anything, for the worker to answer it again. A clone
    /// answers on the worker ([`Panel::handle_now_or_later`]'s), sharing the logins waiting for
    /// a password check and the running jobs.
    pub fn try_handle_on(&self, hosting: &Hosting, request: &Request) -> crate::Result<Outcome> {
        self.on(hosting).try_handle(request)
    }

    /// [`Panel::finish_login`] as [`Panel::try_handle_on`]: a try that met the lock keeps the
    /// login's ticket for the worker's.
    pub fn try_finish_login_on(
        &self,
        hosting: &Hosting,
        ticket: &str,
        password_ok: bool,
        admin: bool,
    ) -> crate::Result<Response> {
        self.on(hosting).try_finish_login(ticket, password_ok, admin)
    }

    /// The answer to a request that could not be made: a busy store (its lock held past the
    /// wait, or met after a part was done) is 503, try again, as [`Panel::handle`] answers it.
    pub fn failed(&self, e: Error) -> Response {
        self.failure(Failure::from(e))
    }

    /// A request that met the lock after one of its transactions committed is not answered
    /// again (that part would be done twice): it is answered 503, try again, as on a busy store.
    fn or_unavailable<T>(
        &self,
        answered: crate::Result<NowOrLater<T>>,
        respond: impl FnOnce(Response) -> T,
    ) -> crate::Result<NowOrLater<T>> {
        match answered {
            Err(e) if e.is_busy() => Ok(NowOrLater::Now(respond(self.failure(Failure::from(e))))),
            other => other,
        }
    }

    /// [`Panel::handle`], or the store's error when the request met another connection's lock
    /// during a [`Hosting::now_or_later`] attempt, before changing anything.
    fn try_handle(&self, request: &Request) -> crate::Result<Outcome> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.route(request))) {
            Ok(outcome) => outcome,
            Err(_) => {
                Ok(Outcome::Respond(self.failure(Failure::new(500, "internal", "the panel failed on this request"))))
            }
        }
    }

    fn route(&self, request: &Request) -> crate::Result<Outcome> {
        let method = request.method.to_ascii_uppercase();
        let path = request.path.split('?').next().unwrap_or("");
        let (route, params) = match routes::find(&method, path) {
            Ok(found) => found,
            Err(failure) => return Ok(Outcome::Respond(self.failure(failure))),
        };
        if let Access::Asset = route.access {
            return Ok(Outcome::Respond(assets::serve(path)));
        }
        Ok(match self.api(route, &params, request) {
            Ok(Step::Json(status, value, cookie)) => Outcome::Respond(self.json(status, &value, cookie)),
            Ok(Step::Login(check)) => Outcome::CheckPassword { check_password: check },
            Ok(Step::Account(task)) => Outcome::Account { account: task },
            Err(failure) => Outcome::Respond(self.failure(failure.or_retry()?)),
        })
    }

    fn api(&self, route: &Route, params: &[String], request: &Request) -> Result<Step, Failure> {
        let changes = route.method != "GET";
        let body: Value = if changes { parse_body(request)? } else { Value::Null };
        if route.path == "/api/login" {
            return self.begin_login(&body, request).map(Step::Login);
        }
        let session = self.current_session(request)?;
        if route.path == "/api/session" {
            return Ok(Step::Json(200, session::describe(session.as_ref()), None));
        }
        if route.access == Access::Public {
            return Ok(Step::Json(200, routes::table(), None));
        }
        let session = session.ok_or_else(|| Failure::new(401, "not-logged-in", "log in first"))?;
        if changes {
            session::check_csrf(&session, request.csrf.as_deref())?;
        }
        if route.path == "/api/logout" {
            session::end(&self.hosting, &session)?;
            return Ok(Step::Json(200, json!({"logged_out": true}), Some(session::clear_cookie(&self.options.base))));
        }
        let (domain, role) = match route.path.contains("{domain}") {
            true => {
                let domain = params.first().map(String::as_str).unwrap_or("");
                let role = access::role(&self.hosting, &session, domain)?;
                access::require(route.access, role, domain)?;
                (Some(domain), Some(role))
            }
            false => (None, None),
        };
        let rest = if domain.is_some() { &params[1..] } else { params };
        let call = Call { panel: self, session: Some(&session), domain, role, params: rest, body: &body };
        match route.handler {
            Handler::Answer(handler) => {
                let value = handler(&call)?;
                Ok(Step::Json(if changes { route.created } else { 200 }, value, None))
            }
            Handler::Account(handler) => Ok(Step::Account(handler(&call)?)),
        }
    }

    fn current_session(&self, request: &Request) -> Result<Option<Session>, Failure> {
        let Some(id) = session::cookie_value(request.cookie.as_deref()) else { return Ok(None) };
        Ok(session::find(&self.hosting, &self.options, id)?)
    }

    fn begin_login(&self, body: &Value, request: &Request) -> Result<PasswordCheck, Failure> {
        let jid = body.get("jid").and_then(Value::as_str).unwrap_or("");
        let password = body.get("password").and_then(Value::as_str).unwrap_or("");
        let (username, host) = session::split_jid(jid)?;
        if password.is_empty() {
            return Err(Failure::new(400, "invalid-argument", "enter your password"));
        }
        let account = format!("{username}@{host}");
        throttle::check(&self.hosting, &account, &request.address)?;
        let ticket = session::new_secret()?;
        let mut logins = locked(&self.logins);
        let now = self.now();
        logins.retain(|_, t| t.expires_at > now);
        if logins.len() >= session::MAX_LOGINS_IN_FLIGHT {
            return Err(Failure::new(503, "busy", "too many logins at once; try again in a moment"));
        }
        logins.insert(
            ticket.clone(),
            session::LoginTicket {
                account,
                address: request.address.clone(),
                tls: request.tls,
                expires_at: now + session::TICKET_LIFETIME,
            },
        );
        Ok(PasswordCheck { ticket, username, host, password: password.to_string() })
    }

    /// Completes a login with the server's verdict on the password; `admin` says whether the
    /// account is one of the operator's admins (who see every domain).
    pub fn finish_login(&self, ticket: &str, password_ok: bool, admin: bool) -> Response {
        self.try_finish_login(ticket, password_ok, admin).unwrap_or_else(|e| self.failure(Failure::from(e)))
    }

    /// [`Panel::finish_login`], or the store's error when it met another connection's lock during
    /// a [`Hosting::now_or_later`] attempt; the login's ticket is then kept for the next try.
    /// Each outcome is one transaction (a session begun clears the account's failed logins in
    /// it), so a try that met the lock changed nothing.
    fn try_finish_login(&self, key: &str, password_ok: bool, admin: bool) -> crate::Result<Response> {
        let taken = locked(&self.logins).remove(key);
        let Some(ticket) = taken.filter(|t| t.expires_at > self.now()) else {
            return Ok(self.failure(Failure::new(400, "invalid-argument", "this login expired; log in again")));
        };
        let result = if password_ok {
            session::start(&self.hosting, &self.options, &ticket.account, admin).map_err(Failure::from).map(
                |(secret, session)| {
                    let cookie = session::cookie(&self.options, &secret, ticket.tls);
                    (session, cookie)
                },
            )
        } else {
            match throttle::failed(&self.hosting, &ticket.account, &ticket.address) {
                Ok(()) => Err(Failure::new(401, "wrong-password", "wrong address or password")),
                Err(e) => Err(Failure::from(e)),
            }
        };
        Ok(match result {
            Ok((session, cookie)) => self.json(200, &session::describe(Some(&session)), Some(cookie)),
            Err(failure) => match failure.or_retry() {
                Ok(failure) => self.failure(failure),
                Err(busy) => {
                    locked(&self.logins).insert(key.to_string(), ticket);
                    return Err(busy);
                }
            },
        })
    }

    /// Completes an account change with what the server did (see [`users`]). Never panics
    /// across a binding.
    pub fn finish_account(&self, ticket: &str, result: &AccountResult) -> Response {
        let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            users::finish(&self.hosting, &self.accounts, ticket, result, self.now())
        }));
        match finished {
            Ok(Ok((status, value))) => self.json(status, &value, None),
            Ok(Err(failure)) => self.failure(failure),
            Err(_) => self.failure(Failure::new(500, "internal", "the panel failed on this request")),
        }
    }

    fn json(&self, status: u16, value: &Value, cookie: Option<String>) -> Response {
        let mut headers = security_headers();
        headers.insert("content-type".into(), "application/json".into());
        headers.insert("cache-control".into(), "no-store".into());
        if let Some(cookie) = cookie {
            headers.insert("set-cookie".into(), cookie);
        }
        Response { status, headers, body: value.to_string() }
    }

    fn failure(&self, failure: Failure) -> Response {
        let mut response = self.json(failure.status, &json!({"error": failure.code, "message": failure.message}), None);
        if let Some(seconds) = failure.retry_after {
            response.headers.insert("retry-after".into(), seconds.max(1).to_string());
        }
        response
    }
}

enum Step {
    Json(u16, Value, Option<String>),
    Login(PasswordCheck),
    Account(AccountTask),
}

/// A state change's body: JSON only. A cross-site form cannot send `application/json` without the
/// browser asking first, which adds to SameSite and the CSRF token rather than replacing them.
fn parse_body(request: &Request) -> Result<Value, Failure> {
    let json_type = request
        .content_type
        .as_deref()
        .map(|t| t.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false);
    if !json_type {
        return Err(Failure::new(415, "invalid-argument", "send the request as application/json"));
    }
    if request.body.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(&request.body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(Failure::new(400, "invalid-argument", "the request body must be a JSON object")),
        Err(e) => Err(Failure::new(400, "invalid-argument", format!("the request body is not JSON: {e}"))),
    }
}

/// Sent with every answer: the pages load nothing from elsewhere and may not be framed.
pub(crate) fn security_headers() -> BTreeMap<String, String> {
    let mut h = BTreeMap::new();
    h.insert(
        "content-security-policy".into(),
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            .into(),
    );
    h.insert("x-content-type-options".into(), "nosniff".into());
    h.insert("x-frame-options".into(), "DENY".into());
    h.insert("referrer-policy".into(), "no-referrer".into());
    h
}

#[cfg(test)]
mod tests;
