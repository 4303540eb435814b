use std::sync::{Arc, Barrier};

use super::windows::{DAY, HOUR};
use super::*;
use crate::{DomainSettings, Hosting, ManualClock};

/// On an hour boundary, so bucket arithmetic in the expectations stays readable.
const T0: i64 = 1_700_002_800;

fn hosting(limits: UploadLimits) -> (Hosting, ManualClock) {
    let clock = ManualClock::new(T0);
    let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
    h.add_domain_with("example.org", DomainSettings { uploads: limits, ..Default::default() }).unwrap();
    (h, clock)
}

fn granted(d: UploadDecision) -> Reservation {
    match d {
        UploadDecision::Granted(r) => r,
        UploadDecision::Denied(d) => panic!("denied: {d:?}"),
    }
}

fn denied(d: UploadDecision) -> Denial {
    match d {
        UploadDecision::Denied(d) => d,
        UploadDecision::Granted(r) => panic!("granted: {r:?}"),
    }
}

/// Authorizes and commits one upload; returns its file id.
fn upload(h: &Hosting, user: &str, size: i64) -> String {
    let r = granted(h.authorize_upload("example.org", user, size).unwrap());
    let id = format!("file-{}", r.id);
    h.commit_upload(r.id, size, &id).unwrap();
    id
}

#[test]
fn a_file_over_the_size_limit_is_refused_with_the_limit() {
    let (h, _) = hosting(UploadLimits { max_file_size: Some(1000), ..Default::default() });
    let d = denied(h.authorize_upload("example.org", "alice", 1001).unwrap());
    assert_eq!((d.limit, d.limit_value, d.requested, d.retry_at), (UploadLimit::FileSize, 1000, 1001, None));
    assert_eq!(d.condition(), ("modify", "not-acceptable"));
    granted(h.authorize_upload("example.org", "alice", 1000).unwrap());
}

#[test]
fn the_daily_limit_refuses_until_the_hour_leaves_the_window() {
    let (h, clock) = hosting(UploadLimits { user_daily: Some(1000), ..Default::default() });
    upload(&h, "alice", 600);
    clock.advance(2 * HOUR + 30);
    upload(&h, "alice", 300);
    let d = denied(h.authorize_upload("example.org", "alice", 200).unwrap());
    assert_eq!((d.limit, d.usage, d.limit_value), (UploadLimit::UserDaily, 900, 1000));
    assert_eq!(d.condition(), ("wait", "resource-constraint"));
    // The 600 bytes were uploaded in the hour starting at T0: they leave the window one day
    // after that hour ends. Only then does the 200-byte file fit.
    assert_eq!(d.retry_at, Some(T0 + HOUR + DAY));
    clock.set(T0 + HOUR + DAY - 1);
    denied(h.authorize_upload("example.org", "alice", 200).unwrap());
    clock.set(T0 + HOUR + DAY);
    granted(h.authorize_upload("example.org", "alice", 200).unwrap());
    // Another user is not affected by alice's volume.
    granted(h.authorize_upload("example.org", "bob", 1000).unwrap());
}

#[test]
fn weekly_monthly_and_domain_windows() {
    let limits = UploadLimits { user_weekly: Some(500), domain_monthly: Some(800), ..Default::default() };
    let (h, clock) = hosting(limits);
    upload(&h, "alice", 500);
    clock.advance(3 * DAY);
    let d = denied(h.authorize_upload("example.org", "alice", 1).unwrap());
    assert_eq!((d.limit, d.retry_at), (UploadLimit::UserWeekly, Some(T0 + HOUR + 7 * DAY)));
    upload(&h, "bob", 300);
    let d = denied(h.authorize_upload("example.org", "carol", 1).unwrap());
    assert_eq!((d.limit, d.usage), (UploadLimit::DomainMonthly, 800));
    assert_eq!(d.retry_at, Some(T0 + HOUR + 30 * DAY));
}

#[test]
fn a_file_larger_than_a_window_limit_is_told_waiting_will_not_help() {
    let (h, _) = hosting(UploadLimits { user_daily: Some(100), ..Default::default() });
    assert_eq!(denied(h.authorize_upload("example.org", "alice", 101).unwrap()).retry_at, None);
}

#[test]
fn deleting_a_file_frees_storage_but_not_volume() {
    let limits = UploadLimits { user_storage: Some(1000), user_daily: Some(1500), ..Default::default() };
    let (h, _) = hosting(limits);
    let first = upload(&h, "alice", 800);
    let d = denied(h.authorize_upload("example.org", "alice", 300).unwrap());
    assert_eq!((d.limit, d.usage, d.retry_at), (UploadLimit::UserStorage, 800, None));
    assert!(h.forget_file(&first).unwrap());
    assert!(!h.forget_file(&first).unwrap());
    upload(&h, "alice", 700);
    // Storage has room again (700 of 1000) but 1500 bytes went through today.
    let d = denied(h.authorize_upload("example.org", "alice", 100).unwrap());
    assert_eq!((d.limit, d.usage), (UploadLimit::UserDaily, 1500));
    let usage = h.upload_usage("example.org", Some("alice")).unwrap();
    assert_eq!(usage, UploadUsage { stored: 700, reserved: 0, daily: 1500, weekly: 1500, monthly: 1500 });
}

