//! The panel's route table: every URL the panel answers, who may call it, and its handler.
//!
//! The table is public (`GET /api/routes`) so that tests enumerate it instead of keeping a list of
//! their own: a route added here is covered by the "another customer's domain gets 403" test
//! without anyone remembering to add it there.

use serde_json::{json, Value};

use super::users::{self, AccountTask};
use super::{certificates, domains, invites, settings, usage, Answer, Call, Failure};

/// Who may call a route. For routes with `{domain}` the caller's role on that domain decides
/// (see [`super::access`]); admins of the operator pass every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A page or script of the panel itself.
    Asset,
    /// Anyone, logged in or not.
    Public,
    /// Any logged-in account.
    Session,
    /// The domain's owner, or an account that claimed it (to see the records and verify).
    Claimant,
    /// The domain's owner only.
    Owner,
    /// The owner, or a user of the domain (who sees only what concerns them).
    Member,
    /// Anyone with a role on the domain (owner, claimant or user).
    Related,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Asset => "asset",
            Access::Public => "public",
            Access::Session => "session",
            Access::Claimant => "claimant",
            Access::Owner => "owner",
            Access::Member => "member",
            Access::Related => "related",
        }
    }
}

/// What a route does: answer at once, or hand the server an account task to carry out with its
/// own account API (see [`super::users`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Handler {
    Answer(fn(&Call<'_>) -> Answer),
    Account(fn(&Call<'_>) -> Result<AccountTask, Failure>),
}

/// One route. `{name}` in a path matches one path segment.
#[derive(Debug)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// The status of a successful state change (202 when it started a job).
    pub created: u16,
    pub(crate) handler: Handler,
}

fn none(_: &Call<'_>) -> Answer {
    Ok(Value::Null)
}

const fn r(
    method: &'static str,
    path: &'static str,
    access: Access,
    created: u16,
    handler: fn(&Call<'_>) -> Answer,
) -> Route {
    Route { method, path, access, created, handler: Handler::Answer(handler) }
}

/// A route the server completes with its account API.
const fn account(
    method: &'static str,
    path: &'static str,
    created: u16,
    handler: fn(&Call<'_>) -> Result<AccountTask, Failure>,
) -> Route {
    Route { method, path, access: Owner, created, handler: Handler::Account(handler) }
}

use Access::*;

/// Every route of the panel. Routes handled before dispatch (login, session, logout, the table
/// itself, the pages) have a placeholder handler.
pub static ROUTES: &[Route] = &[
    r("GET", "/", Asset, 200, none),
    r("GET", "/panel.js", Asset, 200, none),
    r("GET", "/panel.css", Asset, 200, none),
    r("GET", "/api/routes", Public, 200, none),
    r("GET", "/api/session", Public, 200, none),
    r("POST", "/api/login", Public, 200, none),
    r("POST", "/api/logout", Session, 200, none),
    r("GET", "/api/domains", Session, 200, domains::list),
    r("POST", "/api/domains", Session, 201, domains::claim),
    r("GET", "/api/jobs/{job}", Session, 200, domains::job),
    r("GET", "/api/domains/{domain}", Related, 200, domains::status),
    r("GET", "/api/domains/{domain}/records", Claimant, 200, domains::records),
    r("POST", "/api/domains/{domain}/verify", Claimant, 202, domains::verify),
    r("POST", "/api/domains/{domain}/dns-test", Claimant, 202, domains::dns_test),
    r("GET", "/api/domains/{domain}/certificate", Owner, 200, certificates::show),
    r("POST", "/api/domains/{domain}/certificate/generate", Owner, 202, certificates::generate),
    r("POST", "/api/domains/{domain}/certificate/import", Owner, 200, certificates::import),
    r("GET", "/api/domains/{domain}/certificate/posh", Owner, 200, certificates::posh),
    r("GET", "/api/domains/{domain}/certificate/csr", Owner, 200, certificates::csr),
    r("GET", "/api/domains/{domain}/settings", Owner, 200, settings::show),
    r("POST", "/api/domains/{domain}/settings", Owner, 200, settings::set),
    r("GET", "/api/domains/{domain}/invites", Owner, 200, invites::list),
    r("POST", "/api/domains/{domain}/invites", Owner, 201, invites::create),
    r("POST", "/api/domains/{domain}/invites/{invite}/revoke", Owner, 200, invites::revoke),
    account("GET", "/api/domains/{domain}/users", 200, users::list),
    account("POST", "/api/domains/{domain}/users", 201, users::create),
    account("POST", "/api/domains/{domain}/users/{user}/password", 200, users::password),
    account("POST", "/api/domains/{domain}/users/{user}/delete", 200, users::delete),
    r("GET", "/api/domains/{domain}/usage", Member, 200, usage::usage),
    r("GET", "/api/domains/{domain}/retention", Member, 200, usage::retention),
    r("POST", "/api/domains/{domain}/retention", Member, 200, usage::set_retention),
];

/// The table as the API lists it.
pub fn table() -> Value {
    let routes: Vec<Value> = ROUTES
        .iter()
        .filter(|r| r.access != Asset)
        .map(|r| json!({"method": r.method, "path": r.path, "access": r.access.as_str()}))
        .collect();
    json!({ "routes": routes })
}

/// The route for `method` and `path`, with the values of its `{...}` segments (percent-decoded):
/// 404 when no route has that path, 405 when only other methods do.
pub(crate) fn find(method: &str, path: &str) -> Result<(&'static Route, Vec<String>), Failure> {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut other_method = false;
    for route in ROUTES {
        let Some(params) = matches(route.path, &segments) else { continue };
        if route.method == method || (method == "HEAD" && route.method == "GET") {
            return Ok((route, params));
        }
        other_method = true;
    }
    if other_method {
        Err(Failure::new(405, "invalid-argument", format!("{method} is not accepted at {path}")))
    } else {
        Err(Failure::new(404, "not-found", format!("nothing at {path}")))
    }
}

fn matches(pattern: &str, segments: &[&str]) -> Option<Vec<String>> {
    let wanted: Vec<&str> = pattern.split('/').skip(1).collect();
    if wanted.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (want, got) in wanted.iter().zip(segments) {
        if want.starts_with('{') {
            let value = percent_decode(got)?;
            if value.is_empty() {
                return None;
            }
            params.push(value);
        } else if want != got {
            return None;
        }
    }
    Some(params)
}

/// `%xx` escapes of a path segment (an internationalised domain in a URL); a broken escape or
/// bytes that are not UTF-8 match nothing.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_route_and_parameters() {
        let (route, params) = find("GET", "/api/domains/example.org/records").unwrap();
        assert_eq!(route.path, "/api/domains/{domain}/records");
        assert_eq!(params, vec!["example.org"]);
        let (route, params) = find("POST", "/api/domains/example.org/invites/7/revoke").unwrap();
        assert_eq!(route.path, "/api/domains/{domain}/invites/{invite}/revoke");
        assert_eq!(params, vec!["example.org", "7"]);
        let (_, params) = find("GET", "/api/domains/b%C3%BCcher.example").unwrap();
        assert_eq!(params, vec!["bücher.example"]);
    }

    #[test]
    fn unknown_paths_and_methods_are_told_apart() {
        assert_eq!(find("GET", "/api/nothing").unwrap_err().status, 404);
        assert_eq!(find("DELETE", "/api/domains").unwrap_err().status, 405);
        assert_eq!(find("GET", "/api/domains//records").unwrap_err().status, 404);
        assert_eq!(find("GET", "/api/domains/%zz/records").unwrap_err().status, 404);
    }

    #[test]
    fn every_route_is_unique_and_listed() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(!(a.method == b.method && a.path == b.path), "{} {} twice", a.method, a.path);
            }
        }
        let listed = table()["routes"].as_array().unwrap().len();
        assert_eq!(listed, ROUTES.iter().filter(|r| r.access != Asset).count());
    }
}
