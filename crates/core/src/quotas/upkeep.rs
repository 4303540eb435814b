//! Upkeep a server runs from a timer, on the core's worker rather than its own event loop:
//! neither Prosody 0.12 nor ejabberd 23.01 says when an uploaded file is deleted (expired by
//! mod_http_file_share or mod_http_upload_quota, removed with its account, or by an admin), so
//! the files the ledger holds are looked for on disk and the missing ones forgotten. The same
//! pass purges expired reservations and old window buckets.
//!
//! Servers that use this record each file under its path (the file id is the path), and name
//! the directory their uploads live in as the sweep's root.

use std::io::ErrorKind;

use serde::Serialize;

use super::ledger::forget;
use super::paths::UploadRoot;
use crate::store::quotas as sql;
use crate::worker::Pending;
use crate::{Error, Hosting, Result};

/// File ids read (and looked for on disk) per transaction.
const SWEEP_PAGE: i64 = 1000;
/// Purge rounds per upkeep; each is bounded, so a huge backlog is worked off over several runs.
const PURGE_ROUNDS: usize = 50;

/// What one upkeep pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UploadUpkeep {
    /// Expired reservations released, long-released ones and unreachable window buckets dropped.
    pub purged: usize,
    /// Files under the roots looked for on disk.
    pub files_checked: usize,
    /// Files found gone and taken out of storage.
    pub files_forgotten: usize,
}

impl Hosting {
    /// Looks for every file recorded under directory `root` and forgets those that no longer
    /// exist; returns (checked, forgotten). Only "no such file" counts as deleted: a file that
    /// cannot be looked at for another reason stays counted, and a root that is not a directory
    /// (an unmounted disk, a typo) checks nothing, so a sweep can never empty the ledger by
    /// mistake.
    /// Only ids strictly below the root are looked up ([`UploadRoot::file`]): one with `..`, a
    /// NUL, or a symbolic link on its way is never forgotten (nor, later, deleted).
    pub fn sweep_upload_files(&self, root: &str) -> Result<(usize, usize)> {
        let Some(mut below) = UploadRoot::open(root) else { return Ok((0, 0)) };
        let root = root.trim_end_matches('/');
        // Every id that starts with "<root>/": '0' is the byte after '/'.
        let (from, to) = (format!("{root}/"), format!("{root}0"));
        let (mut after, mut checked, mut forgotten) = (String::new(), 0, 0);
        loop {
            let page = self.store().read(|c| sql::file_ids_between(c, &from, &to, &after, SWEEP_PAGE))?;
            let Some(last) = page.last().cloned() else { break };
            checked += page.len();
            let gone: Vec<&String> = page
                .iter()
                .filter(|id| {
                    below.file(id).is_some_and(
                        |path| matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == ErrorKind::NotFound),
                    )
                })
                .collect();
            if !gone.is_empty() {
                forgotten +=
                    self.store().write(|tx| gone.iter().try_fold(0, |n, id| Ok(n + usize::from(forget(tx, id)?))))?;
            }
            after = last;
        }
        Ok((checked, forgotten))
    }

    /// One upkeep pass, on the caller's thread: purges the ledger, then sweeps every root.
    pub fn upload_upkeep(&self, roots: &[String]) -> Result<UploadUpkeep> {
        let mut upkeep = UploadUpkeep::default();
        for _ in 0..PURGE_ROUNDS {
            match self.purge_upload_ledger()? {
                0 => break,
                n => upkeep.purged += n,
            }
        }
        for root in roots {
            let (checked, forgotten) = self.sweep_upload_files(root)?;
            upkeep.files_checked += checked;
            upkeep.files_forgotten += forgotten;
        }
        Ok(upkeep)
    }

    /// [`Hosting::upload_upkeep`] on the worker, for a server whose timer runs on its event loop.
    pub fn start_upload_upkeep(&self, roots: Vec<String>) -> Result<Pending<Result<UploadUpkeep>>> {
        let hosting = self.clone();
        Pending::spawn(async move {
            tokio::task::spawn_blocking(move || hosting.upload_upkeep(&roots))
                .await
                .map_err(|e| Error::Internal(format!("upload upkeep failed: {e}")))?
        })
        .map_err(|e| Error::Internal(format!("cannot start the worker: {e}")))
    }
}