#[test]
fn reservations_count_until_released_or_expired() {
    let (h, clock) = hosting(UploadLimits { domain_storage: Some(1000), slot_lifetime: 60, ..Default::default() });
    let a = granted(h.authorize_upload("example.org", "alice", 600).unwrap());
    assert_eq!(a.expires_at, T0 + 60);
    assert_eq!(denied(h.authorize_upload("example.org", "bob", 600).unwrap()).limit, UploadLimit::DomainStorage);
    h.release_upload(a.id).unwrap();
    let b = granted(h.authorize_upload("example.org", "bob", 600).unwrap());
    denied(h.authorize_upload("example.org", "carol", 600).unwrap());
    clock.advance(61);
    // b expired unused: the next decision releases it.
    let c = granted(h.authorize_upload("example.org", "carol", 600).unwrap());
    // An upload that completes after its slot expired is still recorded.
    h.commit_upload(b.id, 600, "late-file").unwrap();
    assert_eq!(h.upload_usage("example.org", None).unwrap().stored, 600);
    assert_eq!(h.upload_usage("example.org", None).unwrap().reserved, 600);
    h.commit_upload(c.id, 500, "c-file").unwrap();
    assert_eq!(
        h.upload_usage("example.org", None).unwrap(),
        UploadUsage { stored: 1100, reserved: 0, daily: 1100, weekly: 1100, monthly: 1100 }
    );
    assert_eq!(h.commit_upload(c.id, 500, "again").unwrap_err().code(), "not-found");
    assert_eq!(h.release_upload(12345).unwrap_err().code(), "not-found");
    // Ids are never reused, so a stale id cannot reach a newer slot.
    h.add_domain("other.example").unwrap();
    let d = granted(h.authorize_upload("other.example", "dave", 1).unwrap());
    assert!(d.id > c.id);
}

#[test]
fn a_user_override_beats_the_domain_policy() {
    let (h, _) = hosting(UploadLimits { max_file_size: Some(100), user_storage: Some(100), ..Default::default() });
    let vip = UserUploadLimits { max_file_size: Some(10_000), storage: Some(10_000), ..Default::default() };
    h.set_user_upload_limits("example.org", "VIP", Some(&vip)).unwrap();
    assert_eq!(h.user_upload_limits("example.org", "vip").unwrap(), Some(vip));
    upload(&h, "vip", 5000);
    assert_eq!(denied(h.authorize_upload("example.org", "other", 5000).unwrap()).limit, UploadLimit::FileSize);
    h.set_user_upload_limits("example.org", "vip", None).unwrap();
    assert_eq!(denied(h.authorize_upload("example.org", "vip", 50).unwrap()).limit, UploadLimit::UserStorage);
}

#[test]
fn limits_are_set_by_name_for_a_domain_or_a_user() {
    let (h, _) = hosting(UploadLimits::default());
    let domain = h.set_upload_limit("example.org", None, "user_daily", "1000").unwrap();
    assert_eq!(domain.limits.daily, None, "a per-user limit is not the domain's own");
    assert_eq!(h.upload_report("example.org", Some("bob")).unwrap().limits.daily, Some(1000));
    let alice = h.set_upload_limit("example.org", Some("Alice"), "daily", "5000").unwrap();
    assert_eq!(alice.limits.daily, Some(5000));
    let alice = h.set_upload_limit("example.org", Some("alice"), "storage", " 70 ").unwrap();
    assert_eq!((alice.limits.daily, alice.limits.storage), (Some(5000), Some(70)));
    let alice = h.set_upload_limit("example.org", Some("alice"), "daily", "null").unwrap();
    assert_eq!(alice.limits.daily, Some(1000), "removing the exception falls back to the domain");
    for (user, limit, value) in [
        (Some("alice"), "hourly", "1"),
        (Some("alice"), "daily", "-1"),
        (Some("alice"), "daily", "lots"),
        (Some("alice"), "daily", "1e3"),
        (None, "bogus", "1"),
        (None, "user_daily", "lots"),
    ] {
        let err = h.set_upload_limit("example.org", user, limit, value).unwrap_err();
        assert_eq!(err.code(), "invalid-argument", "{limit} {value}: {err}");
    }
    assert_eq!(h.upload_report("example.org", Some("alice")).unwrap().limits.storage, Some(70));
    assert!(h.set_upload_limit("missing.example", Some("alice"), "daily", "1").is_err());
}

#[test]
fn the_global_cap_spans_domains() {
    let (h, _) = hosting(UploadLimits::default());
    h.add_domain("other.example").unwrap();
    h.set_provider_setting("uploads.storage", "1000").unwrap();
    upload(&h, "alice", 700);
    let d = denied(h.authorize_upload("other.example", "bob", 400).unwrap());
    assert_eq!((d.limit, d.usage), (UploadLimit::GlobalStorage, 700));
    assert_eq!(h.global_upload_usage().unwrap().stored, 700);
}

#[test]
fn bad_sizes_and_names_are_refused() {
    let (h, _) = hosting(UploadLimits::default());
    for size in [0, -1, i64::MIN] {
        assert_eq!(h.authorize_upload("example.org", "alice", size).unwrap_err().code(), "invalid-argument");
    }
    assert_eq!(h.authorize_upload("example.org", "a@b", 1).unwrap_err().code(), "invalid-argument");
    assert_eq!(h.authorize_upload("missing.example", "alice", 1).unwrap_err().code(), "not-found");
    for text in ["", "0", "-1", "+5", "1e3", "abc", "12 34", "9223372036854775808", "99999999999999999999"] {
        assert_eq!(parse_upload_size(text).unwrap_err().code(), "invalid-argument", "{text:?}");
    }
    // Sizes no server could store are bad requests, whatever the domain's limits, and say why.
    for text in ["9223372036854775807", "1125899906842625"] {
        let e = parse_upload_size(text).unwrap_err();
        assert!(e.to_string().contains("larger than any server can store"), "{e}");
    }
    assert_eq!(parse_upload_size("1125899906842624").unwrap(), MAX_UPLOAD_SIZE as i64);
    assert_eq!(parse_upload_size(" 42 ").unwrap(), 42);
    let r = granted(h.authorize_upload("example.org", "alice", 10).unwrap());
    assert_eq!(h.commit_upload(r.id, -5, "f").unwrap_err().code(), "invalid-argument");
    assert_eq!(h.commit_upload(r.id, MAX_UPLOAD_SIZE as i64 + 1, "f").unwrap_err().code(), "invalid-argument");
    assert_eq!(h.commit_upload(r.id, 5, "").unwrap_err().code(), "invalid-argument");
}

