//! Login sessions: a random id in an HttpOnly cookie, stored only as its SHA-256, ending after a
//! fixed lifetime or an idle period; a CSRF token per session that every state change must send
//! back in the X-CSRF-Token header.

use base64::Engine;
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Failure, PanelOptions};
use crate::{Error, Hosting, Result, Timestamp};

/// The cookie's name.
pub const COOKIE: &str = "xh_panel";
/// How long the server has to check a password and hand the verdict back.
pub(crate) const TICKET_LIFETIME: i64 = 120;
/// Logins waiting for the server's verdict at once, at most (each holds a password in memory).
pub(crate) const MAX_LOGINS_IN_FLIGHT: usize = 1000;
/// A session's `last_seen_at` is written at most this often, not on every request.
const TOUCH_EVERY: i64 = 60;

/// A logged-in account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub account: String,
    pub admin: bool,
    pub csrf: String,
    pub expires_at: Timestamp,
    pub(crate) id_hash: String,
}

impl Session {
    /// The account's own domain (`alice@example.org` -> `example.org`).
    pub fn host(&self) -> &str {
        self.account.rsplit_once('@').map_or("", |(_, h)| h)
    }
    pub fn username(&self) -> &str {
        self.account.rsplit_once('@').map_or("", |(u, _)| u)
    }
}

/// A login whose password the server is checking.
#[derive(Debug, Clone)]
pub(crate) struct LoginTicket {
    pub account: String,
    pub address: String,
    pub tls: bool,
    pub expires_at: Timestamp,
}

/// 32 random bytes, URL-safe base64.
pub(crate) fn new_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(format!("no OS randomness: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// `alice@Example.ORG` as the pair the server authenticates: the username nodeprepped, the host
/// as a domain name (ASCII form).
pub(crate) fn split_jid(jid: &str) -> Result<(String, String), Failure> {
    let bad = || Failure::new(400, "invalid-argument", "enter your address as name@domain");
    let (user, host) = jid.trim().rsplit_once('@').ok_or_else(bad)?;
    if user.is_empty() || host.is_empty() || jid.contains('/') {
        return Err(bad());
    }
    let user = crate::invites::normalize_username(user).ok_or_else(bad)?;
    let host = crate::DomainName::parse(host).map_err(|_| bad())?;
    Ok((user, host.to_string()))
}

/// Starts a session for `account` and clears its failed logins, in one transaction; returns the
/// cookie's secret (never stored) and the session.
pub(crate) fn start(
    hosting: &Hosting,
    options: &PanelOptions,
    account: &str,
    admin: bool,
) -> Result<(String, Session)> {
    let secret = new_secret()?;
    let session = Session {
        account: account.to_string(),
        admin,
        csrf: new_secret()?,
        expires_at: hosting.now() + options.session_lifetime,
        id_hash: hash(&secret),
    };
    let now = hosting.now();
    hosting.store().write(|tx| {
        tx.execute(
            "DELETE FROM panel_sessions WHERE expires_at <= ?1 OR last_seen_at <= ?2",
            params![now, now - options.idle_timeout],
        )?;
        tx.execute(
            "INSERT INTO panel_sessions (id_hash, account, admin, csrf, created_at, last_seen_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
            params![session.id_hash, session.account, session.admin, session.csrf, now, session.expires_at],
        )?;
        super::throttle::succeeded(tx, account)
    })?;
    Ok((secret, session))
}

/// The live session whose cookie carries `secret`, if any.
pub(crate) fn find(hosting: &Hosting, options: &PanelOptions, secret: &str) -> Result<Option<Session>> {
    let id_hash = hash(secret);
    let now = hosting.now();
    let found = hosting.store().read(|c| {
        Ok(c.query_row(
            "SELECT account, admin, csrf, expires_at, last_seen_at FROM panel_sessions WHERE id_hash = ?1",
            [&id_hash],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get(2)?, r.get(3)?, r.get::<_, i64>(4)?)),
        )
        .optional()?)
    })?;
    let Some((account, admin, csrf, expires_at, last_seen)) = found else { return Ok(None) };
    if expires_at <= now || last_seen <= now - options.idle_timeout {
        return Ok(None);
    }
    if now - last_seen >= TOUCH_EVERY {
        hosting.store().write(|tx| {
            tx.execute("UPDATE panel_sessions SET last_seen_at = ?2 WHERE id_hash = ?1", params![id_hash, now])?;
            Ok(())
        })?;
    }
    Ok(Some(Session { account, admin, csrf, expires_at, id_hash }))
}

