use std::sync::{Arc, Barrier};

use super::*;
use crate::{DomainSettings, Hosting, ManualClock};

const T0: i64 = 1_700_000_000;
const DAY: i64 = 24 * 3600;

fn hosting_with(policy: RegistrationPolicy) -> (Hosting, ManualClock) {
    let clock = ManualClock::new(T0);
    let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
    let mut s = DomainSettings::default();
    s.registration.policy = policy;
    s.registration.landing_url = Some("https://{domain}/invite/{token}/".into());
    h.add_domain_with("example.org", s).unwrap();
    (h, clock)
}

fn req<'a>(username: &'a str, token: Option<&'a str>, ip: Option<&'a str>) -> RegistrationRequest<'a> {
    RegistrationRequest { domain: "example.org", username, ip, token }
}

fn allowed(d: RegistrationDecision) -> RegistrationTicket {
    match d {
        RegistrationDecision::Allowed(t) => t,
        RegistrationDecision::Refused(r) => panic!("refused: {r:?}"),
    }
}

fn refused(d: RegistrationDecision) -> Refusal {
    match d {
        RegistrationDecision::Refused(r) => r,
        RegistrationDecision::Allowed(t) => panic!("allowed: {t:?}"),
    }
}

fn register(h: &Hosting, username: &str, token: Option<&str>) -> std::result::Result<RegistrationTicket, Refusal> {
    match h.begin_registration(&req(username, token, Some("192.0.2.1"))).unwrap() {
        RegistrationDecision::Allowed(t) => {
            h.finish_registration(t.id, true).unwrap();
            Ok(t)
        }
        RegistrationDecision::Refused(r) => Err(r),
    }
}

#[test]
fn invite_only_needs_a_valid_token_once() {
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    assert_eq!(register(&h, "alice", None), Err(Refusal::InviteRequired));
    let inv = h.create_invite(&NewInvite::account("example.org")).unwrap();
    assert_eq!(inv.uri, format!("xmpp:example.org?register;preauth={}", inv.token));
    assert_eq!(inv.landing_url.as_deref(), Some(format!("https://example.org/invite/{}/", inv.token).as_str()));
    assert!(h.check_invite("example.org", &inv.token).unwrap().is_some());
    let t = register(&h, "Alice", Some(&inv.token)).unwrap();
    assert_eq!(t.username, "alice");
    assert_eq!(register(&h, "bob", Some(&inv.token)), Err(Refusal::InvalidInvite));
    assert!(h.check_invite("example.org", &inv.token).unwrap().is_none());
    let audit = h.invite_audit("example.org", 10).unwrap();
    let actions: Vec<_> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["redeemed", "created"]);
    assert_eq!(audit[0].actor.as_deref(), Some("alice@example.org"));
}

#[test]
fn tokens_are_stored_only_as_hashes() {
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    let inv = h.create_invite(&NewInvite::account("example.org")).unwrap();
    let found: i64 = h
        .store()
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM invites WHERE instr(CAST(token_hash AS TEXT), ?1) > 0 OR hex(token_hash) = upper(hex(?1))",
                [&inv.token],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(found, 0);
    let stored_hash: Vec<u8> =
        h.store().read(|c| Ok(c.query_row("SELECT token_hash FROM invites", [], |r| r.get(0))?)).unwrap();
    assert_eq!(stored_hash, token::hash(&inv.token).to_vec());
}

#[test]
fn expired_invites_are_refused() {
    let (h, clock) = hosting_with(RegistrationPolicy::Invite);
    let mut new = NewInvite::account("example.org");
    new.expiry = Expiry::After(60);
    let inv = h.create_invite(&new).unwrap();
    assert_eq!(inv.invite.expires_at, Some(T0 + 60));
    clock.advance(60);
    assert_eq!(register(&h, "alice", Some(&inv.token)), Err(Refusal::InvalidInvite));
    let default = h.create_invite(&NewInvite::account("example.org")).unwrap();
    assert_eq!(default.invite.expires_at, Some(T0 + 60 + DEFAULT_INVITE_TTL as i64));
    new.expiry = Expiry::Never;
    assert_eq!(h.create_invite(&new).unwrap().invite.expires_at, None);
}