#[test]
fn denials_serialise_with_their_stanza_error() {
    let d = Denial { limit: UploadLimit::UserDaily, limit_value: 10, usage: 9, requested: 5, retry_at: Some(77) };
    let v = serde_json::to_value(UploadDecision::Denied(d)).unwrap();
    assert_eq!(v["decision"], "denied");
    assert_eq!(v["limit"], "user-daily");
    assert_eq!(
        (v["type"].as_str(), v["condition"].as_str(), v["retry_at"].as_i64()),
        (Some("wait"), Some("resource-constraint"), Some(77))
    );
}

#[test]
fn twenty_parallel_requests_never_overshoot_a_cap() {
    let store = crate::test_store::TestStore::new("quota-race");
    let admin = store.open();
    admin
        .add_domain_with(
            "example.org",
            DomainSettings {
                uploads: UploadLimits { user_storage: Some(1000), ..Default::default() },
                ..Default::default()
            },
        )
        .unwrap();
    let barrier = Arc::new(Barrier::new(20));
    let grants: usize = (0..20)
        .map(|_| {
            let h = store.open();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                matches!(h.authorize_upload("example.org", "alice", 300).unwrap(), UploadDecision::Granted(_))
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap() as usize)
        .sum();
    assert_eq!(grants, 3);
    assert_eq!(admin.upload_usage("example.org", Some("alice")).unwrap().reserved, 900);
}

#[test]
fn counts_survive_a_restart_exactly() {
    let store = crate::test_store::TestStore::new("quota-restart");
    let clock = ManualClock::new(T0);
    let pending;
    {
        let h = store.open().with_clock(clock.clone());
        h.add_domain("example.org").unwrap();
        let kept = upload(&h, "alice", 100);
        let gone = upload(&h, "alice", 50);
        h.forget_file(&gone).unwrap();
        pending = granted(h.authorize_upload("example.org", "alice", 25).unwrap()).id;
        let _ = kept;
    }
    let h = store.open().with_clock(clock);
    assert_eq!(
        h.upload_usage("example.org", Some("alice")).unwrap(),
        UploadUsage { stored: 100, reserved: 25, daily: 150, weekly: 150, monthly: 150 }
    );
    h.commit_upload(pending, 25, "after-restart").unwrap();
    assert_eq!(h.global_upload_usage().unwrap(), UploadUsage { stored: 125, ..Default::default() });
}

#[test]
fn maintenance_releases_and_prunes() {
    let (h, clock) = hosting(UploadLimits { slot_lifetime: 10, ..Default::default() });
    upload(&h, "alice", 10);
    granted(h.authorize_upload("example.org", "alice", 10).unwrap());
    clock.advance(40 * DAY);
    // The expired reservation is released and, being long past, forgotten; the old hourly and
    // daily volume buckets of the user and of the domain are pruned.
    assert_eq!(h.purge_upload_ledger().unwrap(), 1 + 1 + 4);
    assert_eq!(h.upload_usage("example.org", Some("alice")).unwrap(), UploadUsage { stored: 10, ..Default::default() });
}

fn volume_rows(h: &Hosting) -> i64 {
    h.store().read(|c| Ok(c.query_row("SELECT count(*) FROM upload_volume", [], |r| r.get(0))?)).unwrap()
}

#[test]
fn commits_prune_their_own_old_buckets() {
    let (h, clock) = hosting(UploadLimits { user_daily: Some(1_000_000), ..Default::default() });
    // An upload every hour for 40 days: without pruning that is 960 hourly and 40 daily rows
    // per scope; each commit drops what no window reaches, so a scope keeps about one window.
    for _ in 0..40 * 24 {
        upload(&h, "alice", 10);
        clock.advance(HOUR);
    }
    let per_scope = volume_rows(&h) / 2;
    assert!(per_scope <= 25 + 31, "{per_scope} buckets per scope");
    let usage = h.upload_usage("example.org", Some("alice")).unwrap();
    // The windows still count exactly their buckets: 24 hours, 7 and 30 days (plus the
    // current partial day), each hour holding 10 bytes.
    assert_eq!(usage.daily, 24 * 10);
    assert_eq!(
        (usage.weekly, usage.monthly),
        ((7 * 24 + (T0 % DAY) / HOUR) as u64 * 10, (30 * 24 + (T0 % DAY) / HOUR) as u64 * 10)
    );
}

#[test]
fn the_purge_drops_buckets_of_scopes_that_stopped() {
    let (h, clock) = hosting(UploadLimits::default());
    upload(&h, "alice", 10);
    upload(&h, "bob", 10);
    // alice, bob and the domain, each with an hourly and a daily bucket.
    assert_eq!(volume_rows(&h), 3 * 2);
    clock.advance(29 * DAY);
    // Hourly buckets have left the daily window; daily ones are still in the month.
    assert_eq!(h.purge_upload_ledger().unwrap(), 3);
    clock.advance(2 * DAY);
    assert_eq!(h.purge_upload_ledger().unwrap(), 3);
    assert_eq!((volume_rows(&h), h.purge_upload_ledger().unwrap()), (0, 0));
}

#[test]
fn reports_show_usage_beside_the_limits_that_apply() {
    let limits = UploadLimits {
        max_file_size: Some(100),
        user_storage: Some(1000),
        user_daily: Some(500),
        domain_storage: Some(5000),
        domain_monthly: Some(9000),
        ..Default::default()
    };
    let (h, _) = hosting(limits);
    h.set_provider_setting("uploads.storage", "20000").unwrap();
    let vip = UserUploadLimits { daily: Some(800), ..Default::default() };
    h.set_user_upload_limits("example.org", "vip", Some(&vip)).unwrap();
    upload(&h, "vip", 60);
    granted(h.authorize_upload("example.org", "alice", 40).unwrap());
    let r = h.upload_report("example.org", Some("vip")).unwrap();
    assert_eq!(r.usage, UploadUsage { stored: 60, reserved: 0, daily: 60, weekly: 60, monthly: 60 });
    assert_eq!(
        r.limits,
        ScopeLimits { max_file_size: Some(100), storage: Some(1000), daily: Some(800), weekly: None, monthly: None }
    );
    let r = h.upload_report("example.org", None).unwrap();
    assert_eq!((r.usage.stored, r.usage.reserved, r.usage.monthly), (60, 40, 60));
    assert_eq!((r.limits.storage, r.limits.daily, r.limits.monthly), (Some(5000), None, Some(9000)));
    let g = h.global_upload_report().unwrap();
    assert_eq!((g.usage.stored, g.usage.reserved, g.limits.storage), (60, 40, Some(20000)));
    assert_eq!(h.upload_report("missing.example", None).unwrap_err().code(), "not-found");
}

#[test]
fn reservations_alone_give_no_retry_time() {
    // What stands in the way is a slot in flight, not volume that will age out: the client
    // learns to wait (resource-constraint) but no stamp is promised.
    let (h, _) = hosting(UploadLimits { user_daily: Some(1000), ..Default::default() });
    granted(h.authorize_upload("example.org", "alice", 900).unwrap());
    let d = denied(h.authorize_upload("example.org", "alice", 200).unwrap());
    assert_eq!((d.limit, d.usage, d.retry_at), (UploadLimit::UserDaily, 900, None));
}

#[test]
fn a_late_upload_is_recorded_until_its_slot_is_forgotten() {
    let (h, clock) = hosting(UploadLimits { slot_lifetime: 60, ..Default::default() });
    let late = granted(h.authorize_upload("example.org", "alice", 10).unwrap());
    let last = granted(h.authorize_upload("example.org", "alice", 10).unwrap());
    let lost = granted(h.authorize_upload("example.org", "alice", 10).unwrap());
    // The grant says until when a late upload counts: the one rule servers watch by.
    assert_eq!((late.expires_at, late.count_until), (T0 + 60, T0 + 60 + DAY));
    clock.advance(61);
    granted(h.authorize_upload("example.org", "bob", 1).unwrap());
    h.commit_upload(late.id, 10, "late").unwrap();
    clock.set(last.count_until);
    granted(h.authorize_upload("example.org", "bob", 1).unwrap());
    h.commit_upload(last.id, 10, "last").unwrap();
    clock.set(lost.count_until + 1);
    granted(h.authorize_upload("example.org", "bob", 1).unwrap());
    assert_eq!(h.commit_upload(lost.id, 10, "too-late").unwrap_err().code(), "not-found");
    assert_eq!(h.upload_usage("example.org", Some("alice")).unwrap().stored, 20);
}

#[test]
fn the_same_file_cannot_be_committed_twice() {
    let (h, _) = hosting(UploadLimits::default());
    let a = granted(h.authorize_upload("example.org", "alice", 10).unwrap());
    let b = granted(h.authorize_upload("example.org", "alice", 10).unwrap());
    h.commit_upload(a.id, 10, "same").unwrap();
    assert_eq!(h.commit_upload(b.id, 10, "same").unwrap_err().code(), "already-exists");
    // The failed commit changed nothing: b still holds its reservation.
    assert_eq!(h.upload_usage("example.org", Some("alice")).unwrap().reserved, 10);
    h.release_upload(b.id).unwrap();
    assert_eq!(
        h.upload_usage("example.org", Some("alice")).unwrap(),
        UploadUsage { stored: 10, daily: 10, weekly: 10, monthly: 10, ..Default::default() }
    );
}

#[test]
fn the_audit_finds_and_repairs_drift() {
    let (h, _) = hosting(UploadLimits::default());
    let gone = upload(&h, "alice", 100);
    upload(&h, "bob", 30);
    h.forget_file(&gone).unwrap();
    granted(h.authorize_upload("example.org", "bob", 7).unwrap());
    assert_eq!(h.audit_upload_ledger(false).unwrap(), []);
    // Simulate a bug that lost a decrement.
    h.store()
        .write(|tx| Ok(tx.execute("UPDATE upload_usage SET stored_bytes = 100 WHERE username = 'alice'", [])?))
        .unwrap();
    let drift = h.audit_upload_ledger(false).unwrap();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!((drift[0].username.as_str(), drift[0].stored, drift[0].counted_stored), ("alice", 100, 0));
    assert_eq!(h.audit_upload_ledger(true).unwrap(), drift);
    assert_eq!(h.audit_upload_ledger(false).unwrap(), []);
    assert_eq!(h.upload_usage("example.org", Some("bob")).unwrap().reserved, 7);
}

#[test]
fn a_repair_while_uploads_go_on_leaves_the_totals_exact() {
    let store = crate::test_store::TestStore::new("quota-repair");
    let admin = store.open();
    admin.add_domain("example.org").unwrap();
    for i in 0..200 {
        let r = granted(admin.authorize_upload("example.org", &format!("user{}", i % 10), 10).unwrap());
        admin.commit_upload(r.id, 10, &format!("seed{i}")).unwrap();
    }
    // A lost decrement for every user and the domain.
    admin.store().write(|tx| Ok(tx.execute("UPDATE upload_usage SET stored_bytes = stored_bytes + 5", [])?)).unwrap();
    let uploader = {
        let h = store.open();
        std::thread::spawn(move || {
            for i in 0..300 {
                let user = format!("user{}", i % 10);
                let r = granted(h.authorize_upload("example.org", &user, 3).unwrap());
                h.commit_upload(r.id, 3, &format!("live{i}")).unwrap();
                if i % 4 == 0 {
                    h.forget_file(&format!("seed{i}")).ok();
                }
            }
        })
    };
    let mut repaired = 0;
    while !uploader.is_finished() || repaired == 0 {
        repaired += admin.audit_upload_ledger(true).unwrap().len();
    }
    uploader.join().unwrap();
    assert!(repaired >= 12, "every user, the domain and the server drifted: {repaired}");
    assert_eq!(admin.audit_upload_ledger(false).unwrap(), []);
}

#[test]
fn twenty_threads_uploading_and_failing_never_overshoot_and_never_drift() {
    let store = crate::test_store::TestStore::new("quota-mixed");
    let admin = store.open();
    let limits = UploadLimits { domain_storage: Some(10_000), domain_daily: Some(12_000), ..Default::default() };
    admin.add_domain_with("example.org", DomainSettings { uploads: limits, ..Default::default() }).unwrap();
    let barrier = Arc::new(Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|t| {
            let h = store.open();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let (mut committed, mut forgotten) = (0, 0);
                for round in 0..15 {
                    let user = format!("user{t}");
                    if let UploadDecision::Granted(r) = h.authorize_upload("example.org", &user, 250).unwrap() {
                        // Every third upload fails; every fifth file is deleted again.
                        if round % 3 == 0 {
                            h.release_upload(r.id).unwrap();
                        } else {
                            let id = format!("t{t}-r{round}");
                            h.commit_upload(r.id, 250, &id).unwrap();
                            committed += 250;
                            if round % 5 == 0 {
                                assert!(h.forget_file(&id).unwrap());
                                forgotten += 250;
                            }
                        }
                    }
                    let u = h.upload_usage("example.org", None).unwrap();
                    assert!(u.stored + u.reserved <= 10_000, "{u:?}");
                    assert!(u.daily + u.reserved <= 12_000, "{u:?}");
                }
                (committed, forgotten)
            })
        })
        .collect();
    let (committed, forgotten) =
        threads.into_iter().map(|t| t.join().unwrap()).fold((0, 0), |(c, f), (tc, tf)| (c + tc, f + tf));
    let u = admin.upload_usage("example.org", None).unwrap();
    // Every byte committed is in today's window; deleted files left storage, not the window.
    assert_eq!((u.daily, u.stored, u.reserved), (committed, committed - forgotten, 0));
    assert!((10_000 - 250 * 20..=12_000).contains(&committed), "{committed}");
    assert_eq!(admin.audit_upload_ledger(false).unwrap(), []);
}

