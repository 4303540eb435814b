//! Sweeps a server runs itself, step by step, as planned here.
//!
//! Some archives only the running server may change: Prosody's internal storage keeps one file
//! per user (or room) that Prosody appends to from its loop, so a second writer would lose
//! messages. There the server deletes through its own storage API, and the core keeps the rule:
//! [`Hosting::begin_driven_sweep`] claims the sweep (the same row, lease and audit record as
//! the core's own sweeps) and hands out a [`DrivenStep`]: the cutoff, users' own shorter
//! cutoffs, the cursor, how many archives at most and how long to pause first;
//! [`Hosting::driven_step_done`] records what the step did and plans the next one (its cutoff
//! recomputed, only ever lowered), until the cursor says the end. The server converts: it never
//! decides what is old.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use once_cell::sync::Lazy;

use serde::{Deserialize, Serialize};

use super::prosody_archive::{cutoff_for_server, swept_by_core, ArchiveStore};
use super::sweep::{count_step, next_batch, refresh_cutoff, StepDone, OWNER, STEP_TARGET};
use super::{Kind, SweepRecord, SweepState};
use crate::locked::locked;
use crate::store::retention as sql;
use crate::{Error, Hosting, Result, Timestamp};

/// Archives (users' or rooms') in a server's first step; steps grow while they stay short.
pub const DRIVEN_FIRST_BATCH: usize = 4;
/// At most this many archives a step.
pub const DRIVEN_MAX_BATCH: usize = 64;
/// Seconds the server waits before each step, so its loop serves everything else in between.
pub const DRIVEN_PAUSE: f64 = 0.02;

/// Dry runs under way in this process, by their (negative) id until they are logged.
static DRY_RUNS: Lazy<Mutex<HashMap<i64, SweepRecord>>> = Lazy::new(Default::default);
static NEXT_DRY_RUN: AtomicI64 = AtomicI64::new(1);

/// One step for the server to run through its storage API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrivenStep {
    pub sweep: i64,
    pub domain: String,
    pub kind: Kind,
    /// Delete what was stored strictly before this (unix seconds); `None`: nothing by the
    /// domain's policy, only the users in `users` by theirs.
    pub cutoff: Option<Timestamp>,
    /// Users whose own archive retention is shorter than the domain's, with their cutoffs.
    pub users: BTreeMap<String, Timestamp>,
    /// Where the step starts: the server's own words from its last step (`None`: the beginning).
    pub cursor: Option<String>,
    /// Archives (users or rooms) at most in this step.
    pub batch: usize,
    /// The server's stores to walk, in this order.
    pub stores: Vec<ArchiveStore>,
    /// Count what would be deleted (`deleted` in the step's report), delete nothing.
    pub dry_run: bool,
    /// Seconds to wait before running it.
    pub pause: f64,
}

/// What the server's step did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DrivenDone {
    pub deleted: i64,
    /// Archives that could not be changed, in words (kept; the next sweep retries).
    pub failures: Vec<String>,
    /// Where the next step starts; `None` when everything was looked at.
    pub next: Option<String>,
    /// How long the step held the server's loop.
    pub took_us: i64,
    /// The batch the step was given.
    pub batch: usize,
}

/// The record after a step, and the next step unless the sweep ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrivenOutcome {
    pub record: SweepRecord,
    pub next: Option<DrivenStep>,
}

impl Hosting {
    /// Claims (or resumes) the sweep of a domain's kind that the server runs itself, and plans
    /// its first step. Refused while another process holds it, and for kinds kept for ever.
    pub fn begin_driven_sweep(&self, domain: &str, kind: Kind) -> Result<DrivenStep> {
        let domain = self.require_domain(domain)?.name.as_str().to_string();
        if kind == Kind::Uploads {
            return Err(Error::InvalidArgument("uploads are swept by the core itself".into()));
        }
        let cutoff = self.sweep_cutoff_or_cancel(&domain, kind)?;
        let (id, cursor) = self.claim_sweep(&domain, kind, cutoff)?;
        let rec = self.store().read(|c| sql::by_id(c, id))?.record;
        self.plan(&rec, cursor, DRIVEN_FIRST_BATCH)
    }