#[test]
fn failed_registration_gives_the_use_back() {
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    let inv = h.create_invite(&NewInvite::account("example.org")).unwrap();
    let t = allowed(h.begin_registration(&req("alice", Some(&inv.token), None)).unwrap());
    // While the first attempt is in progress, the single use is held.
    assert_eq!(refused(h.begin_registration(&req("bob", Some(&inv.token), None)).unwrap()), Refusal::InvalidInvite);
    h.finish_registration(t.id, false).unwrap();
    assert_eq!(h.invite("example.org", inv.invite.id).unwrap().unwrap().uses_left, 1);
    register(&h, "bob", Some(&inv.token)).unwrap();
    assert_eq!(h.finish_registration(t.id, true).unwrap_err().code(), "not-found");
}

#[test]
fn fixed_username_is_reserved_for_its_invite() {
    let (h, _) = hosting_with(RegistrationPolicy::Open);
    let mut new = NewInvite::account("example.org");
    new.username = Some("Carol".into());
    let inv = h.create_invite(&new).unwrap();
    assert_eq!(inv.uri, format!("xmpp:carol@example.org?register;preauth={}", inv.token));
    assert_eq!(register(&h, "carol", None), Err(Refusal::UsernameReserved));
    let other = h.create_invite(&NewInvite::account("example.org")).unwrap();
    assert_eq!(register(&h, "carol", Some(&other.token)), Err(Refusal::UsernameReserved));
    assert_eq!(register(&h, "dave", Some(&inv.token)), Err(Refusal::UsernameMismatch));
    register(&h, "CAROL", Some(&inv.token)).unwrap();
}

#[test]
fn group_invite_admits_exactly_its_uses() {
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    let mut new = NewInvite::account("example.org");
    new.uses = 3;
    let inv = h.create_invite(&new).unwrap();
    for u in ["a", "b", "c"] {
        register(&h, u, Some(&inv.token)).unwrap();
    }
    assert_eq!(register(&h, "d", Some(&inv.token)), Err(Refusal::InvalidInvite));
    assert_eq!(h.invites("example.org").unwrap()[0].status(h.now()), InviteStatus::UsedUp);
}

#[test]
fn roster_invite_names_the_inviter() {
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    let mut s = h.require_domain("example.org").unwrap().settings;
    s.registration.users_may_invite = true;
    h.set_domain_settings("example.org", s).unwrap();
    let mut new = NewInvite::account("example.org");
    new.kind = InviteKind::Roster;
    new.created_by = Creator::User("Alice@Example.org".into());
    let inv = h.create_invite(&new).unwrap();
    assert_eq!(inv.uri, format!("xmpp:alice@example.org?roster;preauth={};ibr=y", inv.token));
    let t = register(&h, "bob", Some(&inv.token)).unwrap();
    assert_eq!(t.roster_with.as_deref(), Some("alice@example.org"));
    assert_eq!(t.invite_kind, Some(InviteKind::Roster));
}

#[test]
fn users_invite_only_when_allowed_and_only_their_domain() {
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    let mut new = NewInvite::account("example.org");
    new.created_by = Creator::User("alice@example.org".into());
    assert_eq!(h.create_invite(&new).unwrap_err().code(), "not-allowed");
    new.created_by = Creator::User("mallory@elsewhere.example".into());
    assert_eq!(h.create_invite(&new).unwrap_err().code(), "invalid-argument");
}

#[test]
fn reset_invite_targets_one_account() {
    let (h, _) = hosting_with(RegistrationPolicy::Closed);
    let mut new = NewInvite::account("example.org");
    new.kind = InviteKind::Reset;
    assert_eq!(h.create_invite(&new).unwrap_err().code(), "invalid-argument");
    new.username = Some("alice".into());
    let inv = h.create_invite(&new).unwrap();
    // A closed domain refuses registration, resets included: the server handles resets of
    // existing accounts through the ticket, which a closed domain never hands out.
    assert_eq!(register(&h, "alice", Some(&inv.token)), Err(Refusal::RegistrationClosed));
    let mut s = h.require_domain("example.org").unwrap().settings;
    s.registration.policy = RegistrationPolicy::Invite;
    h.set_domain_settings("example.org", s).unwrap();
    assert!(register(&h, "alice", Some(&inv.token)).unwrap().reset);
}