#[test]
fn a_keyed_upload_completes_the_oldest_slot_of_its_key_and_size() {
    let (h, clock) = hosting(UploadLimits { user_storage: Some(1000), ..Default::default() });
    let key = "/srv/upload/abc123";
    let first = granted(h.authorize_keyed_upload("example.org", "alice", 100, key, None).unwrap());
    let other_size = granted(h.authorize_keyed_upload("example.org", "alice", 200, key, None).unwrap());
    granted(h.authorize_keyed_upload("example.org", "alice", 100, key, None).unwrap());
    assert_eq!(h.upload_usage("example.org", Some("alice")).unwrap().reserved, 400);
    h.commit_keyed_upload(key, 100, &format!("{key}/r1/a.bin")).unwrap();
    let u = h.upload_usage("example.org", Some("alice")).unwrap();
    assert_eq!((u.stored, u.reserved), (100, 300));
    // The oldest went: releasing it now finds nothing, the 200-byte slot is untouched.
    assert!(matches!(h.release_upload(first.id), Err(crate::Error::NotFound { .. })));
    h.release_upload(other_size.id).unwrap();
    // No slot of that key and size is left after the second: a third upload is not counted.
    h.commit_keyed_upload(key, 100, &format!("{key}/r2/b.bin")).unwrap();
    let err = h.commit_keyed_upload(key, 100, &format!("{key}/r3/c.bin")).unwrap_err();
    assert_eq!(err.code(), "not-found");
    assert!(matches!(
        h.commit_keyed_upload("/srv/upload/other", 100, "/srv/upload/other/x"),
        Err(crate::Error::NotFound { .. })
    ));
    // A slot that outlived its reservation is still recorded.
    granted(h.authorize_keyed_upload("example.org", "alice", 50, key, None).unwrap());
    clock.advance(3600);
    h.purge_upload_ledger().unwrap();
    h.commit_keyed_upload(key, 50, &format!("{key}/r4/d.bin")).unwrap();
    let u = h.upload_usage("example.org", Some("alice")).unwrap();
    assert_eq!((u.stored, u.reserved), (250, 0));
    assert!(h.audit_upload_ledger(false).unwrap().is_empty());
    for bad in ["", &"k".repeat(1025)] {
        let e = h.authorize_keyed_upload("example.org", "alice", 1, bad, None).unwrap_err();
        assert_eq!(e.code(), "invalid-argument");
    }
}

