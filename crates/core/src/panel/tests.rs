//! The router as a binding drives it: login through the two-step exchange, CSRF, throttling,
//! and per-domain authorisation over every route of the table.

use serde_json::{json, Value};

use super::routes::{Access, ROUTES};
use super::*;
use crate::ManualClock;

fn panel() -> (Panel, ManualClock) {
    let clock = ManualClock::new(1_800_000_000);
    let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
    (Panel::new(h, PanelOptions::default()), clock)
}

struct Browser<'a> {
    panel: &'a Panel,
    cookie: Option<String>,
    csrf: Option<String>,
    address: String,
}

impl<'a> Browser<'a> {
    fn new(panel: &'a Panel) -> Self {
        Browser { panel, cookie: None, csrf: None, address: "192.0.2.10".into() }
    }

    fn send(&self, method: &str, path: &str, body: Value) -> Outcome {
        self.panel.handle(&Request {
            method: method.into(),
            path: path.into(),
            cookie: self.cookie.clone(),
            csrf: self.csrf.clone(),
            content_type: Some("application/json".into()),
            body: if body.is_null() { String::new() } else { body.to_string() },
            address: self.address.clone(),
            tls: false,
        })
    }

    fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        match self.send(method, path, body) {
            Outcome::Respond(r) => (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null)),
            Outcome::CheckPassword { .. } => panic!("{method} {path} asked for a password"),
        }
    }

    /// Logs in; `verdict` plays the server's authentication.
    fn login(&mut self, jid: &str, verdict: bool, admin: bool) -> Response {
        let check = match self.send("POST", "/api/login", json!({"jid": jid, "password": "pw"})) {
            Outcome::CheckPassword { check_password } => check_password,
            Outcome::Respond(r) => return r,
        };
        assert_eq!(check.password, "pw");
        let r = self.panel.finish_login(&check.ticket, verdict, admin);
        if r.status == 200 {
            let set = &r.headers["set-cookie"];
            self.cookie = Some(set.split(';').next().unwrap().to_string());
            let body: Value = serde_json::from_str(&r.body).unwrap();
            self.csrf = body["csrf"].as_str().map(str::to_string);
        }
        r
    }
}

/// a.example owned by alice@a.example, b.example by bob@b.example, both hosted.
fn two_customers(panel: &Panel) {
    let h = &panel.hosting;
    for (domain, owner) in [("a.example", "alice@a.example"), ("b.example", "bob@b.example")] {
        h.add_domain(domain).unwrap();
        h.claim_domain(domain, owner).unwrap();
        h.override_claim(domain, owner, "test").unwrap();
    }
}

#[test]
fn login_is_checked_by_the_server_and_gives_an_http_only_strict_cookie() {
    let (panel, _) = panel();
    let mut b = Browser::new(&panel);
    assert_eq!(b.call("GET", "/api/session", Value::Null).1["account"], Value::Null);
    let r = b.login("Alice@A.example", true, false);
    assert_eq!(r.status, 200);
    let cookie = &r.headers["set-cookie"];
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Max-Age="),
        "{cookie}"
    );
    let (status, me) = b.call("GET", "/api/session", Value::Null);
    assert_eq!((status, me["account"].as_str()), (200, Some("alice@a.example")));
    let (status, _) = b.call("POST", "/api/logout", Value::Null);
    assert_eq!(status, 200);
    assert_eq!(b.call("GET", "/api/domains", Value::Null).0, 401);
}

#[test]
fn a_wrong_password_gives_no_session_and_the_sixth_attempt_is_throttled() {
    let (panel, clock) = panel();
    let mut b = Browser::new(&panel);
    for _ in 0..5 {
        assert_eq!(b.login("alice@a.example", false, false).status, 401);
    }
    let r = b.login("alice@a.example", true, false);
    assert_eq!(r.status, 429, "throttled before the password is even checked");
    assert_eq!(r.headers["retry-after"], "15");
    clock.advance(15);
    assert_eq!(b.login("alice@a.example", true, false).status, 200);
}

