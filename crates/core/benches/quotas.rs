//! Slot decision latency (authorize + commit) with 1,000 / 100,000 / 1,000,000 uploads stored.
//!
//! `cargo bench -p xmpp-hosting-core --bench quotas` (SIZES=1000,100000 to choose).
//! The store is filled in one transaction straight into the ledger tables (creating a million
//! uploads through the API would take minutes and measure nothing new). The measured user has the
//! same month of history in every run — 100 uploads — so the figures show whether a decision
//! grows with the uploads stored by everyone else; a last line measures the worst case the
//! design allows, a user with an upload in every hour of the month.

use std::time::{Duration, Instant};

use rusqlite::params;
use xmpp_hosting_core::quotas::UploadDecision;
use xmpp_hosting_core::{Hosting, ManualClock};

const NOW: i64 = 1_750_000_000;
const DECISIONS: usize = 5_000;

fn seed(path: &std::path::Path, uploads: usize, measured_history: usize) {
    let mut c = rusqlite::Connection::open(path).unwrap();
    let tx = c.transaction().unwrap();
    {
        let mut file = tx
            .prepare(
                "INSERT INTO upload_files (file_id, domain, username, size, stored_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .unwrap();
        let mut volume = tx
            .prepare(
                "INSERT INTO upload_volume (domain, username, span, start, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (domain, username, span, start) DO UPDATE SET bytes = bytes + ?5",
            )
            .unwrap();
        let history = (0..measured_history).map(|i| ("measured".to_string(), i));
        let others = (0..uploads.saturating_sub(measured_history)).map(|i| (format!("user{}", i % 1000), i));
        for (n, (user, i)) in history.chain(others).enumerate() {
            let at = NOW - ((i as i64 * 7919) % (30 * 86_400));
            file.execute(params![format!("f{n}"), "bench.example", user, 1000, at]).unwrap();
            for span in [3600i64, 86_400] {
                volume.execute(params!["bench.example", user, span, at.div_euclid(span), 1000]).unwrap();
                volume.execute(params!["bench.example", "", span, at.div_euclid(span), 1000]).unwrap();
            }
        }
        let total = uploads as i64 * 1000;
        for (scope, user, bytes) in
            [("global", "", total), ("domain", "", total), ("user", "measured", measured_history as i64 * 1000)]
        {
            let domain = if scope == "global" { "" } else { "bench.example" };
            tx.execute(
                "INSERT INTO upload_usage (scope, domain, username, stored_bytes, reserved_bytes) VALUES (?1, ?2, ?3, ?4, 0)",
                params![scope, domain, user, bytes],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn run(label: &str, uploads: usize, measured_history: usize) {
    let dir = std::env::temp_dir().join(format!("xh-bench-quotas-{}-{uploads}-{measured_history}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bench.db");
    let h = Hosting::open(&path).unwrap().with_clock(ManualClock::new(NOW));
    h.add_domain("bench.example").unwrap();
    // Every limit set, so every check runs: large enough that each decision is a grant.
    for (k, v) in [
        ("uploads.max_file_size", "1000000000"),
        ("uploads.user_storage", "1000000000000"),
        ("uploads.domain_storage", "1000000000000000"),
        ("uploads.user_daily", "1000000000000"),
        ("uploads.user_weekly", "1000000000000"),
        ("uploads.user_monthly", "1000000000000"),
        ("uploads.domain_daily", "1000000000000000"),
        ("uploads.domain_weekly", "1000000000000000"),
        ("uploads.domain_monthly", "1000000000000000"),
    ] {
        h.set_domain_setting("bench.example", k, v).unwrap();
    }
    h.set_provider_setting("uploads.storage", "1000000000000000").unwrap();
    let t = Instant::now();
    seed(&path, uploads, measured_history);
    let seeded = t.elapsed();
    // As in a server, checkpoints run beside the decisions (Prosody's and ejabberd's timers call
    // Hosting::checkpoint every few seconds; here every 100 ms, on its own connection).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checkpointer = {
        let (stop, other) = (stop.clone(), Hosting::open(&path).unwrap());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                other.checkpoint().unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut lat = Vec::with_capacity(DECISIONS);
    for i in 0..DECISIONS {
        let t0 = Instant::now();
        match h.authorize_upload("bench.example", "measured", 1000).unwrap() {
            UploadDecision::Granted(r) => h.commit_upload(r.id, 1000, &format!("new{i}")).unwrap(),
            UploadDecision::Denied(d) => panic!("denied: {d:?}"),
        }
        lat.push(t0.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    checkpointer.join().unwrap();
    lat.sort();
    println!(
        "{label:<34} {uploads:>9} stored: authorize+commit p50 {:>6.1?}  p99 {:>6.1?}  max {:>7.1?}  (seeded in {seeded:.1?})",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    std::fs::remove_dir_all(&dir).ok();
}

fn main() {
    let sizes: Vec<usize> = std::env::var("SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 100_000, 1_000_000]);
    for &n in &sizes {
        run("measured user with 100 uploads", n, 100);
    }
    run("worst case: an upload every hour", sizes[0].max(720), 720);
}
