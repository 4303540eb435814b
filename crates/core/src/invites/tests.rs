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
    // A registration that never reports back holds its use until a server says its account
    // does not exist; the purge alone never gives it back.
    let pending = allowed(h.begin_registration(&req("y", Some(&c.token), None)).unwrap());
    clock.advance(STALE_REGISTRATION_SECS + 1);
    let report = h.purge_invites().unwrap();
    assert_eq!(report, PurgeReport { invites_removed: 2, registrations_unsettled: 1 });
    let left: Vec<_> = h.invites("example.org").unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(left, [c.invite.id]);
    assert!(h.check_invite("example.org", &b.token).unwrap().is_none());
    let stale = h.stale_registrations(10).unwrap();
    assert_eq!(stale, [StaleRegistration { id: pending.id, domain: "example.org".into(), username: "y".into() }]);
    let outcome = AccountOutcome { id: pending.id, account_exists: false };
    assert_eq!(h.settle_stale_registrations(&[outcome]).unwrap(), 1);
    assert_eq!(h.settle_stale_registrations(&[outcome]).unwrap(), 0, "settled once");
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

/// Issue 11.7: the server created the account but could not report it (the store failed at
/// that moment). Ten minutes on, the purge must not give the single-use invite's use back on a
/// guess: only the server's account store can say, and here it says the account exists.
#[test]
fn a_created_account_whose_report_failed_never_gives_its_use_back() {
    let (h, clock) = hosting_with(RegistrationPolicy::Invite);
    let inv = h.create_invite(&NewInvite::account("example.org")).unwrap();
    let t = allowed(h.begin_registration(&req("alice", Some(&inv.token), None)).unwrap());
    // finish_registration(t.id, true) never arrives.
    clock.advance(STALE_REGISTRATION_SECS + 1);
    h.purge_invites().unwrap();
    assert_eq!(register(&h, "mallory", Some(&inv.token)), Err(Refusal::InvalidInvite));
    assert_eq!(h.invites("example.org").unwrap()[0].uses_left, 0, "the use stays held while unsettled");
    let stale = h.stale_registrations(10).unwrap();
    assert_eq!(stale.len(), 1);
    h.settle_stale_registrations(&[AccountOutcome { id: t.id, account_exists: true }]).unwrap();
    assert_eq!(register(&h, "mallory", Some(&inv.token)), Err(Refusal::InvalidInvite));
    assert!(h.stale_registrations(10).unwrap().is_empty());
    let audit = h.invite_audit("example.org", 10).unwrap();
    assert!(audit.iter().any(|a| a.action == "redeemed" && a.actor.as_deref() == Some("alice@example.org")));
    // Now used up and settled, the invite goes with the next purge.
    assert_eq!(h.purge_invites().unwrap().invites_removed, 1);
}

#[test]
fn a_registration_is_not_stale_before_its_time_nor_settled_twice() {
    let (h, clock) = hosting_with(RegistrationPolicy::Invite);
    let inv = h.create_invite(&NewInvite::account("example.org")).unwrap();
    let t = allowed(h.begin_registration(&req("alice", Some(&inv.token), None)).unwrap());
    clock.advance(STALE_REGISTRATION_SECS - 1);
    assert!(h.stale_registrations(10).unwrap().is_empty());
    // A server cannot settle a registration that is still in flight.
    assert_eq!(h.settle_stale_registrations(&[AccountOutcome { id: t.id, account_exists: false }]).unwrap(), 0);
    h.finish_registration(t.id, true).unwrap();
    clock.advance(10);
    assert!(h.stale_registrations(10).unwrap().is_empty());
}

/// Issue 11.5: the purge works in bounded steps (each its own transaction) and walks the table
/// once; it removes everything unusable however many there are.
#[test]
fn the_purge_runs_in_bounded_steps() {
    let (h, clock) = hosting_with(RegistrationPolicy::Invite);
    let mut short = NewInvite::account("example.org");
    short.expiry = Expiry::After(1);
    let n = PURGE_STEP * 2 + 7;
    for _ in 0..n {
        h.create_invite(&short).unwrap();
    }
    let keep = h.create_invite(&NewInvite::account("example.org")).unwrap();
    clock.advance(2);
    let now = h.now();
    let (removed, last) = h.purge_step(now, 0, 10).unwrap();
    assert_eq!(removed, 10);
    assert_eq!(h.invites("example.org").unwrap().len(), n + 1 - 10);
    let (removed_after, _) = h.purge_step(now, last.unwrap(), 5).unwrap();
    assert_eq!(removed_after, 5);
    assert_eq!(h.purge_invites().unwrap().invites_removed, n - 15);
    let left: Vec<_> = h.invites("example.org").unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(left, [keep.invite.id]);
}

