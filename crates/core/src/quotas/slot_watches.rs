//! Slot watches asked for on a server's event loop, written by the next transaction there.
//!
//! Prosody's upload component learns a granted slot's file name only from mod_http_file_share's
//! reply, after the decision's transaction has committed (mod_http_file_share picks the name
//! itself, when it stores the slot). Written in a transaction of its own, the watch cost the
//! loop a second write for every slot: the locking round of a `BEGIN IMMEDIATE` and its commit
//! again, about 28% of the module's samples on Prosody's loop (perf, 2,000 slot requests). So a
//! watch is queued in the handle's memory ([`Hosting::queue_upload_slot_watch`], a few
//! microseconds) and written by the next transaction that is made anyway:
//!
//! - the next slot decision (on the loop, or on the worker when another process held the lock):
//!   one insert in its transaction, so that a granted slot costs the loop one store write;
//! - the look at the slots the server starts every few seconds, the upkeep and the audit, each
//!   before it looks at anything: a slot's file is thus never looked at, nor found "unknown", in
//!   this process before its watch is in the store.
//!
//! What item 2 of issue 11 asks still holds. A reservation's watch is in the store long before
//! the reservation could expire (the slot check runs every few seconds, a slot lives minutes),
//! and from then on it holds while the upload arrives. A file another process's sweep or audit
//! finds before its watch is written is counted at once, in global storage, and charged to the
//! slot's owner when the watch arrives (`finish_slot` in upkeep.rs). A batch whose transaction
//! fails (another process's lock, a full disk) goes back to the queue and is written by the next
//! one. As the server stops, what is queued is written, waiting for another process's lock if
//! need be ([`Hosting::write_upload_slot_watches_waiting`]: the server serves nobody any more,
//! and a write handed to the worker would die with the process). What is still queued is lost
//! when the server crashes, or when another process holds the store's lock for longer than that
//! wait as it stops (a backup), and when the module is unloaded while the server runs on and its
//! write then fails for good: the watches asked for since the last decision or check, at most a
//! few seconds' worth. Those reservations end with their slots' lifetime, and their files are
//! counted in global storage only, as for a slot granted before the module was loaded.

use std::sync::Mutex;

use rusqlite::Connection;

use super::upkeep::{check_path, count_watch_failure, failure_key, usable_until};
use crate::locked::locked;
use crate::store::quotas::{self as sql, SlotRow};
use crate::{Error, Hosting, NowOrLater, Result, Timestamp};

/// The most watches a handle keeps queued. Each transaction of the handle's slot decisions and
/// every slot check writes them, so more than a few means the store has refused writes for long
/// (then slot requests fail too); past this a watch is refused, and the server logs it, rather
/// than memory growing for as long as the store is broken.
const MOST_QUEUED: usize = 100_000;

/// A watch asked for and not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QueuedWatch {
    reservation: i64,
    file_path: String,
    asked_at: Timestamp,
    usable_until: Timestamp,
}

/// The watches a handle was asked for and has not written yet, oldest first.
#[derive(Debug, Default)]
pub(crate) struct SlotWatchQueue(Mutex<Vec<QueuedWatch>>);

impl SlotWatchQueue {
    fn push(&self, watch: QueuedWatch) -> Result<()> {
        let mut queue = locked(&self.0);
        if queue.len() >= MOST_QUEUED {
            return Err(Error::Internal(format!(
                "{MOST_QUEUED} upload slot watches wait to be written to the store, which has refused writes \
                 meanwhile: this one is dropped, and its file will count in global storage only"
            )));
        }
        queue.push(watch);
        Ok(())
    }

    /// Everything queued, for one transaction to write.
    fn take(&self) -> Vec<QueuedWatch> {
        std::mem::take(&mut *locked(&self.0))
    }

    /// A batch whose transaction did not commit goes back, before what was queued meanwhile.
    fn put_back(&self, mut batch: Vec<QueuedWatch>) {
        if batch.is_empty() {
            return;
        }
        let mut queue = locked(&self.0);
        batch.append(&mut queue);
        *queue = batch;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        locked(&self.0).len()
    }
}

/// Watches taken from a handle's queue for one transaction: written by [`Batch::write`] inside
/// it, put back in the queue when the transaction does not commit ([`Batch::settle`]).
pub(super) struct Batch<'a> {
    queue: &'a SlotWatchQueue,
    watches: Vec<QueuedWatch>,
    /// Why a watch could not be written (its reservation is gone): told by the next check.
    failures: Vec<String>,
}

impl<'a> Batch<'a> {
    /// The watches queued on `owner`'s handle (the loop's, also when the transaction is the
    /// worker's).
    pub(super) fn take(owner: &'a Hosting) -> Self {
        let queue = owner.slot_watches();
        Batch { queue, watches: queue.take(), failures: Vec::new() }
    }