#[test]
fn closed_refuses_everything() {
    let (h, _) = hosting_with(RegistrationPolicy::Closed);
    let inv = h.create_invite(&NewInvite::account("example.org")).unwrap();
    assert_eq!(register(&h, "alice", None), Err(Refusal::RegistrationClosed));
    assert_eq!(register(&h, "alice", Some(&inv.token)), Err(Refusal::RegistrationClosed));
}

#[test]
fn open_obeys_per_ip_limits() {
    let (h, clock) = hosting_with(RegistrationPolicy::Open);
    let mut s = h.require_domain("example.org").unwrap().settings;
    s.registration.min_seconds_between_per_ip = Some(300);
    s.registration.max_per_ip_per_day = Some(2);
    s.registration.reserved_usernames = vec!["admin".into()];
    s.registration.blocked_usernames = vec!["root".into()];
    h.set_domain_settings("example.org", s).unwrap();
    let ip = Some("198.51.100.7");
    let go = |u: &str| h.begin_registration(&req(u, None, ip)).unwrap();
    assert_eq!(refused(go("Admin")), Refusal::UsernameReserved);
    assert_eq!(refused(go("root")), Refusal::UsernameBlocked);
    let first = allowed(go("u1"));
    h.finish_registration(first.id, true).unwrap();
    clock.advance(100);
    assert_eq!(refused(h.begin_registration(&req("u2", None, ip)).unwrap()), Refusal::TooSoon { retry_at: T0 + 300 });
    // Another address is not affected.
    allowed(h.begin_registration(&req("u2", None, Some("198.51.100.8"))).unwrap());
    clock.advance(200);
    let second = allowed(h.begin_registration(&req("u3", None, ip)).unwrap());
    h.finish_registration(second.id, true).unwrap();
    clock.advance(300);
    assert_eq!(refused(h.begin_registration(&req("u4", None, ip)).unwrap()), Refusal::TooMany { retry_at: T0 + DAY });
    clock.set(T0 + DAY);
    allowed(h.begin_registration(&req("u4", None, ip)).unwrap());
}

#[test]
fn invited_registrations_do_not_count_against_the_address() {
    let (h, _) = hosting_with(RegistrationPolicy::Open);
    let mut s = h.require_domain("example.org").unwrap().settings;
    s.registration.min_seconds_between_per_ip = Some(300);
    h.set_domain_settings("example.org", s).unwrap();
    let inv = h.create_invite(&NewInvite::account("example.org")).unwrap();
    let t = allowed(h.begin_registration(&req("u1", Some(&inv.token), Some("192.0.2.9"))).unwrap());
    h.finish_registration(t.id, true).unwrap();
    allowed(h.begin_registration(&req("u2", None, Some("192.0.2.9"))).unwrap());
}

#[test]
fn failed_attempts_do_not_count_against_the_address() {
    let (h, _) = hosting_with(RegistrationPolicy::Open);
    let mut s = h.require_domain("example.org").unwrap().settings;
    s.registration.min_seconds_between_per_ip = Some(300);
    h.set_domain_settings("example.org", s).unwrap();
    let t = allowed(h.begin_registration(&req("u1", None, Some("192.0.2.9"))).unwrap());
    h.finish_registration(t.id, false).unwrap();
    allowed(h.begin_registration(&req("u1", None, Some("192.0.2.9"))).unwrap());
}

