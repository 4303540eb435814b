//! Proof that the running totals match the files: decisions trust the totals (they never count
//! files), so an admin, a test or a server after a crash can recount once and compare. The
//! recount scans every file and open reservation: a maintenance call, never a decision's.

use serde::Serialize;

use crate::store::quotas as sql;
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
    /// Recounts storage and reservations from the files and slots the ledger holds and returns
    /// every scope whose totals differ; with `repair`, sets them to the recount in the same
    /// transaction (so no decision runs between the count and the fix). Window volume is not
    /// recounted: files are forgotten on deletion, so only the buckets know past uploads.
    pub fn audit_upload_ledger(&self, repair: bool) -> Result<Vec<LedgerDrift>> {
        self.store().write(|tx| {
            let mut drifts = Vec::new();
            for (scope, domain, username, stored, reserved) in sql::recomputed_totals(tx)? {
                let (was_stored, was_reserved) = sql::usage(tx, &scope, &domain, &username)?;
                if (was_stored, was_reserved) == (stored, reserved) {
                    continue;
                }
                if repair {
                    sql::set_usage(tx, &scope, &domain, &username, stored, reserved)?;
                }
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
            Ok(drifts)
        })
    }
}