#[test]
fn a_failed_keyed_upload_gives_its_room_back_at_once_and_still_counts_if_it_completes() {
    let (h, _) = hosting(UploadLimits { user_daily: Some(100), ..Default::default() });
    let key = "/srv/upload/abc123";
    granted(h.authorize_keyed_upload("example.org", "alice", 100, key, None).unwrap());
    assert_eq!(
        denied(h.authorize_keyed_upload("example.org", "alice", 100, key, None).unwrap()).limit,
        UploadLimit::UserDaily
    );
    assert!(h.release_keyed_upload(key, 100).unwrap());
    assert!(!h.release_keyed_upload(key, 100).unwrap(), "nothing open is left to release");
    assert!(!h.release_keyed_upload(key, 99).unwrap());
    assert_eq!(h.upload_usage("example.org", Some("alice")).unwrap().reserved, 0);
    // The room is back now, not hours later; and the released slot, should it work after all,
    // is counted when it completes.
    granted(h.authorize_keyed_upload("example.org", "alice", 100, key, None).unwrap());
    h.commit_keyed_upload(key, 100, &format!("{key}/r1/a.bin")).unwrap();
    h.commit_keyed_upload(key, 100, &format!("{key}/r2/b.bin")).unwrap();
    let u = h.upload_usage("example.org", Some("alice")).unwrap();
    assert_eq!((u.stored, u.reserved, u.daily), (200, 0, 200));
    assert!(h.audit_upload_ledger(false).unwrap().is_empty());
    assert_eq!(h.release_keyed_upload("", 1).unwrap_err().code(), "invalid-argument");
}