#[test]
fn revoke_and_purge() {
    let (h, clock) = hosting_with(RegistrationPolicy::Invite);
    let a = h.create_invite(&NewInvite::account("example.org")).unwrap();
    let mut short = NewInvite::account("example.org");
    short.expiry = Expiry::After(10);
    let b = h.create_invite(&short).unwrap();
    let c = h.create_invite(&NewInvite::account("example.org")).unwrap();
    let revoked = h.revoke_invite("example.org", a.invite.id, &Creator::Admin).unwrap();
    assert_eq!(revoked.status(h.now()), InviteStatus::Revoked);
    assert_eq!(register(&h, "x", Some(&a.token)), Err(Refusal::InvalidInvite));
    // A registration that never reports back holds its use until it goes stale.
    allowed(h.begin_registration(&req("y", Some(&c.token), None)).unwrap());
    clock.advance(STALE_REGISTRATION_SECS + 1);
    let report = h.purge_invites().unwrap();
    assert_eq!(report, PurgeReport { invites_removed: 2, stale_registrations_failed: 1 });
    let left: Vec<_> = h.invites("example.org").unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(left, [c.invite.id]);
    assert!(h.check_invite("example.org", &b.token).unwrap().is_none());
    register(&h, "y", Some(&c.token)).unwrap();
    assert_eq!(h.revoke_invite("example.org", 9999, &Creator::Admin).unwrap_err().code(), "not-found");
}

#[test]
fn bad_input_is_refused_cleanly() {
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    let huge = "A".repeat(10 * 1024);
    for token in ["", "garbage", "'; DROP TABLE invites; --", huge.as_str(), "\u{0}"] {
        assert_eq!(register(&h, "alice", Some(token)), Err(Refusal::InvalidInvite), "{token:.20}");
        assert!(h.check_invite("example.org", token).unwrap().is_none());
    }
    assert_eq!(register(&h, "", None), Err(Refusal::InvalidUsername));
    assert_eq!(register(&h, "a@b", None), Err(Refusal::InvalidUsername));
    let e = h.begin_registration(&RegistrationRequest { domain: "nope.example", username: "a", ip: None, token: None });
    assert_eq!(e.unwrap_err().code(), "not-found");
    let mut new = NewInvite::account("example.org");
    new.uses = 0;
    assert_eq!(h.create_invite(&new).unwrap_err().code(), "invalid-argument");
    new.uses = 1;
    new.note = Some("n".repeat(MAX_NOTE_LEN + 1));
    assert_eq!(h.create_invite(&new).unwrap_err().code(), "invalid-argument");
    assert!(h.invites("example.org").unwrap().is_empty());
}

#[test]
fn another_domains_token_does_not_work() {
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    h.add_domain("other.example").unwrap();
    let inv = h.create_invite(&NewInvite::account("other.example")).unwrap();
    assert_eq!(register(&h, "alice", Some(&inv.token)), Err(Refusal::InvalidInvite));
}

#[test]
fn racing_redemptions_of_a_single_use_invite_have_one_winner() {
    let store = crate::test_store::TestStore::new("invite-race");
    let admin = store.open();
    admin.add_domain("example.org").unwrap();
    let inv = admin.create_invite(&NewInvite::account("example.org")).unwrap();
    let barrier = Arc::new(Barrier::new(32));
    let threads: Vec<_> = (0..32)
        .map(|i| {
            // Each thread has its own connection, like separate server processes would.
            let h = store.open();
            let token = inv.token.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let user = format!("user{i}");
                h.begin_registration(&RegistrationRequest {
                    domain: "example.org",
                    username: &user,
                    ip: None,
                    token: Some(&token),
                })
                .unwrap()
            })
        })
        .collect();
    let wins = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|d| matches!(d, RegistrationDecision::Allowed(_)))
        .count();
    assert_eq!(wins, 1);
    assert_eq!(admin.invites("example.org").unwrap()[0].uses_left, 0);
}

