//! The sweep engine: deletes what a domain's policy says has expired, in bounded steps.
//!
//! Prosody's own cleanup deletes a whole archive in one statement (13 s with its event loop
//! blocked, on a million rows here) and ejabberd has none. A sweep here is a row in the store
//! (`retention_sweeps`) and a series of steps, each a short transaction over at most a batch
//! whose size adapts so a step stays within a few milliseconds. After every step the row
//! records where the next one starts, so a sweep interrupted by a crash, a restart or its time
//! budget resumes from there, in this process or another (a lease says who runs it: two
//! processes or nodes never run steps of the same sweep).
//!
//! Nothing newer than the cutoff is ever deleted: every step's own query asks for data stored
//! strictly before the cutoff (the cursor only saves work), and the cutoff is computed afresh
//! from the clock and the policy before every step and may only go down: a clock set back, or a
//! policy made longer, mid-sweep or between two parts, keeps more, never less. A policy set to
//! `never` cancels a running sweep.
//!
//! The row is also the audit log entry: domain, kind, cutoff, what was deleted, how long it
//! took, the longest step, the errors; every binding reads it through [`Hosting::retention_log`].

use std::time::{Duration, Instant};

use once_cell::sync::Lazy;
use serde::Serialize;

use super::{Kind, Period};
use crate::store::retention as sql;
use crate::{Error, Hosting, Result, Timestamp};

/// How long a process may hold a sweep without a step before another may take it over: a
/// crashed server's sweep is resumed within this.
pub const LEASE: i64 = 60;

/// A step aims to hold the store's write lock for at most this long; batches shrink above it.
pub const STEP_TARGET: Duration = Duration::from_millis(4);

/// Items per step at first, and the bounds the adaptation stays within.
pub const FIRST_BATCH: usize = 100;
pub const MAX_BATCH: usize = 2000;

/// Items a step may delete even when its batch is smaller (ejabberd's steps visit at least
/// [`super::ejabberd_archive::MIN_ROWS`] rows).
const MIN_STEP_ITEMS: i64 = super::ejabberd_archive::MIN_ROWS as i64;

/// The record is written at least this often while a sweep runs...
pub const RECORD_EVERY: Duration = Duration::from_millis(250);

/// ... and before the items deleted but not yet recorded could pass this (a crash loses their
/// count, see [`SweepRecord::deleted`]).
pub const MAX_UNRECORDED: i64 = 2000;

/// How many error texts a sweep keeps (the count of failures is kept whole).
const MAX_ERRORS: usize = 20;

/// Where a sweep stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepState {
    /// Under way, or stopped part-way (a crash, a budget): the next run resumes it.
    Running,
    Done,
    /// The policy became `never` while it ran.
    Cancelled,
}

impl SweepState {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepState::Running => "running",
            SweepState::Done => "done",
            SweepState::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(text: &str) -> Self {
        match text {
            "done" => SweepState::Done,
            "cancelled" => SweepState::Cancelled,
            _ => SweepState::Running,
        }
    }
}

/// One sweep as the audit log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepRecord {
    pub id: i64,
    pub domain: String,
    pub kind: Kind,
    /// A dry run deleted nothing: `deleted` and `bytes` say what would have gone.
    pub dry_run: bool,
    /// Data stored strictly before this (unix seconds) was deleted.
    pub cutoff: Timestamp,
    pub state: SweepState,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// How many runs it took (more than one after a restart or when a pass's budget ran out).
    pub parts: i64,
    pub steps: i64,
    /// Items deleted and recorded. The record is written every [`RECORD_EVERY`] or before the
    /// count not yet written could pass [`MAX_UNRECORDED`], not after every step (a write to the
    /// core's store a step cost as much as a step). Where the server's own database holds the
    /// data (ejabberd SQL, Prosody SQL) its commits and this record are apart: a crash loses the
    /// count of the steps since the last record (at most [`MAX_UNRECORDED`] items), never a
    /// deletion nor the cutoff rule, and the sweep resumes from the cursor last recorded (the
    /// steps after it find their rows already gone).
    pub deleted: i64,
    pub bytes: i64,
    /// Items that could not be deleted (kept, retried by the next sweep).
    pub failed: i64,
    /// Time spent in steps, all parts together (a Prosody SQL step: picking its rows, deleting
    /// them, checkpointing).
    pub duration_us: i64,
    /// The longest a step held the server: its database's write lock (Prosody SQL), its loop
    /// (steps the server runs), else the whole step.
    pub longest_step_us: i64,
    pub errors: Vec<String>,
}

