//! Proof that the running totals match the files: decisions trust the totals (they never count
//! files), so an admin, a test or a server after a crash can recount once and compare. The
//! recount scans every file and open reservation: a maintenance call, never a decision's.

use serde::Serialize;

use crate::store::quotas as sql;
use crate::worker::Pending;
use crate::{Error, Hosting, Result};

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
    /// Recounts storage and reservations from the files and slots the ledger holds and returns
    /// every scope whose totals differ; with `repair`, corrects them. The recount reads one
    /// snapshot on a connection of its own (seconds for a million files), so decisions go on
    /// meanwhile; every decision since the snapshot changed files and totals together, so the
    /// difference found is still the difference, and the repair shifts each total by it in one
    /// short transaction. Window volume is not recounted: files are forgotten on deletion, so
    /// only the buckets know past uploads.
    pub fn audit_upload_ledger(&self, repair: bool) -> Result<Vec<LedgerDrift>> {
        let drifts = self.store().read_apart(|c| {
            let mut drifts = Vec::new();
            for (scope, domain, username, stored, reserved) in sql::recomputed_totals(c)? {
                let (was_stored, was_reserved) = sql::usage(c, &scope, &domain, &username)?;
                if (was_stored, was_reserved) != (stored, reserved) {
                    drifts.push(LedgerDrift {
                        scope,
                        domain,
                        username,
                        stored: was_stored as u64,
                        reserved: was_reserved as u64,
                        counted_stored: stored as u64,
                        counted_reserved: reserved as u64,
                    });
                }
            }
            Ok(drifts)
        })?;
        if repair && !drifts.is_empty() {
            self.store().write(|tx| {
                for d in &drifts {
                    let stored = d.counted_stored as i64 - d.stored as i64;
                    let reserved = d.counted_reserved as i64 - d.reserved as i64;
                    sql::shift_usage(tx, &d.scope, &d.domain, &d.username, stored, reserved)?;
                }
                Ok(())
            })?;
        }
        Ok(drifts)
    }

    /// [`Hosting::audit_upload_ledger`] on the worker, for an admin command inside a server.
    pub fn start_upload_audit(&self, repair: bool) -> Result<Pending<Result<Vec<LedgerDrift>>>> {
        let hosting = self.clone();
        Pending::spawn(async move {
            tokio::task::spawn_blocking(move || hosting.audit_upload_ledger(repair))
                .await
                .map_err(|e| Error::Internal(format!("upload audit failed: {e}")))?
        })
        .map_err(|e| Error::Internal(format!("cannot start the worker: {e}")))
    }
}