#[test]
fn the_sweep_forgets_files_gone_from_under_its_root_only() {
    let (h, _) = hosting(UploadLimits::default());
    let dir = std::env::temp_dir().join(format!("xh-sweep-{}", std::process::id()));
    let root = dir.join("share");
    std::fs::create_dir_all(&root).unwrap();
    let root_s = root.to_str().unwrap().to_string();
    let mut kept = Vec::new();
    for i in 0..2500 {
        let r = granted(h.authorize_upload("example.org", "alice", 10).unwrap());
        let path = format!("{root_s}/f{i:04}.bin");
        h.commit_upload(r.id, 10, &path).unwrap();
        if i % 3 == 0 {
            std::fs::write(&path, b"0123456789").unwrap();
            kept.push(path);
        }
    }
    // Files outside the root (and ids that are no paths) are not the sweep's to judge.
    let r = granted(h.authorize_upload("example.org", "alice", 7).unwrap());
    h.commit_upload(r.id, 7, &format!("{root_s}-sibling/x.bin")).unwrap();
    let r = granted(h.authorize_upload("example.org", "alice", 5).unwrap());
    h.commit_upload(r.id, 5, "slot-id-without-a-path").unwrap();

    assert_eq!(h.sweep_upload_files(&format!("{root_s}/")).unwrap(), (2500, 2500 - kept.len()));
    assert_eq!(h.upload_usage("example.org", Some("alice")).unwrap().stored, 10 * kept.len() as u64 + 12);
    assert_eq!(h.sweep_upload_files(&root_s).unwrap(), (kept.len(), 0));
    // A root that is not there (an unmounted disk) forgets nothing.
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(h.sweep_upload_files(&root_s).unwrap(), (0, 0));
    assert_eq!(h.upload_usage("example.org", Some("alice")).unwrap().stored, 10 * kept.len() as u64 + 12);
    assert!(h.audit_upload_ledger(false).unwrap().is_empty());
}