#[test]
fn a_login_ticket_is_used_once() {
    let (panel, _) = panel();
    let b = Browser::new(&panel);
    let Outcome::CheckPassword { check_password } =
        b.send("POST", "/api/login", json!({"jid": "a@a.example", "password": "x"}))
    else {
        panic!("no password check")
    };
    assert_eq!(panel.finish_login(&check_password.ticket, true, false).status, 200);
    assert_eq!(panel.finish_login(&check_password.ticket, true, false).status, 400);
}

#[test]
fn state_changes_without_the_csrf_token_or_as_a_form_are_refused() {
    let (panel, _) = panel();
    two_customers(&panel);
    let mut b = Browser::new(&panel);
    b.login("alice@a.example", true, false);
    let good = b.csrf.clone();
    b.csrf = None;
    let (status, body) = b.call("POST", "/api/domains/a.example/invites", json!({}));
    assert_eq!((status, body["error"].as_str()), (403, Some("csrf")));
    b.csrf = Some("forged".into());
    assert_eq!(b.call("POST", "/api/domains/a.example/invites", json!({})).0, 403);
    b.csrf = good;
    let form = panel.handle(&Request {
        method: "POST".into(),
        path: "/api/domains/a.example/invites".into(),
        cookie: b.cookie.clone(),
        csrf: b.csrf.clone(),
        content_type: Some("application/x-www-form-urlencoded".into()),
        body: "uses=1".into(),
        ..Request::default()
    });
    assert!(matches!(form, Outcome::Respond(Response { status: 415, .. })));
    assert_eq!(b.call("POST", "/api/domains/a.example/invites", json!({})).0, 201);
    assert!(panel.hosting.invites("a.example").unwrap().len() == 1);
}

/// Fills a route's path with `domain` and a made-up value for any other parameter.
fn path_for(route: &str, domain: &str) -> String {
    route.replace("{domain}", domain).replace("{invite}", "1").replace("{job}", "x")
}

#[test]
fn another_customers_domain_is_403_on_every_route_that_names_one() {
    let (panel, _) = panel();
    two_customers(&panel);
    let mut b = Browser::new(&panel);
    b.login("alice@a.example", true, false);
    let domain_routes: Vec<_> = ROUTES.iter().filter(|r| r.path.contains("{domain}")).collect();
    assert!(domain_routes.len() >= 15);
    for route in &domain_routes {
        for other in ["b.example", "nobody.example"] {
            let (status, body) = b.call(route.method, &path_for(route.path, other), json!({}));
            assert_eq!(status, 403, "{} {} for {other}: {body}", route.method, route.path);
        }
    }
    // And the same routes are open to alice on her own domain (not 403).
    for route in &domain_routes {
        let (status, body) = b.call(route.method, &path_for(route.path, "a.example"), json!({}));
        assert_ne!(status, 403, "{} {}: {body}", route.method, route.path);
    }
    // The operator's admin sees b.example.
    let mut admin = Browser::new(&panel);
    admin.login("op@provider.example", true, true);
    assert_eq!(admin.call("GET", "/api/domains/b.example/settings", Value::Null).0, 200);
}

#[test]
fn a_user_of_a_domain_sees_only_their_own_usage() {
    let (panel, _) = panel();
    two_customers(&panel);
    let mut carol = Browser::new(&panel);
    carol.login("carol@a.example", true, false);
    let (status, usage) = carol.call("GET", "/api/domains/a.example/usage", Value::Null);
    assert_eq!((status, usage["uploads"]["user"].as_str()), (200, Some("carol")));
    assert_eq!(carol.call("GET", "/api/domains/a.example/settings", Value::Null).0, 403);
    assert_eq!(carol.call("GET", "/api/domains/a.example/invites", Value::Null).0, 403);
    assert_eq!(carol.call("GET", "/api/domains/a.example", Value::Null).1["role"], "member");
    let mut alice = Browser::new(&panel);
    alice.login("alice@a.example", true, false);
    let (_, usage) = alice.call("GET", "/api/domains/a.example/usage", Value::Null);
    assert_eq!(usage["uploads"]["user"], Value::Null, "the owner sees the whole domain");
}