    /// A dry run of a sweep the server runs itself: the same steps, counting through the
    /// server's storage API what each would delete. It holds no lease and never takes over nor
    /// holds up the real sweep; it is kept in this process until its last step, then written to
    /// the audit log as one record (a dry run cut short by a restart leaves none).
    pub fn begin_driven_dry_run(&self, domain: &str, kind: Kind) -> Result<DrivenStep> {
        let domain = self.require_domain(domain)?.name.as_str().to_string();
        if kind == Kind::Uploads {
            return Err(Error::InvalidArgument("uploads are swept by the core itself".into()));
        }
        let cutoff = self.sweep_cutoff_or_cancel(&domain, kind)?;
        let now = self.now();
        // A dry run is not recorded until it ends: it gets an id of its own, below zero.
        let rec = SweepRecord {
            id: -NEXT_DRY_RUN.fetch_add(1, Ordering::Relaxed),
            ..SweepRecord::begun(&domain, kind, true, cutoff, now)
        };
        let plan = self.plan(&rec, None, DRIVEN_FIRST_BATCH)?;
        locked(&DRY_RUNS).insert(rec.id, rec);
        Ok(plan)
    }

    /// [`Hosting::driven_step_done`] for a dry run (its id is below zero until it is logged).
    fn dry_step_done(&self, sweep: i64, done: DrivenDone) -> Result<DrivenOutcome> {
        let taken = locked(&DRY_RUNS).remove(&sweep);
        let Some(mut rec) = taken else {
            return Err(Error::NotAllowed(format!("dry run #{sweep} is not running in this process")));
        };
        let took = std::time::Duration::from_micros(done.took_us.max(0) as u64);
        let batch = next_batch(done.batch.max(1), took, done.deleted, DRIVEN_MAX_BATCH, STEP_TARGET);
        let cursor = done.next.clone();
        let step = StepDone { deleted: done.deleted.max(0), bytes: 0, failures: done.failures, next: done.next };
        count_step(&mut rec, step, took, took);
        if cursor.is_some() && refresh_cutoff(self, &mut rec) {
            let next = self.plan(&rec, cursor, batch)?;
            locked(&DRY_RUNS).insert(rec.id, rec.clone());
            return Ok(DrivenOutcome { record: rec, next: Some(next) });
        }
        if rec.state == SweepState::Running {
            // The end, or the policy unreadable (the error is in the record): a dry run is
            // never left running, so no sweep resumes it.
            rec.state = if cursor.is_none() { SweepState::Done } else { SweepState::Cancelled };
        }
        rec.finished_at = Some(self.now());
        rec.id = self.store().write(|tx| {
            let id = sql::insert(tx, &rec, None, 0)?;
            let logged = SweepRecord { id, ..rec.clone() };
            sql::record_step(tx, &logged, None, 0)?;
            sql::finish(tx, &logged)?;
            Ok(id)
        })?;
        Ok(DrivenOutcome { record: rec, next: None })
    }