#[test]
fn upkeep_on_the_worker_purges_and_sweeps() {
    let (h, clock) = hosting(UploadLimits::default());
    let dir = std::env::temp_dir().join(format!("xh-upkeep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let r = granted(h.authorize_upload("example.org", "bob", 10).unwrap());
    h.commit_upload(r.id, 10, &format!("{}/gone.bin", dir.display())).unwrap();
    granted(h.authorize_upload("example.org", "bob", 20).unwrap());
    clock.advance(3600);
    let upkeep = h.start_upload_upkeep(vec![dir.display().to_string()]).unwrap().wait().unwrap();
    assert_eq!((upkeep.files_checked, upkeep.files_forgotten), (1, 1));
    assert!(upkeep.purged >= 1);
    let u = h.upload_usage("example.org", Some("bob")).unwrap();
    assert_eq!((u.stored, u.reserved), (0, 0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_report_reads_the_same_on_every_server() {
    let (h, _) = hosting(UploadLimits {
        max_file_size: Some(100_000_000),
        user_storage: Some(1_500_000_000),
        user_daily: Some(2_000_000),
        ..Default::default()
    });
    upload(&h, "alice", 1_250_000);
    granted(h.authorize_upload("example.org", "alice", 999).unwrap());
    let text = h.upload_report("example.org", Some("alice")).unwrap().describe();
    assert_eq!(
        text,
        "Largest file: 100 MB\nStored: 1.2 MB of 1.5 GB\nUploaded in the last 24 hours: 1.2 MB of 2 MB\n\
         Uploaded in the last 7 days: 1.2 MB (no limit)\nUploaded in the last 30 days: 1.2 MB (no limit)\n\
         Held by uploads in progress: 999 bytes"
    );
}

#[test]
fn a_keyed_slot_holds_its_bytes_for_the_servers_slot_life() {
    let (h, clock) = hosting(UploadLimits { user_storage: Some(100), ..Default::default() });
    let r = granted(h.authorize_keyed_upload("example.org", "alice", 100, "/up/a", Some(5 * HOUR as u64)).unwrap());
    assert_eq!(r.expires_at, T0 + 5 * HOUR);
    // Past the domain's five minutes the slot still counts, so no second one fits.
    clock.advance(HOUR);
    denied(h.authorize_upload("example.org", "alice", 1).unwrap());
    clock.advance(4 * HOUR);
    granted(h.authorize_upload("example.org", "alice", 1).unwrap());
}

/// Two hosted domains with no limits of their own (what `max_size: infinity` leaves on ejabberd
/// when the store's limits are removed too).
fn two_unlimited_domains() -> Hosting {
    let unlimited = UploadLimits { max_file_size: None, ..Default::default() };
    let (h, _) = hosting(unlimited.clone());
    h.add_domain_with("other.example", DomainSettings { uploads: unlimited, ..Default::default() }).unwrap();
    h
}

#[test]
fn one_huge_slot_request_breaks_no_ones_uploads() {
    let h = two_unlimited_domains();
    // The largest size a request can carry: refused as one no server could store, in the
    // admin's words, and nothing is reserved.
    let e = h.authorize_upload("example.org", "mallory", i64::MAX).unwrap_err();
    assert_eq!(e.code(), "invalid-argument");
    assert!(e.to_string().contains("larger than any server can store"), "{e}");
    assert_eq!(h.upload_usage("example.org", Some("mallory")).unwrap().reserved, 0);
    // The largest file a server could store is granted, as often as the totals allow; then the
    // requests are refused as a full storage, never as an error.
    // The largest file a server could store is granted until the domain holds the most any
    // domain may; then requests there are refused as a full domain, never as an error.
    for _ in 0..MAX_DOMAIN_STORAGE / MAX_UPLOAD_SIZE {
        granted(h.authorize_upload("example.org", "mallory", MAX_UPLOAD_SIZE as i64).unwrap());
    }
    for user in ["mallory", "bob"] {
        let d = denied(h.authorize_upload("example.org", user, 10).unwrap());
        assert_eq!(
            (d.limit, d.limit_value, d.usage),
            (UploadLimit::DomainStorage, MAX_DOMAIN_STORAGE, MAX_DOMAIN_STORAGE)
        );
        assert_eq!(d.condition(), ("wait", "resource-constraint"));
    }
    // Every other domain still gets slots and uploads.
    let r = granted(h.authorize_upload("other.example", "alice", 10).unwrap());
    h.commit_upload(r.id, 10, "other-file").unwrap();
    granted(h.authorize_upload("other.example", "bob", MAX_UPLOAD_SIZE as i64).unwrap());
    let g = h.global_upload_usage().unwrap();
    assert_eq!((g.stored, g.reserved), (10, MAX_DOMAIN_STORAGE + MAX_UPLOAD_SIZE));
    assert!(h.audit_upload_ledger(false).unwrap().is_empty());
}

#[test]
fn after_huge_slot_requests_other_domains_still_get_slots() {
    let h = two_unlimited_domains();
    // Whatever the answers to these (refusals today), they may not break anyone else's.
    for size in [i64::MAX, i64::MAX / 2, i64::MAX / 2, 1] {
        let _ = h.authorize_upload("example.org", "mallory", size);
    }
    granted(h.authorize_upload("other.example", "alice", 10).unwrap());
    granted(h.authorize_upload("example.org", "bob", 10).unwrap());
}

#[test]
fn every_domain_has_a_largest_file_unless_an_admin_removes_it() {
    let (h, _) = hosting(UploadLimits::default());
    assert_eq!(crate::DomainSettings::default().uploads.max_file_size, Some(DEFAULT_MAX_FILE_SIZE));
    let d = denied(h.authorize_upload("example.org", "alice", DEFAULT_MAX_FILE_SIZE as i64 + 1).unwrap());
    assert_eq!((d.limit, d.limit_value), (UploadLimit::FileSize, DEFAULT_MAX_FILE_SIZE));
    granted(h.authorize_upload("example.org", "alice", DEFAULT_MAX_FILE_SIZE as i64).unwrap());
    // Removed on purpose: only sizes no server could store are refused.
    h.set_upload_limit("example.org", None, "max_file_size", "null").unwrap();
    granted(h.authorize_upload("example.org", "alice", DEFAULT_MAX_FILE_SIZE as i64 + 1).unwrap());
}

#[test]
fn stores_from_before_the_default_get_it_once() {
    // A store written before the default said null for every domain; one admin had set a limit.
    let (h, _) = hosting(UploadLimits { max_file_size: None, ..Default::default() });
    let set = UploadLimits { max_file_size: Some(5), ..Default::default() };
    h.add_domain_with("set.example", DomainSettings { uploads: set, ..Default::default() }).unwrap();
    let migration = include_str!("../../migrations/0007_default_max_file_size.sql");
    h.store().write(|tx| Ok(tx.execute_batch(migration)?)).unwrap();
    let limit = |d: &str| h.require_domain(d).unwrap().settings.uploads.max_file_size;
    assert_eq!((limit("example.org"), limit("set.example")), (Some(DEFAULT_MAX_FILE_SIZE), Some(5)));
}

#[test]
fn the_stores_sums_saturate_instead_of_failing() {
    use crate::store::quotas as sql;
    let (h, clock) = hosting(UploadLimits::default());
    h.store()
        .write(|tx| {
            // Totals: what the decisions never let happen still cannot break the table.
            sql::add_usage(tx, "user", "example.org", "x", i64::MAX, i64::MAX - 1)?;
            sql::add_usage(tx, "user", "example.org", "x", 5, 5)?;
            assert_eq!(sql::usage(tx, "user", "example.org", "x")?, (i64::MAX, i64::MAX));
            sql::add_usage(tx, "user", "example.org", "x", -i64::MAX, -10)?;
            assert_eq!(sql::usage(tx, "user", "example.org", "x")?, (0, i64::MAX - 10));
            // Buckets, and sums over many buckets (SQLite's sum() would fail with an overflow).
            for hour in 0..30 {
                sql::add_volume(tx, "example.org", "x", HOUR, hour, i64::MAX / 2)?;
            }
            sql::add_volume(tx, "example.org", "x", HOUR, 0, i64::MAX)?;
            let sum = sql::volume_sum(tx, "example.org", "x", HOUR, 0)?;
            assert!(sum > i64::MAX / 2, "{sum}");
            sql::add_volume(tx, "example.org", "y", HOUR, 0, 7)?;
            assert_eq!(sql::volume_sum(tx, "example.org", "y", HOUR, 0)?, 7);
            sql::insert_file(tx, "huge-1", "example.org", "x", i64::MAX, T0)?;
            sql::insert_file(tx, "huge-2", "example.org", "x", i64::MAX, T0)?;
            Ok(())
        })
        .unwrap();
    // The recount of an audit over such rows answers too.
    clock.advance(1);
    let drifts = h.audit_upload_ledger(false).unwrap();
    assert!(drifts.iter().any(|d| d.scope == "global" && d.counted_stored > i64::MAX as u64 / 2), "{drifts:?}");
}

#[test]
fn the_sweep_never_touches_ids_that_leave_its_root() {
    let (h, _) = hosting(UploadLimits::default());
    let dir = std::env::temp_dir().join(format!("xh-sweep-strict-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let (root, outside) = (dir.join("share"), dir.join("outside"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    let r = root.to_str().unwrap();
    // Recorded before the rule, or by a server that did not check: none names a file below the
    // root, so none may be judged gone (retention would delete through them).
    let strays = [format!("{r}/link/x.bin"), format!("{r}//x.bin")];
    for id in &strays {
        let s = granted(h.authorize_upload("example.org", "alice", 10).unwrap());
        h.commit_upload(s.id, 10, id).unwrap();
    }
    let gone = granted(h.authorize_upload("example.org", "alice", 10).unwrap());
    h.commit_upload(gone.id, 10, &format!("{r}/gone.bin")).unwrap();
    assert_eq!(h.sweep_upload_files(r).unwrap(), (3, 1));
    assert_eq!(h.upload_usage("example.org", Some("alice")).unwrap().stored, 20);
    // Ids that walk up or hide a NUL are refused when recorded.
    for id in [format!("{r}/../outside/x.bin"), format!("{r}/./x.bin"), format!("{r}/a\0b")] {
        let s = granted(h.authorize_upload("example.org", "alice", 10).unwrap());
        assert_eq!(h.commit_upload(s.id, 10, &id).unwrap_err().code(), "invalid-argument", "{id:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_admin_sees_which_limits_apply_to_users_by_default() {
    let (h, _) = hosting(UploadLimits::default());
    h.set_upload_limit("example.org", None, "user_daily", "50000").unwrap();
    h.set_upload_limit("example.org", None, "domain_storage", "20000000000").unwrap();
    upload(&h, "alice", 1200);
    let view = h.upload_quota_view("example.org", None).unwrap();
    assert_eq!(view.limits.daily, None, "the domain as a whole has no daily limit");
    assert_eq!(view.user_defaults.unwrap().daily, Some(50_000));
    assert_eq!(
        view.describe(),
        "example.org\nLargest file: 104.9 MB\nStored: 1.2 kB of 20 GB\n\
         Uploaded in the last 24 hours: 1.2 kB (no limit)\nUploaded in the last 7 days: 1.2 kB (no limit)\n\
         Uploaded in the last 30 days: 1.2 kB (no limit)\n\
         Each user, unless given an exception:\n  Stored: no limit\n  Uploaded in 24 hours: 50 kB\n\
         \x20 Uploaded in 7 days: no limit\n  Uploaded in 30 days: no limit"
    );
    // A user's view: the merged limits, and their exceptions named as such.
    h.set_upload_limit("example.org", Some("Alice"), "daily", "104857600").unwrap();
    let view = h.upload_quota_view("example.org", Some("Alice")).unwrap();
    assert_eq!((view.user.as_deref(), view.limits.daily), (Some("alice"), Some(104_857_600)));
    assert!(view.describe().starts_with("alice@example.org\nLargest file: 104.9 MB\n"), "{}", view.describe());
    assert!(
        view.describe().ends_with("\nExceptions to the domain's limits: 24 hours 104.9 MB (104857600 bytes)"),
        "{}",
        view.describe()
    );
    let bob = h.upload_quota_view("example.org", Some("bob")).unwrap();
    assert_eq!((bob.limits.daily, &bob.exceptions), (Some(50_000), &None));
    assert!(bob.describe().ends_with("\nNo exceptions: the domain's limits apply"));
    let json = serde_json::to_value(&bob).unwrap();
    assert_eq!((json["limits"]["daily"].as_u64(), json.get("user_defaults")), (Some(50_000), None));
    assert_eq!(h.upload_quota_view("missing.example", None).unwrap_err().code(), "not-found");
}