pub(crate) fn end(hosting: &Hosting, session: &Session) -> Result<()> {
    hosting.store().write(|tx| {
        tx.execute("DELETE FROM panel_sessions WHERE id_hash = ?1", [&session.id_hash])?;
        Ok(())
    })
}

/// Every state change sends the session's token back; compared in constant time.
pub(crate) fn check_csrf(session: &Session, sent: Option<&str>) -> Result<(), Failure> {
    match sent {
        Some(sent) if bool::from(sent.as_bytes().ct_eq(session.csrf.as_bytes())) => Ok(()),
        _ => Err(Failure::new(
            403,
            "csrf",
            "this change did not come from the panel's page (missing or wrong CSRF token); reload the page",
        )),
    }
}

/// The Set-Cookie value of a new session.
pub fn cookie(options: &PanelOptions, secret: &str, tls: bool) -> String {
    format!(
        "{COOKIE}={secret}; Path={}; Max-Age={}; HttpOnly; SameSite=Strict{}",
        cookie_path(options),
        options.session_lifetime,
        if tls { "; Secure" } else { "" }
    )
}

/// The Set-Cookie value that ends the session in the browser.
pub fn clear_cookie(base: &str) -> String {
    format!("{COOKIE}=; Path={}; Max-Age=0; HttpOnly; SameSite=Strict", path_of(base))
}

fn cookie_path(options: &PanelOptions) -> String {
    path_of(&options.base)
}

fn path_of(base: &str) -> String {
    let trimmed = base.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

/// The session id in a Cookie header (`a=1; xh_panel=...; b=2`).
pub(crate) fn cookie_value(header: Option<&str>) -> Option<&str> {
    header?.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == COOKIE).map(|(_, v)| v.trim())
}

/// What `/api/session` and a login answer.
pub(crate) fn describe(session: Option<&Session>) -> Value {
    match session {
        Some(s) => json!({"account": s.account, "admin": s.admin, "csrf": s.csrf, "expires_at": s.expires_at}),
        None => json!({"account": null}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_tls() {
        let options = PanelOptions::default();
        let c = cookie(&options, "abc", true);
        assert_eq!(c, "xh_panel=abc; Path=/panel; Max-Age=43200; HttpOnly; SameSite=Strict; Secure");
        assert!(!cookie(&options, "abc", false).contains("Secure"));
        assert_eq!(clear_cookie("/"), "xh_panel=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(cookie_value(Some("a=1; xh_panel=s3cret ; b=2")), Some("s3cret"));
        assert_eq!(cookie_value(Some("xh_panelx=1")), None);
        assert_eq!(cookie_value(None), None);
    }

    #[test]
    fn addresses_are_split_and_normalised() {
        assert_eq!(split_jid(" Alice@Example.ORG ").unwrap(), ("alice".into(), "example.org".into()));
        for bad in ["alice", "@example.org", "alice@", "alice@example.org/res", "a b@example.org"] {
            assert_eq!(split_jid(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn sessions_are_stored_hashed_and_expire() {
        let clock = crate::ManualClock::new(1_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        let options = PanelOptions::default();
        let (secret, s) = start(&h, &options, "alice@example.org", false).unwrap();
        let stored: String =
            h.store().read(|c| Ok(c.query_row("SELECT id_hash FROM panel_sessions", [], |r| r.get(0))?)).unwrap();
        assert_ne!(stored, secret);
        assert_eq!(find(&h, &options, &secret).unwrap().unwrap().account, "alice@example.org");
        assert!(find(&h, &options, "other").unwrap().is_none());
        clock.advance(options.idle_timeout);
        assert!(find(&h, &options, &secret).unwrap().is_none(), "idle too long");
        let (secret, _) = start(&h, &options, "alice@example.org", false).unwrap();
        for _ in 0..(options.session_lifetime / 600) {
            clock.advance(600);
            let _ = find(&h, &options, &secret).unwrap();
        }
        assert!(find(&h, &options, &secret).unwrap().is_none(), "past its lifetime");
        end(&h, &s).unwrap();
    }

    #[test]
    fn state_changes_need_the_session_token() {
        let s = Session {
            account: "a@b.example".into(),
            admin: false,
            csrf: "tok".into(),
            expires_at: 0,
            id_hash: String::new(),
        };
        assert!(check_csrf(&s, Some("tok")).is_ok());
        assert_eq!(check_csrf(&s, Some("tok2")).unwrap_err().status, 403);
        assert_eq!(check_csrf(&s, None).unwrap_err().code, "csrf");
    }
}