    /// Records a step the server ran and plans the next (`next: None` once the sweep ended:
    /// done, cancelled because the policy became `never`, or paused on an error).
    pub fn driven_step_done(&self, sweep: i64, done: DrivenDone) -> Result<DrivenOutcome> {
        if sweep < 0 {
            return self.dry_step_done(sweep, done);
        }
        let row = self.store().read(|c| sql::by_id(c, sweep))?;
        if row.record.state != SweepState::Running || row.owner.as_deref() != Some(OWNER.as_str()) {
            return Err(Error::NotAllowed(format!(
                "sweep #{sweep} is not running in this process any more (finished, or taken over after its lease)"
            )));
        }
        let mut rec = row.record;
        let took = std::time::Duration::from_micros(done.took_us.max(0) as u64);
        let batch = next_batch(done.batch.max(1), took, done.deleted, DRIVEN_MAX_BATCH, STEP_TARGET);
        let cursor = done.next.clone();
        let step =
            StepDone { deleted: done.deleted.max(0), bytes: 0, failures: done.failures, next: done.next.clone() };
        count_step(&mut rec, step, took, took);
        let lease = self.now() + super::sweep::LEASE;
        self.store().write(|tx| sql::record_step(tx, &rec, cursor.as_deref(), lease))?;
        if cursor.is_none() {
            rec.state = SweepState::Done;
        }
        if rec.state == SweepState::Running && refresh_cutoff(self, &mut rec) {
            let next = self.plan(&rec, cursor, batch)?;
            return Ok(DrivenOutcome { record: rec, next: Some(next) });
        }
        let record = self.end_part(rec, cursor.as_deref())?;
        Ok(DrivenOutcome { record, next: None })
    }