#[test]
fn new_invite_reads_from_data_with_defaults() {
    let n: NewInvite = serde_json::from_str(r#"{"domain":"example.org"}"#).unwrap();
    assert_eq!((n.kind, n.uses, n.expiry, n.created_by), (InviteKind::Account, 1, Expiry::Default, Creator::Admin));
    let n: NewInvite = serde_json::from_str(
        r#"{"domain":"e.org","kind":"roster","uses":3,"expiry":3600,"created_by":"alice@e.org","note":"hi"}"#,
    )
    .unwrap();
    assert_eq!(n.kind, InviteKind::Roster);
    assert_eq!(n.expiry, Expiry::After(3600));
    assert_eq!(n.created_by, Creator::User("alice@e.org".into()));
    let n: NewInvite = serde_json::from_str(r#"{"domain":"e.org","expiry":"never"}"#).unwrap();
    assert_eq!(n.expiry, Expiry::Never);
    for bad in [
        r#"{"domain":"e.org","expiry":"soon"}"#,
        r#"{"domain":"e.org","kind":"x"}"#,
        r#"{"domain":"e.org","usez":2}"#,
        "{}",
    ] {
        assert!(serde_json::from_str::<NewInvite>(bad).is_err(), "{bad}");
    }
}

/// A roster invite from `inviter` on example.org, whose users may invite.
fn roster_invite(h: &Hosting, inviter: &str, uses: u32) -> CreatedInvite {
    let mut s = h.require_domain("example.org").unwrap().settings;
    s.registration.users_may_invite = true;
    h.set_domain_settings("example.org", s).unwrap();
    let mut new = NewInvite::account("example.org");
    new.kind = InviteKind::Roster;
    new.uses = uses;
    new.created_by = Creator::User(inviter.into());
    h.create_invite(&new).unwrap()
}

fn ignored(reason: IgnoredToken) -> SubscriptionDecision {
    SubscriptionDecision::Ignored { reason }
}

#[test]
fn a_roster_invite_preapproves_an_existing_accounts_subscription_once() {
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    let inv = roster_invite(&h, "alice@example.org", 1);
    let approved = h.preauthorize_subscription("Alice@example.org", "Bob@elsewhere.example", &inv.token).unwrap();
    assert_eq!(approved, SubscriptionDecision::Approved { invite_id: inv.invite.id });
    let again = h.preauthorize_subscription("alice@example.org", "carol@elsewhere.example", &inv.token).unwrap();
    assert_eq!(again, ignored(IgnoredToken::InvalidInvite));
    // The use is the one a registration would have spent.
    assert_eq!(register(&h, "dave", Some(&inv.token)).unwrap_err(), Refusal::InvalidInvite);
    let audit = h.invite_audit("example.org", 10).unwrap();
    let redeemed = audit.iter().find(|a| a.action == "redeemed").unwrap();
    assert_eq!(redeemed.actor.as_deref(), Some("bob@elsewhere.example"));
    assert_eq!(redeemed.detail.as_deref(), Some("subscription to alice@example.org pre-approved"));
}

#[test]
fn a_subscription_token_counts_only_for_its_inviter_and_kind() {
    let (h, clock) = hosting_with(RegistrationPolicy::Invite);
    let inv = roster_invite(&h, "alice@example.org", 2);
    let decide = |to: &str, token: &str| h.preauthorize_subscription(to, "bob@elsewhere.example", token).unwrap();
    assert_eq!(decide("carol@example.org", &inv.token), ignored(IgnoredToken::OtherInviter));
    let own = h.preauthorize_subscription("alice@example.org", "ALICE@example.org", &inv.token).unwrap();
    assert_eq!(own, ignored(IgnoredToken::OwnInvite));
    let account = h.create_invite(&NewInvite::account("example.org")).unwrap();
    assert_eq!(decide("alice@example.org", &account.token), ignored(IgnoredToken::NotARosterInvite));
    for garbage in ["", "x", "'; DROP TABLE invites; --", &"a".repeat(10_000)] {
        assert_eq!(decide("alice@example.org", garbage), ignored(IgnoredToken::InvalidInvite));
    }
    // None of that spent a use.
    assert_eq!(h.check_invite("example.org", &inv.token).unwrap().unwrap().uses_left, 2);
    clock.advance(8 * DAY);
    assert_eq!(decide("alice@example.org", &inv.token), ignored(IgnoredToken::InvalidInvite));
}

#[test]
fn a_subscription_needs_a_local_inviter_and_a_bare_contact() {
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    let inv = roster_invite(&h, "alice@example.org", 1);
    for (to, from) in [
        ("alice@not-hosted.example", "bob@elsewhere.example"),
        ("example.org", "bob@elsewhere.example"),
        ("alice@example.org", ""),
        ("alice@example.org", "bob@elsewhere.example/phone"),
    ] {
        assert!(h.preauthorize_subscription(to, from, &inv.token).is_err(), "{to} {from}");
    }
    assert_eq!(h.check_invite("example.org", &inv.token).unwrap().unwrap().uses_left, 1);
}