/// The purge's pending check and the ON DELETE SET NULL of a deleted invite look registrations up
/// by invite: without an index each scanned the whole table (30 s for 2,000 invites against
/// 100,000 registrations, under the write lock).
#[test]
fn registrations_are_found_by_invite_through_an_index() {
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    let plans = h
        .store()
        .read(|c| {
            let plan = |q: &str| -> crate::Result<String> {
                let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {q}"))?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(3))?.collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows.join("; "))
            };
            Ok([
                plan("UPDATE registrations SET invite_id = NULL WHERE invite_id = 1")?,
                plan("SELECT 1 FROM registrations r WHERE r.invite_id = 1 AND r.state = 'pending'")?,
            ])
        })
        .unwrap();
    for plan in plans {
        assert!(plan.contains("registrations_by_invite"), "{plan}");
    }
}

#[test]
fn zero_registrations_per_ip_per_day_is_no_limit() {
    let (h, _) = hosting_with(RegistrationPolicy::Open);
    let mut s = h.require_domain("example.org").unwrap().settings;
    s.registration.max_per_ip_per_day = Some(0);
    s.registration.min_seconds_between_per_ip = Some(0);
    h.set_domain_settings("example.org", s).unwrap();
    for u in ["u1", "u2", "u3"] {
        let t = allowed(h.begin_registration(&req(u, None, Some("192.0.2.5"))).unwrap());
        h.finish_registration(t.id, true).unwrap();
    }
}

#[test]
fn an_ipv4_mapped_address_counts_as_the_ipv4_address() {
    let (h, _) = hosting_with(RegistrationPolicy::Open);
    let mut s = h.require_domain("example.org").unwrap().settings;
    s.registration.min_seconds_between_per_ip = Some(3600);
    h.set_domain_settings("example.org", s).unwrap();
    let t = allowed(h.begin_registration(&req("u1", None, Some("::ffff:192.0.2.7"))).unwrap());
    h.finish_registration(t.id, true).unwrap();
    assert!(matches!(
        refused(h.begin_registration(&req("u2", None, Some("192.0.2.7"))).unwrap()),
        Refusal::TooSoon { .. }
    ));
    assert_eq!(canonical_ip("::FFFF:10.0.0.1"), "10.0.0.1");
    assert_eq!(canonical_ip("0:0:0:0:0:0:0:1"), "::1");
    assert_eq!(canonical_ip("not an address"), "not an address");
}

/// Issue 11.3: look-alike names reach the core raw from ejabberd; they must meet the reserved and
/// blocked lists and the names held by invites in the form the account is created under.
#[test]
fn look_alike_usernames_meet_reserved_blocked_and_held_names() {
    let (h, _) = hosting_with(RegistrationPolicy::Open);
    let mut s = h.require_domain("example.org").unwrap().settings;
    s.registration.reserved_usernames = vec!["admin".into()];
    s.registration.blocked_usernames = vec!["root".into()];
    h.set_domain_settings("example.org", s).unwrap();
    let mut named = NewInvite::account("example.org");
    named.username = Some("carol".into());
    let carol = h.create_invite(&named).unwrap();
    assert_eq!(register(&h, "admin\u{00AD}", None), Err(Refusal::UsernameReserved));
    assert_eq!(register(&h, "ro\u{200B}ot", None), Err(Refusal::UsernameBlocked));
    assert_eq!(register(&h, "carol\u{00AD}", None), Err(Refusal::UsernameReserved));
    let other = h.create_invite(&NewInvite::account("example.org")).unwrap();
    assert_eq!(register(&h, "ro\u{200B}ot", Some(&other.token)), Err(Refusal::UsernameBlocked));
    assert_eq!(register(&h, "CAROL\u{00AD}", Some(&other.token)), Err(Refusal::UsernameReserved));
    // The invited name in any look-alike form is the invitee's, and is stored prepped.
    let t = register(&h, "Carol\u{00AD}", Some(&carol.token)).unwrap();
    assert_eq!(t.username, "carol");
    // Names nodeprep refuses are refused, not stored.
    assert_eq!(register(&h, "a\u{00A0}b", None), Err(Refusal::InvalidUsername));
}