#[test]
fn a_customer_claims_a_domain_and_sees_the_records_to_create() {
    let (panel, _) = panel();
    let mut b = Browser::new(&panel);
    b.login("dora@provider.example", true, false);
    let (status, claimed) = b.call("POST", "/api/domains", json!({"domain": "dora.example"}));
    assert_eq!(status, 201, "{claimed}");
    let token = claimed["claim"]["token"].as_str().unwrap().to_string();
    let (status, records) = b.call("GET", "/api/domains/dora.example/records", Value::Null);
    assert_eq!(status, 200);
    assert_eq!(records["txt"], format!("verify={token}"));
    let (_, list) = b.call("GET", "/api/domains", Value::Null);
    assert_eq!(list["domains"][0]["domain"], "dora.example");
    assert_eq!(list["domains"][0]["role"], "claimant");
    // A claimant is not the owner: certificates and settings stay closed.
    assert_eq!(b.call("GET", "/api/domains/dora.example/certificate", Value::Null).0, 403);
}

#[test]
fn the_owner_changes_only_the_settings_that_are_theirs() {
    let (panel, _) = panel();
    two_customers(&panel);
    let mut b = Browser::new(&panel);
    b.login("alice@a.example", true, false);
    let (status, v) = b.call("POST", "/api/domains/a.example/settings", json!({"registration.policy": "open"}));
    assert_eq!((status, v["settings"]["registration.policy"].as_str()), (200, Some("open")), "{v}");
    let (status, v) = b.call("POST", "/api/domains/a.example/settings", json!({"owner": "mallory@x.example"}));
    assert_eq!(status, 403, "{v}");
    let (status, _) = b.call("POST", "/api/domains/a.example/settings", json!({"registration.policy": "sometimes"}));
    assert_eq!(status, 400);
}

#[test]
fn pages_are_served_with_a_strict_content_security_policy() {
    let (panel, _) = panel();
    let b = Browser::new(&panel);
    let Outcome::Respond(r) = b.send("GET", "/", Value::Null) else { panic!() };
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/html"));
    assert!(r.headers["content-security-policy"].contains("default-src 'none'"));
    assert_eq!(b.call("GET", "/api/nothing", Value::Null).0, 404);
    let (_, table) = b.call("GET", "/api/routes", Value::Null);
    assert!(table["routes"].as_array().unwrap().iter().any(|r| r["path"] == "/api/domains/{domain}/verify"));
    assert!(ROUTES.iter().any(|r| r.access == Access::Asset));
}

#[test]
fn every_status_the_panel_answers_has_its_reason_phrase() {
    // ejabberd 23.01's HTTP layer fails a request whose status it has no phrase for (429).
    for status in [200, 201, 202, 301, 400, 401, 403, 404, 405, 409, 415, 422, 429, 503] {
        let r = Response { status, headers: BTreeMap::new(), body: String::new() };
        assert_ne!(r.reason(), "Internal Server Error", "{status}");
    }
    assert_eq!(Response { status: 429, headers: BTreeMap::new(), body: String::new() }.reason(), "Too Many Requests");
}

#[test]
fn a_domain_without_a_certificate_shows_none_and_its_files_are_missing() {
    let (panel, _) = panel();
    two_customers(&panel);
    let mut b = Browser::new(&panel);
    b.login("alice@a.example", true, false);
    let (status, body) = b.call("GET", "/api/domains/a.example/certificate", Value::Null);
    assert_eq!((status, body), (200, json!({"certificate": null})));
    assert_eq!(b.call("GET", "/api/domains/a.example/certificate/posh", Value::Null).0, 404);
    assert_eq!(b.call("GET", "/api/domains/a.example/certificate/csr", Value::Null).0, 404);
}