    /// Writes the watches in transaction `tx`; returns how many were written.
    pub(super) fn write(&mut self, tx: &Connection) -> Result<usize> {
        let mut written = 0;
        for w in &self.watches {
            let Some((domain, username, _, _)) = sql::reservation(tx, w.reservation)? else {
                self.failures.push(format!("upload reservation {} is gone", w.reservation));
                continue;
            };
            let slot = SlotRow {
                file_path: w.file_path.clone(),
                domain,
                username,
                reservation: Some(w.reservation),
                usable_until: w.usable_until,
                arriving_bytes: None,
            };
            written += usize::from(sql::insert_slot(tx, &slot, w.asked_at)?);
        }
        Ok(written)
    }

    /// After the transaction: on a commit the failures are counted for the next report of the
    /// store at `key`; otherwise the watches go back to the queue.
    pub(super) fn settle<T>(self, key: Option<std::path::PathBuf>, outcome: &Result<T>) {
        if outcome.is_ok() {
            for failure in self.failures {
                count_watch_failure(key.clone(), Err(Error::not_found("upload slot's reservation", failure)));
            }
        } else {
            self.queue.put_back(self.watches);
        }
    }
}

impl Hosting {
    /// Watches the file of a slot granted under `reservation` (see
    /// [`Hosting::watch_upload_slot`]), written with this handle's next slot decision, or by the
    /// next slot check, upkeep or audit, whichever comes first (see the module's description):
    /// what Prosody's slot hook calls, on its loop, for every granted slot. Nothing here touches
    /// the store. `usable_for` counts from now. A path that is not strict is refused at once.
    pub fn queue_upload_slot_watch(&self, reservation: i64, file_path: String, usable_for: u64) -> Result<()> {
        check_path("an upload's file", &file_path)?;
        let asked_at = self.now();
        let usable_until = usable_until(asked_at, usable_for);
        self.slot_watches().push(QueuedWatch { reservation, file_path, asked_at, usable_until })
    }

    /// Writes the watches queued on `owner`'s handle in one transaction of this handle (the
    /// worker's, for a call made there); returns how many were written. Nothing queued, nothing
    /// written.
    pub(crate) fn write_slot_watches_of(&self, owner: &Hosting) -> Result<usize> {
        let mut batch = Batch::take(owner);
        if batch.watches.is_empty() {
            return Ok(0);
        }
        let outcome = self.store().write(|tx| batch.write(tx));
        batch.settle(failure_key(self), &outcome);
        outcome
    }

    /// Writes the watches queued on this handle now: what a server does as it stops, so that
    /// slots still usable after a restart keep their owner.
    pub fn write_upload_slot_watches(&self) -> Result<usize> {
        self.write_slot_watches_of(self)
    }

    /// [`Hosting::write_upload_slot_watches`] for a server's event loop that goes on serving (a
    /// module unloaded): at once when nobody else holds the store's lock, else by the worker once
    /// it is free (its tries go on, see [`Hosting::now_or_in_background`]).
    pub fn write_upload_slot_watches_now_or_in_background(&self) -> Result<NowOrLater<usize>> {
        let owner = self.clone();
        self.now_or_in_background(move |h| h.write_slot_watches_of(&owner))
    }

