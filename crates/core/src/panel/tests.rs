//! The router as a binding drives it: login through the two-step exchange, CSRF, throttling,
//! and per-domain authorisation over every route of the table.

use std::cell::RefCell;
use std::collections::BTreeMap as Accounts;

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
    /// The server's account store as the binding would use it: `user@host` -> password.
    accounts: RefCell<Accounts<String, String>>,
    /// Hosts the server serves (the fake server's VirtualHosts).
    served: Vec<&'static str>,
    /// Every task the panel handed the "server".
    tasks: RefCell<Vec<AccountTask>>,
}

impl<'a> Browser<'a> {
    fn new(panel: &'a Panel) -> Self {
        Browser {
            panel,
            cookie: None,
            csrf: None,
            address: "192.0.2.10".into(),
            accounts: RefCell::new(Accounts::new()),
            served: vec!["a.example", "b.example", "provider.example"],
            tasks: RefCell::new(Vec::new()),
        }
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
        let r = match self.send(method, path, body) {
            Outcome::Respond(r) => r,
            Outcome::CheckPassword { .. } => panic!("{method} {path} asked for a password"),
            Outcome::Account { account } => {
                let result = self.carry_out(&account);
                self.tasks.borrow_mut().push(account.clone());
                self.panel.finish_account(&account.ticket, &result)
            }
        };
        (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null))
    }

    /// What a binding does with an account task, on a pretend account store.
    fn carry_out(&self, task: &AccountTask) -> AccountResult {
        if !self.served.contains(&task.host.as_str()) {
            return AccountResult { not_served: true, ..AccountResult::default() };
        }
        let mut accounts = self.accounts.borrow_mut();
        if task.action == "list" {
            let usernames = accounts
                .keys()
                .filter_map(|k| k.strip_suffix(&format!("@{}", task.host)))
                .map(str::to_string)
                .collect();
            return AccountResult { usernames, ..AccountResult::default() };
        }
        let key = format!("{}@{}", task.username.as_deref().unwrap(), task.host);
        let existed = accounts.contains_key(&key);
        if (task.require == Some("absent") && existed) || (task.require == Some("present") && !existed) {
            return AccountResult { existed, ..AccountResult::default() };
        }
        match task.action {
            "create" | "password" => {
                accounts.insert(key, task.password.clone().unwrap());
            }
            "delete" => {
                accounts.remove(&key);
            }
            other => panic!("unknown action {other}"),
        }
        AccountResult { existed, done: true, ..AccountResult::default() }
    }

    /// Logs in; `verdict` plays the server's authentication.
    fn login(&mut self, jid: &str, verdict: bool, admin: bool) -> Response {
        let check = match self.send("POST", "/api/login", json!({"jid": jid, "password": "pw"})) {
            Outcome::CheckPassword { check_password } => check_password,
            Outcome::Respond(r) => return r,
            Outcome::Account { .. } => panic!("a login asked for an account change"),
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
    route.replace("{domain}", domain).replace("{invite}", "1").replace("{job}", "x").replace("{user}", "carol")
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

#[test]
fn the_owner_creates_lists_re_passwords_and_deletes_users_through_the_servers_account_api() {
    let (panel, _) = panel();
    two_customers(&panel);
    let mut b = Browser::new(&panel);
    b.accounts.borrow_mut().insert("alice@a.example".into(), "pw".into());
    b.login("alice@a.example", true, false);
    let users = "/api/domains/a.example/users";
    let (status, body) = b.call("POST", users, json!({"username": "Anna", "password": "first-pw"}));
    assert_eq!((status, body["jid"].as_str()), (201, Some("anna@a.example")), "{body}");
    assert_eq!(b.accounts.borrow()["anna@a.example"], "first-pw", "created by the server with the password");
    let task = b.tasks.borrow().last().cloned().unwrap();
    assert_eq!((task.action, task.require, task.username.as_deref()), ("create", Some("absent"), Some("anna")));
    let (status, body) = b.call("POST", users, json!({"username": "anna", "password": "again"}));
    assert_eq!((status, body["error"].as_str()), (409, Some("already-exists")), "{body}");
    assert_eq!(b.accounts.borrow()["anna@a.example"], "first-pw", "an existing account is not overwritten");
    let (status, list) = b.call("GET", users, Value::Null);
    assert_eq!(status, 200);
    assert_eq!(list["users"], json!(["alice@a.example", "anna@a.example"]));
    assert_eq!(list["owner"], "alice@a.example");
    let (status, body) = b.call("POST", &format!("{users}/anna/password"), json!({"password": "second-pw"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(b.accounts.borrow()["anna@a.example"], "second-pw");
    assert_eq!(b.call("POST", &format!("{users}/anna/password"), json!({"password": ""})).0, 400);
    assert_eq!(b.call("POST", &format!("{users}/nobody/password"), json!({"password": "x"})).0, 404);
    assert_eq!(b.call("POST", &format!("{users}/alice/delete"), json!({})).0, 403, "not the owner's own account");
    assert_eq!(b.call("POST", &format!("{users}/bob@b.example/delete"), json!({})).0, 403, "another domain's");
    assert_eq!(b.call("POST", users, json!({"username": "no body", "password": "x"})).0, 400);
    let (status, body) = b.call("POST", &format!("{users}/anna/delete"), json!({}));
    assert_eq!((status, body["done"].as_str()), (200, Some("anna@a.example deleted")));
    assert!(!b.accounts.borrow().contains_key("anna@a.example"));
    assert_eq!(b.call("POST", &format!("{users}/anna/delete"), json!({})).0, 404);
    // A user of the domain is not its manager; the operator's admin is.
    let mut carol = Browser::new(&panel);
    carol.login("carol@a.example", true, false);
    assert_eq!(carol.call("GET", users, Value::Null).0, 403);
    let mut admin = Browser::new(&panel);
    admin.login("op@provider.example", true, true);
    assert_eq!(admin.call("POST", "/api/domains/b.example/users", json!({"username": "x", "password": "y"})).0, 201);
}

#[test]
fn an_account_task_is_finished_once_and_a_domain_the_server_does_not_serve_is_said_so() {
    let (panel, _) = panel();
    two_customers(&panel);
    panel.hosting.add_domain("c.example").unwrap();
    panel.hosting.claim_domain("c.example", "alice@a.example").unwrap();
    panel.hosting.override_claim("c.example", "alice@a.example", "test").unwrap();
    let mut b = Browser::new(&panel);
    b.login("alice@a.example", true, false);
    let (status, body) = b.call("GET", "/api/domains/c.example/users", Value::Null);
    assert_eq!((status, body["error"].as_str()), (409, Some("not-served")), "{body}");
    let Outcome::Account { account } = b.send("GET", "/api/domains/a.example/users", Value::Null) else {
        panic!("no account task")
    };
    assert_eq!(account.password, None);
    assert_eq!(panel.finish_account(&account.ticket, &AccountResult::default()).status, 200);
    assert_eq!(panel.finish_account(&account.ticket, &AccountResult::default()).status, 400, "used once");
    let Outcome::Account { account } = b.send("GET", "/api/domains/a.example/users", Value::Null) else {
        panic!("no account task")
    };
    let cannot = AccountResult { error: Some("the provider cannot list".into()), ..AccountResult::default() };
    let r = panel.finish_account(&account.ticket, &cannot);
    assert_eq!(r.status, 500, "not an empty list: {}", r.body);
    assert!(r.body.contains("the provider cannot list"), "{}", r.body);
    let Outcome::Account { account } =
        b.send("POST", "/api/domains/a.example/users", json!({"username": "z", "password": "p"}))
    else {
        panic!("no account task")
    };
    let failed = AccountResult { error: Some("storage full".into()), ..AccountResult::default() };
    let r = panel.finish_account(&account.ticket, &failed);
    assert_eq!(r.status, 500);
    assert!(r.body.contains("storage full"), "{}", r.body);
}

/// Reads the QR code of an SVG the panel drew: the modules are the path's unit squares.
fn read_qr(svg: &str) -> String {
    let size: usize = svg.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    let path = svg.split(" d=\"").nth(1).unwrap().split('"').next().unwrap();
    let mut dark = vec![false; size * size];
    for rect in path.split('M').filter(|r| !r.is_empty()) {
        // M{left} {top}h{w}v{h}H{left}V{top}
        let (pos, rest) = rect.split_once('h').unwrap();
        let (left, top) = pos.split_once(' ').unwrap();
        let (w, rest) = rest.split_once('v').unwrap();
        let h = rest.split('H').next().unwrap();
        let [left, top, w, h]: [usize; 4] = [left, top, w, h].map(|n| n.parse().unwrap());
        for y in top..top + h {
            for x in left..left + w {
                dark[y * size + x] = true;
            }
        }
    }
    const SCALE: usize = 4;
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(size * SCALE, size * SCALE, |x, y| {
        if dark[(y / SCALE) * size + x / SCALE] {
            0
        } else {
            255
        }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1);
    grids[0].decode().unwrap().1
}

#[test]
fn a_new_invite_comes_with_its_link_as_a_qr_code() {
    let (panel, _) = panel();
    two_customers(&panel);
    let mut b = Browser::new(&panel);
    b.login("alice@a.example", true, false);
    let (status, created) = b.call("POST", "/api/domains/a.example/invites", json!({"uses": 1}));
    assert_eq!(status, 201);
    let link = created["link"].as_str().unwrap();
    assert!(link.starts_with("xmpp:a.example?register;preauth="), "{link}");
    let svg = created["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg") && !svg.contains("<script"), "{svg}");
    assert_eq!(read_qr(svg), link);
    // The listing never carries the token, so no QR code either.
    let (_, listed) = b.call("GET", "/api/domains/a.example/invites", Value::Null);
    assert!(!listed.to_string().contains("preauth"), "{listed}");
}

#[test]
fn a_link_too_long_for_a_qr_code_still_gives_the_invite_and_says_why() {
    let (panel, _) = panel();
    two_customers(&panel);
    let long = format!("https://a.example/{}/{{token}}", "x".repeat(3000));
    panel.hosting.set_domain_setting("a.example", "registration.landing_url", &long).unwrap();
    let mut b = Browser::new(&panel);
    b.login("alice@a.example", true, false);
    let (status, created) = b.call("POST", "/api/domains/a.example/invites", json!({"uses": 1}));
    // The invite exists and its link is shown once: it must reach the customer.
    assert_eq!(status, 201, "{created}");
    assert!(created["link"].as_str().unwrap().len() > 3000);
    assert!(created.get("qr_svg").is_none());
    assert!(created["qr_error"].as_str().unwrap().contains("cannot be drawn as a QR code"), "{created}");
}

#[test]
fn usage_shows_each_window_against_its_limit_and_retention_what_applies() {
    let (panel, _) = panel();
    two_customers(&panel);
    panel.hosting.set_upload_limit("a.example", None, "user_storage", "1000000").unwrap();
    panel.hosting.set_retention("a.example", "archive", "30d").unwrap();
    let mut carol = Browser::new(&panel);
    carol.login("carol@a.example", true, false);
    let (status, usage) = carol.call("GET", "/api/domains/a.example/usage", Value::Null);
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["scope"], "carol@a.example");
    assert_eq!(usage["rows"][0]["text"], "0 bytes of 1 MB");
    assert_eq!(usage["rows"][1]["label"], "Uploaded in the last 24 hours");
    let (_, retention) = carol.call("GET", "/api/domains/a.example/retention", Value::Null);
    assert_eq!((retention["own_archive"].as_str(), retention["domain_archive"].as_str()), (Some("30d"), Some("30d")));
    assert_eq!(retention["rows"][0]["period"], "30d");
    let (status, body) = carol.call("POST", "/api/domains/a.example/retention", json!({"archive": "60d"}));
    assert_eq!(status, 400, "longer than the domain's: {body}");
    let (status, body) = carol.call("POST", "/api/domains/a.example/retention", json!({"archive": "10d"}));
    assert_eq!((status, body["own_archive"].as_str()), (200, Some("10d")), "{body}");
}

/// Issue 11: on a server's loop (Prosody's) a login and a change meet another process's write
/// lock without waiting for it: each is answered by the worker once the lock is free, the login's
/// ticket kept for that, nothing answered 503 and nothing done twice.
#[test]
fn a_held_lock_hands_a_login_and_a_logout_to_the_worker_and_both_complete() {
    use std::time::Duration;

    let store = crate::test_store::TestStore::new("panel-lock");
    let panel = Panel::new(store.open_as_server(), PanelOptions::default());
    let request = |method: &str, path: &str, cookie: Option<String>, csrf: Option<String>, body: Value| Request {
        method: method.into(),
        path: path.into(),
        cookie,
        csrf,
        content_type: Some("application/json".into()),
        body: body.to_string(),
        address: "192.0.2.10".into(),
        tls: false,
    };
    let later = |answer: crate::Result<NowOrLater<Response>>, other: &rusqlite::Connection| {
        let NowOrLater::Later(pending) = answer.unwrap() else { panic!("answered while the lock was held") };
        std::thread::sleep(Duration::from_millis(200));
        assert!(pending.try_take().is_none(), "answered while the lock was held");
        other.execute_batch("COMMIT").unwrap();
        pending.wait().unwrap()
    };
    let other = rusqlite::Connection::open(&store.path).unwrap();

    let begun =
        panel.handle(&request("POST", "/api/login", None, None, json!({"jid": "alice@a.example", "password": "pw"})));
    let Outcome::CheckPassword { check_password } = begun else { panic!("no password check: {begun:?}") };
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let logged_in = later(panel.finish_login_now_or_later(check_password.ticket, true, false), &other);
    assert_eq!(logged_in.status, 200, "{}", logged_in.body);
    let cookie = logged_in.headers["set-cookie"].split(';').next().unwrap().to_string();
    let csrf = serde_json::from_str::<Value>(&logged_in.body).unwrap()["csrf"].as_str().unwrap().to_string();

    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let logout = request("POST", "/api/logout", Some(cookie.clone()), Some(csrf), json!({}));
    let NowOrLater::Later(pending) = panel.handle_now_or_later(logout).unwrap() else {
        panic!("answered while the lock was held")
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(pending.try_take().is_none(), "answered while the lock was held");
    other.execute_batch("COMMIT").unwrap();
    let Outcome::Respond(logged_out) = pending.wait().unwrap() else { panic!("a logout asked for something") };
    assert_eq!(logged_out.status, 200, "{}", logged_out.body);
    let Outcome::Respond(session) = panel.handle(&request("GET", "/api/session", Some(cookie), None, Value::Null))
    else {
        panic!("a session read asked for something")
    };
    assert_eq!(serde_json::from_str::<Value>(&session.body).unwrap()["account"], Value::Null);

    // With the lock free, both are answered at once, as before.
    let begun =
        panel.handle(&request("POST", "/api/login", None, None, json!({"jid": "alice@a.example", "password": "pw"})));
    let Outcome::CheckPassword { check_password } = begun else { panic!("no password check: {begun:?}") };
    let NowOrLater::Now(r) = panel.finish_login_now_or_later(check_password.ticket, true, false).unwrap() else {
        panic!("handed to the worker with the lock free")
    };
    assert_eq!(r.status, 200);
}