impl SweepRecord {
    /// A sweep (or dry run) of `kind` of `domain` begun at `now`, nothing done yet; its id is the
    /// store's once recorded.
    pub(crate) fn begun(domain: &str, kind: Kind, dry_run: bool, cutoff: Timestamp, now: Timestamp) -> Self {
        SweepRecord {
            id: 0,
            domain: domain.to_string(),
            kind,
            dry_run,
            cutoff,
            state: SweepState::Running,
            started_at: now,
            finished_at: None,
            parts: 1,
            steps: 0,
            deleted: 0,
            bytes: 0,
            failed: 0,
            duration_us: 0,
            longest_step_us: 0,
            errors: Vec::new(),
        }
    }

    /// One line for a log or a terminal.
    pub fn describe(&self) -> String {
        let what = if self.dry_run { "would delete" } else { "deleted" };
        let cutoff = if self.cutoff == USERS_ONLY {
            "users' own retention".to_string()
        } else {
            format!("before {}", self.cutoff)
        };
        let mut text = format!(
            "#{} {} {} {}: {} ({} {}{}",
            self.id,
            self.domain,
            self.kind.as_str(),
            cutoff,
            self.state.as_str(),
            what,
            self.deleted,
            if self.kind == Kind::Uploads { format!(" file(s), {} bytes", self.bytes) } else { " message(s)".into() },
        );
        if !self.dry_run {
            text.push_str(&format!(
                ", {} part(s), {} step(s) in {:.1} ms, longest step {:.2} ms",
                self.parts,
                self.steps,
                self.duration_us as f64 / 1000.0,
                self.longest_step_us as f64 / 1000.0
            ));
        }
        if self.failed > 0 {
            text.push_str(&format!(", {} failed", self.failed));
        }
        text.push(')');
        for e in &self.errors {
            text.push_str(&format!("\n  {e}"));
        }
        text
    }
}

/// Called after every step with the record so far (a terminal's progress bar).
pub type Progress = std::sync::Arc<dyn Fn(&SweepRecord) + Send + Sync>;

/// How a sweep runs.
#[derive(Clone)]
pub struct SweepOptions {
    /// Count what would go; delete nothing.
    pub dry_run: bool,
    /// Stop (resumably) once this much time has gone on steps; `None`: run to the end.
    pub budget: Option<Duration>,
    /// Stop (resumably) after this many steps (tests stop a sweep part-way with it).
    pub max_steps: Option<u64>,
    /// Items in the first step.
    pub batch: usize,
    /// Told after every step.
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for SweepOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SweepOptions")
            .field("dry_run", &self.dry_run)
            .field("budget", &self.budget)
            .field("max_steps", &self.max_steps)
            .field("batch", &self.batch)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions { dry_run: false, budget: None, max_steps: None, batch: FIRST_BATCH, progress: None }
    }
}

/// What one step did.
#[derive(Debug, Default)]
pub(crate) struct StepDone {
    pub deleted: i64,
    pub bytes: i64,
    pub failures: Vec<String>,
    /// Where the next step starts; `None` when nothing is left.
    pub next: Option<String>,
}

