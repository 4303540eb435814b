//! Invite throughput and redeem latency on a file store.
//!
//! `cargo bench -p xmpp-hosting-core --bench invites` (INVITES=N to change the stored count).
//! Prints create throughput, redeem throughput and redeem (begin + finish registration) latency
//! percentiles with N invites stored. Figures, not assertions: see the issue notes.

use std::time::{Duration, Instant};

use xmpp_hosting_core::invites::{NewInvite, RegistrationDecision, RegistrationRequest};
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
    std::fs::remove_dir_all(&dir).ok();
}
