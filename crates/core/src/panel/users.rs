//! The users page: the owner creates, lists, re-passwords and deletes the accounts of their
//! domain.
//!
//! Who may do what, on which account, is the core's decision for every way in
//! ([`Hosting::decide_user_command`], the same as the servers' ad-hoc commands); the account
//! itself lives in the SERVER's account store (Prosody's usermanager, ejabberd's ejabberd_auth),
//! which hashes passwords its own way. So, as for a login's password, a route here does not
//! answer at once: it hands the binding an [`AccountTask`] to carry out with the server's own
//! account API, and the binding completes the request with [`super::Panel::finish_account`] and
//! what the server did ([`AccountResult`]). The core never stores a password.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Call, Failure};
use crate::domain_users::{StanzaRefusal, UserAction, UserCommand, UserDecision};
use crate::locked::locked;
use crate::{Hosting, Timestamp};

/// How long a binding may take to carry out a task (it runs within the same request).
const TASK_LIFETIME: i64 = 120;
/// Tasks waiting for their server at once; past this the panel answers 503.
const MAX_TASKS_IN_FLIGHT: usize = 256;

/// What the server is asked to do with its own account API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountTask {
    /// Hand it back to [`super::Panel::finish_account`] with the result.
    pub ticket: String,
    /// `list`, `create`, `password` or `delete`.
    pub action: &'static str,
    /// The domain: the server host whose accounts are acted on.
    pub host: String,
    /// The account acted on (not for `list`), already checked and normalised.
    pub username: Option<String>,
    /// The new password (`create`, `password`).
    pub password: Option<String>,
    /// `absent`: carry it out only if the account does not exist (create); `present`: only if it
    /// does (password, delete). The binding reports whether it existed either way.
    pub require: Option<&'static str>,
}

/// What the server did with an [`AccountTask`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AccountResult {
    /// The host is not one this server serves (a domain hosted in the store but not configured
    /// on this server yet): nothing was done.
    pub not_served: bool,
    /// Whether the account existed when the server looked (create, password, delete).
    pub existed: bool,
    /// Whether the server carried the action out and it succeeded.
    pub done: bool,
    /// The server's reason when carrying it out (or listing) failed, shown to the owner; never a
    /// password.
    pub error: Option<String>,
    /// For `list`: the host's accounts as the server listed them.
    pub usernames: Vec<String>,
}

/// A task handed out and not yet finished.
pub(super) struct Pending {
    action: UserAction,
    domain: String,
    jid: Option<String>,
    if_exists: Option<StanzaRefusal>,
    if_missing: Option<StanzaRefusal>,
    done: String,
    status: u16,
    expires_at: Timestamp,
}

#[derive(Default)]
pub(super) struct Tasks(Mutex<HashMap<String, Pending>>);

impl Tasks {
    fn insert(&self, ticket: String, pending: Pending, now: Timestamp) -> Result<(), Failure> {
        let mut tasks = locked(&self.0);
        tasks.retain(|_, t| t.expires_at > now);
        if tasks.len() >= MAX_TASKS_IN_FLIGHT {
            return Err(Failure::new(503, "busy", "too many account changes at once; try again in a moment"));
        }
        tasks.insert(ticket, pending);
        Ok(())
    }

    fn take(&self, ticket: &str, now: Timestamp) -> Option<Pending> {
        locked(&self.0).remove(ticket).filter(|t| t.expires_at > now)
    }
}

/// A refusal of the core's user rules as the API answers it.
fn refusal(r: &StanzaRefusal) -> Failure {
    let (status, code) = match r.condition {
        "forbidden" | "not-allowed" => (403, "not-allowed"),
        "bad-request" => (400, "invalid-argument"),
        "conflict" => (409, "already-exists"),
        "item-not-found" => (404, "not-found"),
        _ => (500, "internal"),
    };
    Failure::new(status, code, r.text.clone())
}