    /// [`Hosting::write_upload_slot_watches`] for a server that is stopping, and returns only once
    /// they are written (or have failed): at once when nobody else holds the store's lock, else
    /// on the worker, which waits `worker_busy_timeout` for it. The loop serves nobody any more,
    /// so it may wait; a write left to the worker's background tries would be lost with the
    /// process, which exits right after.
    pub fn write_upload_slot_watches_waiting(&self) -> Result<usize> {
        let owner = self.clone();
        match self.now_or_later(move |h| h.write_slot_watches_of(&owner))? {
            NowOrLater::Now(written) => Ok(written),
            NowOrLater::Later(pending) => pending.wait(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::quotas::{UploadDecision, UploadLimits};
    use crate::test_store::TestStore;
    use crate::{DomainSettings, ManualClock};

    const T0: i64 = 1_700_002_800;

    fn granted(h: &Hosting, user: &str, size: i64) -> i64 {
        match h.authorize_upload("example.org", user, size).unwrap() {
            UploadDecision::Granted(r) => r.id,
            UploadDecision::Denied(d) => panic!("denied: {d:?}"),
        }
    }

    fn watched(h: &Hosting, path: &str) -> Option<SlotRow> {
        h.store().read(|c| sql::slot(c, path)).unwrap()
    }

    fn usage(h: &Hosting, user: &str) -> (u64, u64) {
        let u = h.upload_usage("example.org", Some(user)).unwrap();
        (u.stored, u.reserved)
    }

    #[test]
    fn a_queued_watch_is_written_by_the_next_decision_or_check_and_counts_the_file_for_its_owner() {
        let store = TestStore::new("slot-watch-queue");
        let clock = ManualClock::new(T0);
        let h = store.open().with_clock(clock.clone());
        let limits = UploadLimits { user_storage: Some(20_000), slot_lifetime: 300, ..Default::default() };
        h.add_domain_with("example.org", DomainSettings { uploads: limits, ..Default::default() }).unwrap();
        let root = std::env::temp_dir().join(format!("xh-slot-watch-queue-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let root = root.to_str().unwrap().to_string();
        h.watch_upload_root(&root, "~").unwrap();
        let (a, b) = (format!("{root}/a.bin"), format!("{root}/b.bin"));

        // Queued: nothing in the store yet, and a bad path is refused at once.
        let first = granted(&h, "alice", 11_000);
        h.queue_upload_slot_watch(first, a.clone(), 300).unwrap();
        assert!(h.queue_upload_slot_watch(first, "relative/x.bin".into(), 300).is_err());
        assert!(watched(&h, &a).is_none());
        assert_eq!(h.slot_watches().len(), 1);
        // The next decision writes it in its own transaction, denied or not.
        clock.advance(1);
        assert!(matches!(h.authorize_upload("example.org", "alice", 11_000).unwrap(), UploadDecision::Denied(_)));
        let row = watched(&h, &a).expect("written by the next decision");
        assert_eq!((row.username.as_str(), row.reservation, row.usable_until), ("alice", Some(first), T0 + 300));
        assert_eq!(h.slot_watches().len(), 0);

        // A decision tried without waiting while another process holds the lock fails; the
        // watch goes back to the queue, and the worker's decision, once the lock is free, writes
        // it (lost, it would leave bob's slot unwatched).
        let second = granted(&h, "bob", 1_000);
        h.queue_upload_slot_watch(second, b.clone(), 300).unwrap();
        let other = rusqlite::Connection::open(&store.path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let NowOrLater::Later(pending) = h.authorize_upload_now_or_later("example.org", "carol", 1_000).unwrap() else {
            panic!("decided although another connection held the lock")
        };
        other.execute_batch("ROLLBACK").unwrap();
        assert!(matches!(pending.wait().unwrap(), UploadDecision::Granted(_)));
        assert_eq!(watched(&h, &b).and_then(|s| s.reservation), Some(second));

        // The upload finished before its watch was written: the check writes the watch first,
        // so the file is dave's, not an unknown file in global storage.
        let third = granted(&h, "dave", 1_000);
        let c = format!("{root}/c.bin");
        h.queue_upload_slot_watch(third, c.clone(), 300).unwrap();
        fs::write(&c, vec![0u8; 900]).unwrap();
        let done = h.upload_slot_check(&[]).unwrap();
        assert_eq!((done.slots_completed, done.watch_failures), (1, 0), "{done:?}");
        assert_eq!(usage(&h, "dave"), (900, 0));
        // A watch whose reservation is gone is told by the next report.
        h.queue_upload_slot_watch(9_999, format!("{root}/d.bin"), 300).unwrap();
        let done = h.upload_slot_check(&[]).unwrap();
        assert_eq!(done.watch_failures, 1, "{done:?}");
        assert!(h.audit_upload_ledger(false).unwrap().is_empty());
        fs::remove_dir_all(&root).unwrap();
    }

    /// Prosody stopping: behind another process's lock the write waits (on the worker) and has
    /// the watches in the store when it returns; the process exits right after, so a write left
    /// to the worker's background tries (what the unload uses) would be lost with it.
    #[test]
    fn the_write_as_the_server_stops_returns_once_the_watches_are_in_the_store() {
        let store = TestStore::new("slot-watch-stopping");
        let h = store.open().with_clock(ManualClock::new(T0));
        h.add_domain("example.org").unwrap();
        // Nothing queued: nothing written, at once.
        assert_eq!(h.write_upload_slot_watches_waiting().unwrap(), 0);
        let first = granted(&h, "alice", 1_000);
        h.queue_upload_slot_watch(first, "/srv/up/a.bin".into(), 300).unwrap();
        let other = rusqlite::Connection::open(&store.path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let stopping = {
            let h = h.clone();
            std::thread::spawn(move || h.write_upload_slot_watches_waiting())
        };
        // The write has taken the watch (on the worker, or in the try before) and is still
        // waiting for the lock: it has not returned.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while h.slot_watches().len() != 0 {
            assert!(std::time::Instant::now() < deadline, "the watch was never taken");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!stopping.is_finished(), "returned while the lock was held");
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(stopping.join().unwrap().unwrap(), 1);
        // In the store when the call returned, not later.
        assert_eq!(watched(&h, "/srv/up/a.bin").and_then(|s| s.reservation), Some(first));
    }
}