#[test]
fn a_suspended_domains_invites_are_not_called_valid() {
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    let inv = h.create_invite(&NewInvite::account("example.org")).unwrap();
    assert!(h.check_invite("example.org", &inv.token).unwrap().is_some());
    // A customer's domain whose proof has been gone past the grace period (as the re-check
    // leaves it): owned by alice, her claim suspended.
    let mut s = h.require_domain("example.org").unwrap().settings;
    s.owner = Some("alice".into());
    h.set_domain_settings("example.org", s).unwrap();
    h.store()
        .write(|tx| {
            tx.execute(
                "INSERT INTO domain_claims (domain, account, token, state, created_at) \
                 VALUES ('example.org', 'alice', 't', 'suspended', 0)",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    assert!(h.check_invite("example.org", &inv.token).unwrap().is_none());
    assert_eq!(register(&h, "bob", Some(&inv.token)), Err(Refusal::DomainSuspended));
}

/// Issue 10.3: what admins typed wrong on prosodyctl and ejabberdctl, refused in their words
/// (no "untagged enum ExpiryRepr", no list of internal field names, no conversion failure).
#[test]
fn bad_invite_input_is_refused_in_the_admins_words() {
    let msg = |r: Result<NewInvite>| r.unwrap_err().to_string();
    let opts =
        |a: &[&str]| NewInvite::from_options("example.org", &a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let n = opts(&["--uses", "3", "--expires-in", "never", "--note", "family", "--kind", "roster"]).unwrap();
    assert_eq!((n.uses, n.expiry, n.note.as_deref(), n.kind), (3, Expiry::Never, Some("family"), InviteKind::Roster));
    assert_eq!(opts(&["--expires-in", "86400"]).unwrap().expiry, Expiry::After(86_400));
    let e = msg(opts(&["--bogusflag", "1"]));
    assert!(
        e.contains("unknown option \"--bogusflag\"") && e.contains("--expires-in") && !e.contains("created_by"),
        "{e}"
    );
    let e = msg(opts(&["--expires-in", "-5"]));
    assert!(e.contains("from 1 to 315360000") && e.contains("not \"-5\"") && !e.contains("ExpiryRepr"), "{e}");
    assert!(msg(opts(&["--expires-in", "99999999999999"])).contains("ten years"));
    let e = msg(opts(&["--uses", "99999999999999999999"]));
    assert!(e.contains("uses is a whole number from 1 to 100000"), "{e}");
    assert!(msg(opts(&["--uses"])).contains("needs a value"));
    // The same words from data (Lua tables, Erlang maps, C's JSON), numbers or digits alike.
    for (json, want) in [
        (r#"{"domain":"e.org","expiry":-5}"#, "not -5"),
        (r#"{"domain":"e.org","expiry":"-5"}"#, "not \"-5\""),
        (r#"{"domain":"e.org","expiry":1.5}"#, "not 1.5"),
        (r#"{"domain":"e.org","expiry":99999999999999}"#, "ten years"),
        (r#"{"domain":"e.org","uses":"99999999999999999999"}"#, "from 1 to 100000"),
        (r#"{"domain":"e.org","uses":-1}"#, "not -1"),
    ] {
        let e = serde_json::from_str::<NewInvite>(json).unwrap_err().to_string();
        assert!(e.contains(want) && !e.contains("ExpiryRepr"), "{json}: {e}");
    }
    let n: NewInvite = serde_json::from_str(r#"{"domain":"e.org","uses":"2","expiry":"3600"}"#).unwrap();
    assert_eq!((n.uses, n.expiry), (2, Expiry::After(3600)));
    // The cap holds however the invite is made.
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    let mut long = NewInvite::account("example.org");
    long.expiry = Expiry::After(MAX_EXPIRES_IN + 1);
    assert_eq!(h.create_invite(&long).unwrap_err().code(), "invalid-argument");
    long.expiry = Expiry::After(0);
    assert_eq!(h.create_invite(&long).unwrap_err().code(), "invalid-argument");
    // Invite ids as typed.
    assert_eq!(parse_invite_id(" 12").unwrap(), 12);
    for bad in ["1.5", "-3", "0", "99999999999999999999", "x"] {
        let e = parse_invite_id(bad).unwrap_err().to_string();
        assert!(e.contains("an invite id is a whole number"), "{bad}: {e}");
    }
}

/// Found by the purge's integration test: once the newest invites were purged, the next invite
/// took a purged one's id (SQLite's max + 1) and inherited its audit trail.
#[test]
fn a_purged_invites_id_is_never_given_to_a_new_one() {
    let (h, _) = hosting_with(RegistrationPolicy::Invite);
    let old = h.create_invite(&NewInvite::account("example.org")).unwrap();
    register(&h, "alice", Some(&old.token)).unwrap();
    assert_eq!(h.purge_invites().unwrap().invites_removed, 1);
    let new = h.create_invite(&NewInvite::account("example.org")).unwrap();
    assert!(new.invite.id > old.invite.id);
    let trail: Vec<_> =
        h.invite_audit("example.org", 50).unwrap().into_iter().filter(|a| a.invite_id == new.invite.id).collect();
    assert_eq!(trail.len(), 1, "{trail:?}");
}

/// Migration 0006 rebuilds the invites table: a store written before it keeps its invites, their
/// registrations' links, and never reuses an id its audit trail knows.
#[test]
fn the_invite_table_rebuild_keeps_invites_and_links() {
    use rusqlite_migration::{Migrations, M};
    let mut c = rusqlite::Connection::open_in_memory().unwrap();
    c.pragma_update(None, "foreign_keys", true).unwrap();
    let before = Migrations::new(vec![
        M::up(include_str!("../../migrations/0001_domains.sql")),
        M::up(include_str!("../../migrations/0002_invites.sql")),
    ]);
    before.to_latest(&mut c).unwrap();
    c.execute_batch(
        "INSERT INTO domains (name, created_at, updated_at) VALUES ('example.org', 0, 0);
         INSERT INTO invites (id, domain, token_hash, kind, uses_total, uses_left, created_by, created_at)
              VALUES (3, 'example.org', x'01', 'account', 2, 1, 'admin', 0);
         INSERT INTO registrations (domain, username, invite_id, by_invite, state, started_at)
              VALUES ('example.org', 'alice', 3, 1, 'created', 0);
         INSERT INTO invite_audit (at, domain, invite_id, action) VALUES (0, 'example.org', 9, 'purged');",
    )
    .unwrap();
    let tx = c.transaction().unwrap();
    tx.execute_batch(include_str!("../../migrations/0006_invite_purge.sql")).unwrap();
    tx.commit().unwrap();
    let link: Option<i64> = c.query_row("SELECT invite_id FROM registrations", [], |r| r.get(0)).unwrap();
    assert_eq!(link, Some(3));
    let uses: i64 = c.query_row("SELECT uses_left FROM invites WHERE id = 3", [], |r| r.get(0)).unwrap();
    assert_eq!(uses, 1);
    c.execute(
        "INSERT INTO invites (domain, token_hash, kind, uses_total, uses_left, created_by, created_at)
         VALUES ('example.org', x'02', 'account', 1, 1, 'admin', 0)",
        [],
    )
    .unwrap();
    assert_eq!(c.last_insert_rowid(), 10, "past the purged invite 9 the audit trail knows");
    let fk_problems: i64 = c.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
    assert_eq!(fk_problems, 0);
}

#[test]
fn a_purge_started_for_a_server_waits_for_a_held_lock_on_the_workers_connection() {
    // A purge started from a server's admin command waits as the worker does, not fails as the
    // server's own handle would (and does not hold the server's connection while it waits).
    let store = crate::test_store::TestStore::new("purge-held-lock");
    let h = store.open_as_server();
    h.add_domain("example.org").unwrap();
    let held = store.hold_write_lock();
    let pending = h.start_purge_invites().unwrap();
    crate::test_store::release_after_waiting(&pending, held);
    let report = pending.wait();
    assert!(report.is_ok(), "{report:?}");
}
