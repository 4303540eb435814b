//! Proof that the running totals match the files: decisions trust the totals (they never count
//! files), so an admin, a test or a server after a crash can recount once and compare. The
//! recount scans every file and open reservation, and walks the watched upload directories for
//! files the ledger does not know (a file it never heard of is drift too, or an upload that
//! slipped past the ledger would pass every audit): a maintenance call, never a decision's.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::quotas as sql;
use crate::worker::Pending;
use crate::{Hosting, Result};

/// One scope whose running totals differ from the recount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerDrift {
    /// `user`, `domain` or `global`.
    pub scope: String,
    pub domain: String,
    pub username: String,
    pub stored: u64,
    pub reserved: u64,
    pub counted_stored: u64,
    pub counted_reserved: u64,
}

impl Hosting {
    /// Recounts storage and reservations from the files and slots the ledger holds, and from
    /// the files in the watched upload directories that it does not hold, and returns every
    /// scope whose totals differ; with `repair`, corrects them. A file the ledger does not know
    /// counts for the owner a watched slot names, else in global storage only (see upkeep.rs);
    /// the repair records it as the sweep would. The recount reads one snapshot on a connection
    /// of its own (seconds for a million files), so decisions go on meanwhile; every decision
    /// since the snapshot changed files and totals together, so the difference found is still
    /// the difference, and the repair shifts each total by it in one short transaction. Window
    /// volume is not recounted: files are forgotten on deletion, so only the buckets know past
    /// uploads.
    pub fn audit_upload_ledger(&self, repair: bool) -> Result<Vec<LedgerDrift>> {
        // Watches this handle still has queued first: their files are their slots' owners'.
        self.write_upload_slot_watches()?;
        // Walked first: a file counted between the walk and the snapshot is then in both, and
        // the repair skips files counted meanwhile.
        let unknown = self.audit_unknown_files()?;
        // What counting them changes, per scope: (stored, reserved).
        let mut found: BTreeMap<(String, String, String), (i64, i64)> = BTreeMap::new();
        let mut add = |key: (&str, &str, &str), stored: i64, reserved: i64| {
            let e = found.entry((key.0.to_string(), key.1.to_string(), key.2.to_string())).or_default();
            *e = (e.0.saturating_add(stored), e.1 - reserved);
        };
        for (_, size, owner) in &unknown {
            let reserved = owner.as_ref().map_or(0, |o| o.reserved);
            if let Some(o) = owner {
                add(("user", &o.domain, &o.username), *size, reserved);
                add(("domain", &o.domain, ""), *size, reserved);
            }
            add(("global", "", ""), *size, reserved);
        }
        let (ledger, drifts) = self.store().read_apart(|c| {
            let (mut ledger, mut drifts) = (Vec::new(), Vec::new());
            let mut recounted = sql::recomputed_totals(c)?;
            for (scope, domain, username) in found.keys() {
                if !recounted.iter().any(|(s, d, u, _, _)| (s, d, u) == (scope, domain, username)) {
                    let (stored, reserved) = sql::usage(c, scope, domain, username)?;
                    recounted.push((scope.clone(), domain.clone(), username.clone(), stored, reserved));
                }
            }
            for (scope, domain, username, stored, reserved) in recounted {
                let (was_stored, was_reserved) = sql::usage(c, &scope, &domain, &username)?;
                let (on_disk, held) =
                    found.get(&(scope.clone(), domain.clone(), username.clone())).copied().unwrap_or_default();
                if (was_stored, was_reserved) != (stored, reserved) {
                    ledger.push((
                        scope.clone(),
                        domain.clone(),
                        username.clone(),
                        stored - was_stored,
                        reserved - was_reserved,
                    ));
                }
                let (counted_stored, counted_reserved) = (stored.saturating_add(on_disk), (reserved + held).max(0));
                if (was_stored, was_reserved) != (counted_stored, counted_reserved) {
                    drifts.push(LedgerDrift {
                        scope,
                        domain,
                        username,
                        stored: was_stored as u64,
                        reserved: was_reserved as u64,
                        counted_stored: counted_stored as u64,
                        counted_reserved: counted_reserved as u64,
                    });
                }
            }
            Ok((ledger, drifts))
        })?;
        if repair && !drifts.is_empty() {
            self.count_audited_files(&unknown)?;
            self.store().write(|tx| {
                for (scope, domain, username, stored, reserved) in &ledger {
                    // The repair: shift the totals by what was missing or extra.
                    sql::add_usage(tx, scope, domain, username, *stored, *reserved)?;
                }
                Ok(())
            })?;
        }
        Ok(drifts)
    }

    /// [`Hosting::audit_upload_ledger`] on the worker, for an admin command inside a server.
    /// On the worker's own connection, as [`Hosting::later`]: a held lock is waited for there,
    /// never on the connection the server's thread uses.
    pub fn start_upload_audit(&self, repair: bool) -> Result<Pending<Result<Vec<LedgerDrift>>>> {
        self.later(move |w| w.audit_upload_ledger(repair))
    }
}

#[cfg(test)]
mod tests {
    use crate::test_store::{release_after_waiting, TestStore};

    #[test]
    fn an_audit_started_for_a_server_waits_for_a_held_lock_on_the_workers_connection() {
        // An admin's repairing audit behind another process's write waits as the worker does.
        let store = TestStore::new("audit-held-lock");
        let h = store.open_as_server();
        // A total no file accounts for: the repair has something to write.
        h.store().write(|tx| crate::store::quotas::add_usage(tx, "global", "", "", 100, 0)).unwrap();
        let held = store.hold_write_lock();
        let pending = h.start_upload_audit(true).unwrap();
        release_after_waiting(&pending, held);
        let drifts = pending.wait().unwrap();
        assert_eq!(drifts.len(), 1, "{drifts:?}");
        assert!(h.audit_upload_ledger(false).unwrap().is_empty(), "the repair was not made");
    }
}
