//! Invite throughput and redeem latency on a file store.
//!
//! `cargo bench -p xmpp-hosting-core --bench invites` (INVITES=N to change the stored count).
//! Prints create throughput, redeem throughput and redeem (begin + finish registration) latency
//! percentiles with N invites stored, then the purge of PURGE_INVITES (2,000) revoked invites with
//! PURGE_REGISTRATIONS (100,000) registrations stored (issue 11.5: 30.9 s before the
//! registrations_by_invite index, all in one transaction). Figures, not assertions.

use std::time::{Duration, Instant};

use xmpp_hosting_core::invites::{Creator, NewInvite, RegistrationDecision, RegistrationRequest, PURGE_STEP};
use xmpp_hosting_core::Hosting;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let stored: usize = std::env::var("INVITES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let redeems = 10_000.min(stored);
    let dir = std::env::temp_dir().join(format!("xh-bench-invites-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let h = Hosting::open(dir.join("bench.db")).unwrap();
    h.add_domain("bench.example").unwrap();

    let start = Instant::now();
    let tokens: Vec<String> =
        (0..stored).map(|_| h.create_invite(&NewInvite::account("bench.example")).unwrap().token).collect();
    let create = start.elapsed();
    println!(
        "create: {stored} invites in {:.2?} = {:.0}/s ({:.1} µs each)",
        create,
        stored as f64 / create.as_secs_f64(),
        create.as_secs_f64() * 1e6 / stored as f64
    );

    let mut lat = Vec::with_capacity(redeems);
    let start = Instant::now();
    for (i, token) in tokens.iter().step_by(stored / redeems).take(redeems).enumerate() {
        let user = format!("user{i}");
        let t0 = Instant::now();
        let req = RegistrationRequest { domain: "bench.example", username: &user, ip: None, token: Some(token) };
        match h.begin_registration(&req).unwrap() {
            RegistrationDecision::Allowed(ticket) => h.finish_registration(ticket.id, true).unwrap(),
            RegistrationDecision::Refused(r) => panic!("refused {r:?}"),
        }
        lat.push(t0.elapsed());
    }
    let total = start.elapsed();
    lat.sort();
    println!(
        "redeem (begin+finish) with {stored} stored: {redeems} in {:.2?} = {:.0}/s; p50 {:.1?} p99 {:.1?} max {:.1?}",
        total,
        redeems as f64 / total.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    purge(&dir);
    std::fs::remove_dir_all(&dir).ok();
}

/// The purge with many registrations stored, half of them made with the invites being purged.
fn purge(dir: &std::path::Path) {
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (invites, registrations) = (env("PURGE_INVITES", 2_000), env("PURGE_REGISTRATIONS", 100_000));
    let path = dir.join("purge.db");
    let h = Hosting::open(&path).unwrap();
    h.add_domain("purge.example").unwrap();
    let ids: Vec<i64> =
        (0..invites).map(|_| h.create_invite(&NewInvite::account("purge.example")).unwrap().invite.id).collect();
    // Registrations written straight into the file: a hundred thousand sign-ups through the
    // gate would take minutes and measure the gate, not the purge.
    let mut c = rusqlite::Connection::open(&path).unwrap();
    let tx = c.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO registrations (domain, username, invite_id, by_invite, state, started_at)
                 VALUES ('purge.example', ?1, ?2, ?3, 'created', 0)",
            )
            .unwrap();
        for i in 0..registrations {
            let invite = (i % 2 == 0).then(|| ids[(i / 2) % ids.len()]);
            insert.execute(rusqlite::params![format!("u{i}"), invite, invite.is_some()]).unwrap();
        }
    }
    tx.commit().unwrap();
    drop(c);
    for &id in &ids {
        h.revoke_invite("purge.example", id, &Creator::Admin).unwrap();
    }
    let start = Instant::now();
    let report = h.purge_invites().unwrap();
    let took = start.elapsed();
    assert_eq!(report.invites_removed, invites);
    println!(
        "purge: {invites} invites with {registrations} registrations stored in {took:.2?} ({} steps of at most {PURGE_STEP})",
        invites.div_ceil(PURGE_STEP)
    );
}