/// Where one kind of data lives, deleted a step at a time.
pub(crate) trait Target {
    /// What would go: (items, bytes).
    fn count(&mut self, h: &Hosting, domain: &str, cutoff: Timestamp) -> Result<(i64, i64)>;
    /// How long the last step's own work took when its time also holds a cost the batch does
    /// not change (a commit's fsyncs: about 12 ms in a rollback-journal database on this disk,
    /// whatever the batch): batches adapt to this, else to the whole step's time.
    fn last_work(&self) -> Option<Duration> {
        None
    }
    /// How long a step should hold the store it deletes in; batches adapt to it.
    fn step_target(&self) -> Duration {
        STEP_TARGET
    }
    /// A pause after each step, so the server's own queries take the lock in between.
    fn pause(&self) -> Duration {
        Duration::ZERO
    }
    /// Deletes at most `limit` items stored strictly before `cutoff`, starting after `cursor`.
    fn step(
        &mut self,
        h: &Hosting,
        domain: &str,
        cutoff: Timestamp,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<StepDone>;
}

/// This process, as a sweep's owner.
pub(super) static OWNER: Lazy<String> = Lazy::new(|| {
    let mut nonce = [0u8; 8];
    let _ = getrandom::fill(&mut nonce);
    format!("{}:{:016x}", std::process::id(), u64::from_le_bytes(nonce))
});

/// Whether another process holds `row` now. A lease further ahead than [`LEASE`] means the
/// clock was set back: it is treated as expired rather than blocking the sweep until then.
fn held_elsewhere(row: &sql::SweepRow, now: Timestamp) -> bool {
    row.owner.as_deref().is_some_and(|o| o != OWNER.as_str()) && row.lease_until > now && row.lease_until - now <= LEASE
}

/// The cutoff of a sweep whose domain keeps one-to-one archives for ever while some of its users
/// chose a period of their own: only those users' messages go (each by their own cutoff).
pub const USERS_ONLY: Timestamp = Timestamp::MIN;

/// The cutoff the policy gives now, `None` when the kind is kept for ever (and, for archives,
/// no user chose a period of their own).
fn fresh_cutoff(h: &Hosting, domain: &str, kind: Kind) -> Result<Option<Timestamp>> {
    let cutoff = h.retention_policy(domain)?.period(kind).cutoff(h.now());
    if cutoff.is_none() && kind == Kind::Archive && !h.user_archive_cutoffs(domain)?.is_empty() {
        return Ok(Some(USERS_ONLY));
    }
    Ok(cutoff)
}

/// Lowers the record's cutoff to what the policy and the clock give now; `false` when the sweep
/// must stop here (the policy became `never`: cancelled; the policy unreadable: paused).
pub(super) fn refresh_cutoff(h: &Hosting, rec: &mut SweepRecord) -> bool {
    match fresh_cutoff(h, &rec.domain, rec.kind) {
        Ok(Some(fresh)) => {
            rec.cutoff = rec.cutoff.min(fresh);
            true
        }
        Ok(None) => {
            rec.state = SweepState::Cancelled;
            false
        }
        Err(e) => {
            push_error(rec, format!("policy unreadable, sweep paused: {e}"));
            false
        }
    }
}

/// The next step's batch: in proportion to how far the step's time was from three quarters of
/// `target` ([`STEP_TARGET`] or the target's own: the rest is the margin for a slower step), at
/// most doubled or halved. A step
/// that deleted under half its batch never grows it: walking past rows it keeps (ejabberd's
/// group-chat rows among the one-to-one ones, or the other way round) costs far less than
/// deleting them, so its time says little about a batch of deletions, and a batch grown over
/// such a walk would make the first step that meets deletable rows hold far too long.
pub(super) fn next_batch(batch: usize, took: Duration, deleted: i64, max: usize, target: Duration) -> usize {
    let aim = (target * 3 / 4).as_secs_f64();
    let ratio = (aim / took.as_secs_f64().max(1e-6)).clamp(0.5, 2.0);
    let next = ((batch as f64 * ratio) as usize).clamp(1, max);
    let mostly_kept = usize::try_from(deleted).map_or(true, |d| d.saturating_mul(2) < batch);
    if mostly_kept {
        next.min(batch.max(1))
    } else {
        next
    }
}

/// Adds one step to the record: `took` its whole time, `held` how long it held the server.
pub(super) fn count_step(rec: &mut SweepRecord, done: StepDone, took: Duration, held: Duration) {
    let micros = |d: Duration| d.as_micros().min(i64::MAX as u128) as i64;
    rec.steps += 1;
    rec.duration_us += micros(took);
    rec.longest_step_us = rec.longest_step_us.max(micros(held));
    rec.deleted += done.deleted;
    rec.bytes += done.bytes;
    rec.failed += done.failures.len() as i64;
    for f in done.failures {
        push_error(rec, f);
    }
}

pub(super) fn push_error(rec: &mut SweepRecord, text: String) {
    if rec.errors.len() < MAX_ERRORS {
        rec.errors.push(text);
    } else if rec.errors.len() == MAX_ERRORS {
        rec.errors.push("(more errors not kept)".into());
    }
}

impl Hosting {
    /// Runs (or resumes) the sweep of one kind of data of one domain with `target`.
    pub(crate) fn sweep_with(
        &self,
        domain: &str,
        kind: Kind,
        target: &mut dyn Target,
        options: &SweepOptions,
    ) -> Result<SweepRecord> {
        let domain = self.require_domain(domain)?.name.as_str().to_string();
        let cutoff = self.sweep_cutoff_or_cancel(&domain, kind)?;
        let now = self.now();
        if options.dry_run {
            let (items, bytes) = target.count(self, &domain, cutoff)?;
            let mut rec = SweepRecord {
                state: SweepState::Done,
                finished_at: Some(now),
                deleted: items,
                bytes,
                ..SweepRecord::begun(&domain, kind, true, cutoff, now)
            };
            rec.id = self.store().write(|tx| sql::insert(tx, &rec, None, 0))?;
            return Ok(rec);
        }
        let (id, mut cursor) = self.claim_sweep(&domain, kind, cutoff)?;
        let mut rec = self.store().read(|c| sql::by_id(c, id))?.record;
        let mut batch = options.batch.clamp(1, MAX_BATCH);
        let mut spent = Duration::ZERO;
        let mut steps_here = 0u64;
        let mut recorded = (rec.deleted, Instant::now());
        loop {
            // The policy and the clock as they are now: the cutoff only ever goes down.
            if !refresh_cutoff(self, &mut rec) {
                break;
            }
            let out_of_budget =
                options.budget.is_some_and(|b| spent >= b) || options.max_steps.is_some_and(|m| steps_here >= m);
            if out_of_budget {
                break;
            }
            let started = Instant::now();
            let done = match target.step(self, &domain, rec.cutoff, cursor.as_deref(), batch) {
                Ok(done) => done,
                Err(e) => {
                    // The next run retries from the same place.
                    push_error(&mut rec, format!("step failed, sweep paused: {e}"));
                    break;
                }
            };
            let took = started.elapsed();
            spent += took;
            steps_here += 1;
            let held = target.last_work().unwrap_or(took);
            batch = next_batch(batch, held, done.deleted, MAX_BATCH, target.step_target());
            cursor = done.next.clone();
            count_step(&mut rec, done, took, held);
            if let Some(progress) = &options.progress {
                progress(&rec);
            }
            if cursor.is_none() {
                rec.state = SweepState::Done;
                break;
            }
            // Recorded often enough that a crash loses little (end_part records the end).
            let unrecorded = rec.deleted - recorded.0;
            if unrecorded + (batch as i64).max(MIN_STEP_ITEMS) > MAX_UNRECORDED || recorded.1.elapsed() >= RECORD_EVERY
            {
                let lease = self.now() + LEASE;
                self.store().write(|tx| sql::record_step(tx, &rec, cursor.as_deref(), lease))?;
                recorded = (rec.deleted, Instant::now());
            }
            let pause = target.pause();
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        self.end_part(rec, cursor.as_deref())
    }

    /// The cutoff a sweep of `kind` starts with, or (the kind kept for ever) the running sweep
    /// cancelled and a clear refusal.
    pub(super) fn sweep_cutoff_or_cancel(&self, domain: &str, kind: Kind) -> Result<Timestamp> {
        if let Some(cutoff) = fresh_cutoff(self, domain, kind)? {
            return Ok(cutoff);
        }
        self.store().write(|tx| {
            if let Some(row) = sql::running(tx, domain, kind)? {
                let mut rec = row.record;
                rec.state = SweepState::Cancelled;
                rec.finished_at = Some(self.now());
                sql::finish(tx, &rec)?;
            }
            Ok(())
        })?;
        Err(Error::InvalidArgument(format!(
            "{domain} keeps its {} for ever (retention {}): nothing to sweep",
            kind.what(),
            Period::Never
        )))
    }

    /// Ends this process's part of a sweep: finished (done, cancelled) or let go for the next run.
    pub(super) fn end_part(&self, mut rec: SweepRecord, cursor: Option<&str>) -> Result<SweepRecord> {
        if rec.state != SweepState::Running {
            rec.finished_at = Some(self.now());
        }
        self.store().write(|tx| {
            sql::record_step(tx, &rec, cursor, 0)?;
            sql::finish(tx, &rec)
        })?;
        rec.parts = self.store().read(|c| sql::by_id(c, rec.id))?.record.parts;
        Ok(rec)
    }

    /// Claims the sweep of a domain's kind for this process: resumes the running one (with the
    /// lower cutoff) or begins one. Refused while another process holds it.
    pub(super) fn claim_sweep(&self, domain: &str, kind: Kind, cutoff: Timestamp) -> Result<(i64, Option<String>)> {
        let now = self.now();
        let domain = domain.to_string();
        self.store().write(|tx| match sql::running(tx, &domain, kind)? {
            Some(row) if held_elsewhere(&row, now) => Err(Error::NotAllowed(format!(
                "the {} sweep of {domain} is running in another process (sweep #{}); it resumes here if that \
                 process stops for {LEASE} s",
                kind.as_str(),
                row.record.id
            ))),
            Some(row) => {
                sql::take_over(tx, row.record.id, &OWNER, now + LEASE, cutoff)?;
                Ok((row.record.id, row.cursor))
            }
            None => {
                let rec = SweepRecord::begun(&domain, kind, false, cutoff, now);
                Ok((sql::insert(tx, &rec, Some(&OWNER), now + LEASE)?, None))
            }
        })
    }

    /// The audit log of sweeps, newest first: of one domain, or of every domain with `None`.
    pub fn retention_log(&self, domain: Option<&str>, limit: u32) -> Result<Vec<SweepRecord>> {
        let domain = domain.map(|d| self.require_domain(d).map(|d| d.name.as_str().to_string())).transpose()?;
        self.store().read(|c| sql::log(c, domain.as_deref(), limit))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Clock, ManualClock};
    use std::collections::BTreeMap;

    /// Items with a stored time, deleted like a real target (by the step's own cutoff test),
    /// with the option to fail some.
    #[derive(Default)]
    pub(crate) struct Items {
        pub items: BTreeMap<(Timestamp, u32), ()>,
        pub undeletable: Vec<u32>,
    }

    impl Target for Items {
        fn count(&mut self, _: &Hosting, _: &str, cutoff: Timestamp) -> Result<(i64, i64)> {
            Ok((self.items.keys().filter(|(t, _)| *t < cutoff).count() as i64, 0))
        }

        fn step(
            &mut self,
            _: &Hosting,
            _: &str,
            cutoff: Timestamp,
            cursor: Option<&str>,
            limit: usize,
        ) -> Result<StepDone> {
            let after: Option<(Timestamp, u32)> = cursor.map(|c| {
                let (t, n) = c.split_once(':').unwrap();
                (t.parse().unwrap(), n.parse().unwrap())
            });
            let batch: Vec<(Timestamp, u32)> = self
                .items
                .keys()
                .filter(|k| k.0 < cutoff && after.is_none_or(|a| **k > a))
                .take(limit)
                .copied()
                .collect();
            let mut done = StepDone::default();
            for k in &batch {
                if self.undeletable.contains(&k.1) {
                    done.failures.push(format!("item {} could not be deleted", k.1));
                } else {
                    self.items.remove(k);
                    done.deleted += 1;
                }
            }
            done.next = (batch.len() == limit).then(|| format!("{}:{}", batch[limit - 1].0, batch[limit - 1].1));
            Ok(done)
        }
    }

    fn setup() -> (Hosting, ManualClock) {
        let clock = ManualClock::new(1_000_000);
        let h = Hosting::open_in_memory().unwrap().with_clock(clock.clone());
        h.add_domain("example.org").unwrap();
        (h, clock)
    }

    fn items(ages: impl IntoIterator<Item = Timestamp>, now: Timestamp) -> Items {
        let mut it = Items::default();
        for (n, age) in ages.into_iter().enumerate() {
            it.items.insert((now - age, n as u32), ());
        }
        it
    }

    #[test]
    fn a_sweep_deletes_only_what_is_older_than_the_cutoff_in_steps_and_logs_it() {
        let (h, clock) = setup();
        h.set_retention("example.org", "archive", "1d").unwrap();
        let now = clock.now();
        let mut t = items((0..250).map(|i| i * 1000), now);
        let opts = SweepOptions { batch: 10, ..Default::default() };
        let rec = h.sweep_with("example.org", Kind::Archive, &mut t, &opts).unwrap();
        assert_eq!(rec.state, SweepState::Done);
        assert_eq!(rec.cutoff, now - 86_400);
        assert!(t.items.keys().all(|(stored, _)| *stored >= now - 86_400));
        assert_eq!(rec.deleted, 250 - 87, "ages 87000 s and up are past one day");
        assert!(rec.steps >= 2 && rec.longest_step_us <= rec.duration_us);
        let log = h.retention_log(Some("example.org"), 10).unwrap();
        assert_eq!(log, vec![rec.clone()]);
        assert!(
            rec.describe().contains("example.org archive before 913600: done (deleted 163 message(s)"),
            "{}",
            rec.describe()
        );
    }

    #[test]
    fn a_step_that_mostly_walked_past_kept_rows_does_not_grow_the_batch() {
        let quick = Duration::from_micros(100);
        assert_eq!(next_batch(100, quick, 100, MAX_BATCH, STEP_TARGET), 200, "a quick step of deletions doubles it");
        assert_eq!(next_batch(100, quick, 50, MAX_BATCH, STEP_TARGET), 200);
        assert_eq!(next_batch(100, quick, 49, MAX_BATCH, STEP_TARGET), 100, "a quick walk past kept rows keeps it");
        assert_eq!(next_batch(100, quick, 0, MAX_BATCH, STEP_TARGET), 100);
        assert_eq!(next_batch(100, STEP_TARGET * 2, 0, MAX_BATCH, STEP_TARGET), 50, "a slow step still halves it");
    }

    #[test]
    fn a_dry_run_counts_and_deletes_nothing() {
        let (h, clock) = setup();
        h.set_retention("example.org", "muc", "1h").unwrap();
        let mut t = items([10, 4000, 5000], clock.now());
        let rec = h
            .sweep_with("example.org", Kind::Muc, &mut t, &SweepOptions { dry_run: true, ..Default::default() })
            .unwrap();
        assert_eq!((rec.dry_run, rec.deleted, rec.state), (true, 2, SweepState::Done));
        assert_eq!(t.items.len(), 3);
        assert!(rec.describe().contains("would delete 2"), "{}", rec.describe());
        assert_eq!(h.retention_log(None, 5).unwrap().len(), 1);
    }

    #[test]
    fn never_refuses_to_sweep_and_cancels_a_running_sweep() {
        let (h, clock) = setup();
        let mut t = items([5000], clock.now());
        let e = h.sweep_with("example.org", Kind::Archive, &mut t, &SweepOptions::default()).unwrap_err();
        assert!(e.to_string().contains("keeps its one-to-one archives for ever"), "{e}");
        h.set_retention("example.org", "archive", "1s").unwrap();
        let mut t = items(1..=50, clock.now());
        let opts = SweepOptions { batch: 5, max_steps: Some(1), ..Default::default() };
        let part = h.sweep_with("example.org", Kind::Archive, &mut t, &opts).unwrap();
        assert_eq!(part.state, SweepState::Running);
        h.set_retention("example.org", "archive", "never").unwrap();
        assert!(h.sweep_with("example.org", Kind::Archive, &mut t, &SweepOptions::default()).is_err());
        assert_eq!(h.retention_log(None, 1).unwrap()[0].state, SweepState::Cancelled);
    }

    #[test]
    fn a_failing_item_is_reported_and_does_not_stop_the_rest() {
        let (h, clock) = setup();
        h.set_retention("example.org", "archive", "1s").unwrap();
        let mut t = items(10..20, clock.now());
        t.undeletable = vec![3];
        let rec = h
            .sweep_with("example.org", Kind::Archive, &mut t, &SweepOptions { batch: 2, ..Default::default() })
            .unwrap();
        assert_eq!((rec.deleted, rec.failed, rec.state), (9, 1, SweepState::Done));
        assert_eq!(rec.errors, vec!["item 3 could not be deleted".to_string()]);
        // The next sweep tries it again.
        t.undeletable.clear();
        let again = h.sweep_with("example.org", Kind::Archive, &mut t, &SweepOptions::default()).unwrap();
        assert_eq!((again.deleted, again.failed), (1, 0));
        assert!(t.items.is_empty());
    }

    #[test]
    fn another_process_holding_a_sweep_is_waited_for_until_its_lease_ends() {
        let (h, clock) = setup();
        h.set_retention("example.org", "archive", "1s").unwrap();
        let mut t = items(1..=30, clock.now());
        let opts = SweepOptions { batch: 5, max_steps: Some(1), ..Default::default() };
        let part = h.sweep_with("example.org", Kind::Archive, &mut t, &opts).unwrap();
        // Pretend a crashed process of another owner holds it.
        h.store()
            .write(|tx| {
                tx.execute("UPDATE retention_sweeps SET owner = 'other', lease_until = ?1", [clock.now() + LEASE])?;
                Ok(())
            })
            .unwrap();
        let e = h.sweep_with("example.org", Kind::Archive, &mut t, &SweepOptions::default()).unwrap_err();
        assert_eq!(e.code(), "not-allowed");
        clock.advance(LEASE + 1);
        let rest = h.sweep_with("example.org", Kind::Archive, &mut t, &SweepOptions::default()).unwrap();
        assert_eq!((rest.id, rest.state, rest.parts), (part.id, SweepState::Done, 2));
        // The sweep keeps the cutoff it began with: the newest item was not yet a second old.
        assert_eq!((rest.deleted, rest.cutoff), (29, part.cutoff));
    }

    #[test]
    fn the_record_is_written_now_and_then_and_a_crash_can_lose_the_count_of_at_most_max_unrecorded() {
        let dir = std::env::temp_dir().join(format!("xh-sweep-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.sqlite");
        let clock = ManualClock::new(1_000_000);
        let h = Hosting::open(&path).unwrap().with_clock(clock.clone());
        h.add_domain("example.org").unwrap();
        h.set_retention("example.org", "archive", "1s").unwrap();
        let mut t = items((0..30_000).map(|i| 10 + i % 1000), clock.now());
        let reader = std::sync::Mutex::new(rusqlite::Connection::open(&path).unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new((0i64, 0i64, 0i64)));
        let s2 = seen.clone();
        // Told after each step, before the engine records it: what a crash now would leave.
        let progress: Progress = std::sync::Arc::new(move |rec: &SweepRecord| {
            let (deleted, steps): (i64, i64) = reader
                .lock()
                .unwrap()
                .query_row("SELECT deleted, steps FROM retention_sweeps WHERE id = ?1", [rec.id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            let mut s = s2.lock().unwrap();
            s.0 = s.0.max(rec.deleted - deleted);
            s.1 += 1;
            s.2 = s.2.max(rec.steps - steps);
        });
        let opts = SweepOptions { batch: 50, progress: Some(progress), ..Default::default() };
        let rec = h.sweep_with("example.org", Kind::Archive, &mut t, &opts).unwrap();
        assert_eq!((rec.state, rec.deleted), (SweepState::Done, 30_000));
        let (most_unrecorded, steps, most_steps_behind) = *seen.lock().unwrap();
        assert_eq!(steps, rec.steps);
        assert!(most_unrecorded <= MAX_UNRECORDED, "{most_unrecorded}");
        assert!(most_steps_behind > 1, "not every step is written to the store: {most_steps_behind}");
        // The end is recorded whole.
        assert_eq!(h.retention_log(None, 1).unwrap()[0], rec);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A tiny deterministic generator: the property tests need no crate and replay exactly.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn property_nothing_newer_than_the_cutoff_is_ever_deleted() {
        // Random histories of stores, interrupted sweeps (a crash keeps the lease, a budget
        // releases it), clock steps both ways and policy changes. After every operation, what
        // vanished must have been older than now minus the period as they were during it.
        for seed in 1..=60u64 {
            let (h, clock) = setup();
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut t = Items::default();
            let mut next_id = 0u32;
            let mut period: Option<u64> = None;
            for _ in 0..80 {
                let before: Vec<(Timestamp, u32)> = t.items.keys().copied().collect();
                match rng.below(6) {
                    0 => {
                        for _ in 0..rng.below(40) {
                            let age = rng.below(20_000) as i64 - 1000; // some from "the future"
                            t.items.insert((clock.now() - age, next_id), ());
                            next_id += 1;
                        }
                    }
                    1 => clock.advance(rng.below(7200) as i64 - 3600),
                    2 => {
                        period = match rng.below(4) {
                            0 => None,
                            n => Some(n * 1500),
                        };
                        let text = period.map_or("never".to_string(), |s| s.to_string());
                        h.set_retention("example.org", "archive", &text).unwrap();
                    }
                    3 => {
                        // A crash mid-sweep: steps stop, the lease stays; later someone resumes.
                        let opts = SweepOptions {
                            batch: 1 + rng.below(7) as usize,
                            max_steps: Some(rng.below(4)),
                            ..Default::default()
                        };
                        let _ = h.sweep_with("example.org", Kind::Archive, &mut t, &opts);
                        h.store()
                            .write(|tx| {
                                tx.execute(
                                    "UPDATE retention_sweeps SET owner = 'crashed', lease_until = ?1 WHERE state = 'running'",
                                    [clock.now() + LEASE],
                                )?;
                                Ok(())
                            })
                            .unwrap();
                    }
                    _ => {
                        let opts = SweepOptions {
                            batch: 1 + rng.below(9) as usize,
                            max_steps: (rng.below(2) == 0).then(|| rng.below(5)),
                            ..Default::default()
                        };
                        let _ = h.sweep_with("example.org", Kind::Archive, &mut t, &opts);
                    }
                }
                let now = clock.now();
                for k in before.iter().filter(|k| !t.items.contains_key(k)) {
                    let p = period.expect("nothing is deleted under never") as i64;
                    assert!(k.0 < now - p, "seed {seed}: item stored at {} deleted at {now} with period {p}", k.0);
                }
            }
        }
    }
}