/// The core's decision on `action` for the caller, as a task for the server.
fn begin(
    call: &Call<'_>,
    action: UserAction,
    account: Option<String>,
    password: Option<String>,
) -> Result<AccountTask, Failure> {
    let session = call.session();
    let command = UserCommand {
        domain: call.domain().to_string(),
        requester: session.account.clone(),
        operator_admin: session.admin,
        action: Some(action),
        account,
        password: password.clone(),
        password_verify: None,
        policy: None,
    };
    let (domain, username, jid, if_exists, if_missing, done) = match call.hosting().decide_user_command(&command)? {
        UserDecision::Allowed { domain, username, jid, if_exists, if_missing, done, .. } => {
            (domain, username, jid, if_exists, if_missing, done)
        }
        UserDecision::Refused(r) => return Err(refusal(&r)),
    };
    let require = match (&if_exists, &if_missing) {
        (Some(_), _) => Some("absent"),
        (None, Some(_)) => Some("present"),
        (None, None) => None,
    };
    let ticket = super::session::new_secret()?;
    let status = if action == UserAction::Create { 201 } else { 200 };
    let now = call.panel.now();
    let pending = Pending {
        action,
        domain: domain.clone(),
        jid,
        if_exists,
        if_missing,
        done,
        status,
        expires_at: now + TASK_LIFETIME,
    };
    call.panel.accounts.insert(ticket.clone(), pending, now)?;
    let name = match action {
        UserAction::List => "list",
        UserAction::Create => "create",
        UserAction::Password => "password",
        _ => "delete",
    };
    let password = matches!(action, UserAction::Create | UserAction::Password).then_some(password).flatten();
    Ok(AccountTask { ticket, action: name, host: domain, username, password, require })
}

fn password_of(call: &Call<'_>) -> Result<String, Failure> {
    Ok(call.text("password")?.to_string())
}

fn account_param(call: &Call<'_>) -> Option<String> {
    call.params.first().cloned()
}

pub(super) fn list(call: &Call<'_>) -> Result<AccountTask, Failure> {
    begin(call, UserAction::List, None, None)
}

/// `{"username": "anna", "password": "..."}` (a bare JID of the domain is taken as well).
pub(super) fn create(call: &Call<'_>) -> Result<AccountTask, Failure> {
    let username = call.text("username")?.to_string();
    begin(call, UserAction::Create, Some(username), Some(password_of(call)?))
}

/// `{"password": "..."}` for the account named in the path.
pub(super) fn password(call: &Call<'_>) -> Result<AccountTask, Failure> {
    begin(call, UserAction::Password, account_param(call), Some(password_of(call)?))
}

pub(super) fn delete(call: &Call<'_>) -> Result<AccountTask, Failure> {
    begin(call, UserAction::Delete, account_param(call), None)
}

/// The answer to a task the server has carried out (or found it should not).
pub(super) fn finish(
    hosting: &Hosting,
    tasks: &Tasks,
    ticket: &str,
    result: &AccountResult,
    now: Timestamp,
) -> Result<(u16, Value), Failure> {
    let Some(task) = tasks.take(ticket, now) else {
        return Err(Failure::new(400, "invalid-argument", "this change expired; try again"));
    };
    if result.not_served {
        return Err(Failure::new(
            409,
            "not-served",
            format!("{} is not served by this server yet: its accounts cannot be managed here", task.domain),
        ));
    }
    if task.action == UserAction::List {
        if let Some(why) = &result.error {
            return Err(Failure::new(500, "server", format!("the server could not list the accounts: {why}")));
        }
        let list = hosting.domain_user_list(&task.domain, &result.usernames)?;
        let owner = hosting.require_domain(&task.domain)?.settings.owner;
        return Ok((200, json!({ "users": list.jids, "text": list.text, "owner": owner })));
    }
    if result.existed {
        if let Some(r) = &task.if_exists {
            return Err(refusal(r));
        }
    } else if let Some(r) = &task.if_missing {
        return Err(refusal(r));
    }
    if !result.done {
        let why = result.error.as_deref().unwrap_or("no reason given");
        return Err(Failure::new(500, "server", format!("the server did not make the change: {why}")));
    }
    Ok((task.status, json!({ "done": task.done, "jid": task.jid })))
}