    /// The next step of a running sweep.
    fn plan(&self, rec: &SweepRecord, cursor: Option<String>, batch: usize) -> Result<DrivenStep> {
        let stores: Vec<ArchiveStore> =
            self.archive_stores(&rec.domain, rec.kind)?.into_iter().filter(|s| !swept_by_core(&s.backend)).collect();
        let users = if rec.kind == Kind::Archive {
            self.user_archive_cutoffs(&rec.domain)?.into_iter().collect()
        } else {
            BTreeMap::new()
        };
        Ok(DrivenStep {
            sweep: rec.id,
            domain: rec.domain.clone(),
            kind: rec.kind,
            cutoff: cutoff_for_server(rec.cutoff),
            users,
            cursor,
            batch: batch.clamp(1, DRIVEN_MAX_BATCH),
            stores,
            pause: DRIVEN_PAUSE,
            dry_run: rec.dry_run,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::PROSODY_INTERNAL;
    use crate::{Clock, ManualClock};

    fn setup() -> (Hosting, ManualClock) {
        let clock = ManualClock::new(1_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        h.add_domain("example.org").unwrap();
        h.register_archive_store("example.org", Kind::Archive, "example.org", PROSODY_INTERNAL, None, "archive")
            .unwrap();
        (h, clock)
    }

    #[test]
    fn the_server_gets_the_cutoff_the_users_and_the_cursor_and_the_record_adds_its_steps() {
        let (h, clock) = setup();
        h.set_retention("example.org", "archive", "30d").unwrap();
        h.set_user_archive_retention("example.org", "alice", Some("1h")).unwrap();
        // Chosen when the domain kept archives longer: the domain's shorter period wins now.
        h.set_user_archive_retention("example.org", "carol", Some("1w")).unwrap();
        h.set_retention("example.org", "archive", "1d").unwrap();
        let plan = h.begin_driven_sweep("example.org", Kind::Archive).unwrap();
        let now = clock.now();
        assert_eq!(plan.cutoff, Some(now - 86_400));
        assert_eq!(plan.users.into_iter().collect::<Vec<_>>(), vec![("alice".to_string(), now - 3600)]);
        assert_eq!((plan.cursor, plan.batch, plan.stores.len()), (None, DRIVEN_FIRST_BATCH, 1));
        let done = DrivenDone {
            deleted: 7,
            next: Some("example.org\talice".into()),
            took_us: 100,
            batch: 4,
            ..Default::default()
        };
        let out = h.driven_step_done(plan.sweep, done).unwrap();
        let next = out.next.unwrap();
        assert_eq!((next.cursor.as_deref(), next.batch), (Some("example.org\talice"), 8), "quick steps grow");
        // The policy is made longer mid-sweep: the cutoff goes down, never up.
        h.set_retention("example.org", "archive", "2d").unwrap();
        clock.advance(10);
        let done = DrivenDone {
            deleted: 1,
            failures: vec!["bob: disk full".into()],
            next: Some("example.org\tbob".into()),
            took_us: 90_000,
            batch: 8,
        };
        let next = h.driven_step_done(plan.sweep, done).unwrap().next.unwrap();
        assert_eq!((next.cutoff, next.batch), (Some(now + 10 - 2 * 86_400), 4), "a slow step halves the batch");
        let out = h.driven_step_done(plan.sweep, DrivenDone { batch: 4, ..Default::default() }).unwrap();
        assert!(out.next.is_none());
        let r = out.record;
        assert_eq!((r.state, r.steps, r.deleted, r.failed, r.longest_step_us), (SweepState::Done, 3, 8, 1, 90_000));
        assert_eq!(h.retention_log(None, 1).unwrap()[0], r);
        // Finished: a late report is refused.
        assert_eq!(h.driven_step_done(plan.sweep, DrivenDone::default()).unwrap_err().code(), "not-allowed");
    }

    #[test]
    fn a_dry_run_the_server_counts_has_its_own_record_and_leaves_the_real_sweep_alone() {
        let (h, clock) = setup();
        h.set_retention("example.org", "archive", "1d").unwrap();
        let real = h.begin_driven_sweep("example.org", Kind::Archive).unwrap();
        assert!(!real.dry_run);
        let dry = h.begin_driven_dry_run("example.org", Kind::Archive).unwrap();
        assert!(dry.dry_run && dry.sweep != real.sweep);
        assert_eq!((dry.cutoff, dry.cursor.as_deref()), (Some(clock.now() - 86_400), None));
        let counted = DrivenDone { deleted: 12, next: Some("example.org\tbob".into()), batch: 4, ..Default::default() };
        let next = h.driven_step_done(dry.sweep, counted).unwrap().next.unwrap();
        assert!(next.dry_run, "every step of a dry run counts");
        let out = h.driven_step_done(dry.sweep, DrivenDone { deleted: 3, batch: 8, ..Default::default() }).unwrap();
        assert!(out.next.is_none());
        assert_eq!((out.record.dry_run, out.record.deleted, out.record.state), (true, 15, SweepState::Done));
        assert!(out.record.describe().contains("would delete 15"), "{}", out.record.describe());
        // The real sweep is still this process's, where it was.
        let again = h.begin_driven_sweep("example.org", Kind::Archive).unwrap();
        assert_eq!((again.sweep, again.dry_run), (real.sweep, false));
        // Logged once, with an id of the log's own.
        let log = h.retention_log(Some("example.org"), 10).unwrap();
        assert_eq!(log.iter().filter(|r| r.dry_run).collect::<Vec<_>>(), vec![&out.record]);
        assert!(out.record.id > 0);
        // Two at once keep apart; a finished one is not reported to again.
        let a = h.begin_driven_dry_run("example.org", Kind::Archive).unwrap();
        let b = h.begin_driven_dry_run("example.org", Kind::Archive).unwrap();
        assert_ne!(a.sweep, b.sweep);
        assert_eq!(h.driven_step_done(dry.sweep, DrivenDone::default()).unwrap_err().code(), "not-allowed");
    }

    #[test]
    fn never_cancels_a_driven_sweep_and_a_domain_kept_for_ever_still_honours_users_own_choice() {
        let (h, _clock) = setup();
        assert!(h.begin_driven_sweep("example.org", Kind::Archive).is_err(), "nothing to do");
        h.set_user_archive_retention("example.org", "alice", Some("1h")).unwrap();
        let plan = h.begin_driven_sweep("example.org", Kind::Archive).unwrap();
        assert_eq!((plan.cutoff, plan.users.len()), (None, 1));
        h.set_user_archive_retention("example.org", "alice", None).unwrap();
        let out = h
            .driven_step_done(plan.sweep, DrivenDone { next: Some("x".into()), batch: 4, ..Default::default() })
            .unwrap();
        assert!(out.next.is_none());
        assert_eq!(out.record.state, SweepState::Cancelled);
    }
}
