//! The ledger's life cycle: authorize (reserve), commit, release, forget, and maintenance.
//!
//! Every call is one short `BEGIN IMMEDIATE` transaction of key lookups on running totals and
//! time buckets: its cost does not depend on how many files are stored. Writers of every
//! process are serialised by SQLite, so two slot requests (threads, or Prosody and the CLI)
//! can never both see the same room.

use rusqlite::Connection;

use super::decision::{
    check_upload_size, Denial, Reservation, UploadDecision, UploadLimit, DOMAIN_WINDOWS, USER_WINDOWS,
};
use super::paths::plain_file_id;
use super::policy::{user_overrides, EffectiveLimits, MAX_DOMAIN_STORAGE, MAX_UPLOAD_SIZE};
use super::settings_cache::{domain_limits, global_limits};
use super::slot_watches::Batch;
use super::upkeep::failure_key;
use super::username_of;
use super::windows::{self, Scope, DAY};
use crate::store::quotas as sql;
use crate::verification::owner_suspended;
use crate::{DomainName, Error, Hosting, NowOrLater, Result, Timestamp};

/// Expired reservations released, and long-released ones forgotten, per decision: bounded work
/// on the hot path that still keeps up with any rate of abandoned slots.
const EXPIRE_PER_CALL: i64 = 16;
/// Rows one background purge step changes at most (see `purge_upload_ledger`).
const PURGE_EXPIRED_STEP: i64 = 250;
const PURGE_BUCKET_STEP: i64 = 500;
/// How long after its expiry a reservation is kept (as released) so that an upload completing
/// late is still recorded: a day, far longer than any slot's upload takes. The one rule for it;
/// grants tell servers the resulting time (`Reservation::count_until`).
const KEEP_RELEASED: i64 = DAY;
/// The longest a slot may hold its reservation, whatever the settings say.
const MAX_SLOT_LIFETIME: u64 = 7 * DAY as u64;

/// A refusal when `size` more bytes would take a scope's total (stored and reserved) over
/// `limit`. The sums saturate rather than overflow: a total at the top of the range refuses
/// everything, it never wraps round to room.
fn storage_denial(limit: Option<u64>, stored: i64, reserved: i64, size: u64, kind: UploadLimit) -> Option<Denial> {
    let limit = limit?;
    let used = stored.max(0).saturating_add(reserved.max(0)) as u64;
    (used.saturating_add(size) > limit).then_some(Denial {
        limit: kind,
        limit_value: limit,
        usage: used,
        requested: size,
        retry_at: None,
    })
}

/// File ids and slot keys are the server's names (paths, slot ids): non-empty, and short enough
/// to index.
fn check_key(what: &str, key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 1024 {
        return Err(Error::InvalidArgument(format!("a {what} has 1 to 1024 bytes")));
    }
    Ok(())
}

/// A completed upload's size as the server measured it: never negative, and never more than a
/// slot could have been granted for, so the totals it moves stay exact.
fn check_commit(bytes: i64, file_id: &str) -> Result<()> {
    if !(0..=MAX_UPLOAD_SIZE as i64).contains(&bytes) {
        return Err(Error::InvalidArgument(format!("an upload cannot have {bytes} bytes")));
    }
    check_key("file id", file_id)?;
    // The upkeep looks ids up on disk (and retention will delete them): a name that walks up
    // or hides a NUL is never one the core records.
    if !plain_file_id(file_id) {
        return Err(Error::InvalidArgument(format!("file id {file_id:?} has '.' or '..' parts or a NUL")));
    }
    Ok(())
}

/// Turns a reservation into a stored file: its bytes move from reserved (unless it was released
/// already) to stored, and into the windows.
pub(super) fn commit(tx: &Connection, reservation: i64, bytes: i64, file_id: &str, now: Timestamp) -> Result<()> {
    let (domain, user, size, released) = sql::reservation(tx, reservation)?
        .ok_or_else(|| Error::not_found("upload reservation", reservation.to_string()))?;
    sql::delete_reservation(tx, reservation)?;
    if !sql::insert_file(tx, file_id, &domain, &user, bytes, now)? {
        return Err(Error::AlreadyExists { what: "uploaded file", key: file_id.to_string() });
    }
    add_totals(tx, &domain, &user, bytes, if released { 0 } else { -size })?;
    windows::record(tx, &domain, &user, bytes, now)?;
    windows::record(tx, &domain, "", bytes, now)
}

/// Takes a deleted file out of storage; `false` when the ledger does not know it.
pub(crate) fn forget(tx: &Connection, file_id: &str) -> Result<bool> {
    match sql::take_file(tx, file_id)? {
        Some((domain, user, size)) => add_totals(tx, &domain, &user, -size, 0).map(|()| true),
        None => Ok(false),
    }
}

/// Moves stored and reserved bytes of a (domain, user) in all three scopes; of domain '' (a file
/// found on disk that nobody can be charged for, see upkeep.rs) only in the global one.
pub(super) fn add_totals(tx: &Connection, domain: &str, user: &str, stored: i64, reserved: i64) -> Result<()> {
    if !domain.is_empty() {
        sql::add_usage(tx, "user", domain, user, stored, reserved)?;
        sql::add_usage(tx, "domain", domain, "", stored, reserved)?;
    }
    sql::add_usage(tx, "global", "", "", stored, reserved)
}

/// Releases up to `limit` expired reservations and forgets as many long-released ones.
fn expire(tx: &Connection, now: Timestamp, limit: i64) -> Result<usize> {
    let ids = sql::expired_reservations(tx, now, limit)?;
    for &id in &ids {
        release_open(tx, id)?;
    }
    // Asked first: a DELETE that finds nothing still cost each decision a write statement's
    // set-up (a sixth of its time on Prosody's loop); the read costs a few microseconds.
    let before = now - KEEP_RELEASED;
    let forgotten = if sql::any_released_before(tx, before)? { sql::delete_released(tx, before, limit)? } else { 0 };
    Ok(ids.len() + forgotten)
}

/// Gives an open reservation's bytes back and keeps it on record as released (so that a late
/// upload still finds its slot); `false` if it was released already.
pub(super) fn release_open(tx: &Connection, id: i64) -> Result<bool> {
    let Some((domain, user, size, false)) = sql::reservation(tx, id)? else { return Ok(false) };
    add_totals(tx, &domain, &user, 0, -size)?;
    sql::mark_released(tx, id)?;
    Ok(true)
}

impl Hosting {
    /// Decides a slot request for `size` bytes by `username` on `domain`: a grant reserves the
    /// bytes against every limit until [`Hosting::commit_upload`], [`Hosting::release_upload`]
    /// or the slot's expiry; a denial names the first limit that refused. Checks run from the
    /// cheapest and least waitable (file size, storage) to the windows.
    ///
    /// A size of zero or less is `invalid-argument` (the servers answer `bad-request`; text from
    /// the wire goes through [`super::parse_upload_size`] first); an unknown domain `not-found`.
    pub fn authorize_upload(&self, domain: &str, username: &str, size: i64) -> Result<UploadDecision> {
        self.authorize(self, domain, username, size, None, None)
    }

    /// [`Hosting::authorize_upload`] for a server's event loop: decided at once when nobody else
    /// holds the store's write lock (the usual case, at the usual cost), else on the core's
    /// worker, which waits for the lock (see [`Hosting::now_or_later`]). A slot request is thus
    /// never refused because another process wrote to the store for a moment, and the loop
    /// never waits for it. Either way the transaction also writes the slot watches queued on
    /// this handle ([`Hosting::queue_upload_slot_watch`]).
    pub fn authorize_upload_now_or_later(
        &self,
        domain: &str,
        username: &str,
        size: i64,
    ) -> Result<NowOrLater<UploadDecision>> {
        let (domain, username, owner) = (domain.to_string(), username.to_string(), self.clone());
        self.now_or_later(move |h| h.authorize(&owner, &domain, &username, size, None, None))
    }

    /// [`Hosting::authorize_upload`] for a server that names the slot only when the upload
    /// completes (ejabberd names the uploader's directory) and whose slots live a fixed time: a
    /// grant remembers `slot_key`, so [`Hosting::commit_keyed_upload`] finds the reservation, and
    /// holds its bytes for `lifetime` seconds (the server's slot life; `None` for the domain's
    /// `slot_lifetime`), so a slot still usable still counts.
    pub fn authorize_keyed_upload(
        &self,
        domain: &str,
        username: &str,
        size: i64,
        slot_key: &str,
        lifetime: Option<u64>,
    ) -> Result<UploadDecision> {
        check_key("slot key", slot_key)?;
        self.authorize(self, domain, username, size, Some(slot_key), lifetime)
    }

    /// The decision, made in one transaction of this handle that also writes the slot watches
    /// queued on `owner`'s (the server's handle, also when this is the worker's): a slot granted
    /// on Prosody thus costs its loop one store write, not two (see slot_watches.rs).
    fn authorize(
        &self,
        owner: &Hosting,
        domain: &str,
        username: &str,
        size: i64,
        slot_key: Option<&str>,
        lifetime: Option<u64>,
    ) -> Result<UploadDecision> {
        let parsed = DomainName::parse(domain)?;
        let now = self.now();
        // One transaction, the domain's and the provider's settings read in it too: each
        // transaction of its own cost the server's loop its locking round again. The settings
        // are read every time and parsed only when their text changed (settings_cache.rs).
        let mut watches = Batch::take(owner);
        let decision = self.store().write(|tx| {
            // The domain first: a request from a domain not hosted here is not ours to judge,
            // whatever it asks for.
            let d = domain_limits(tx, &parsed)?.ok_or_else(|| Error::not_found("domain", parsed.as_str()))?;
            let size_u = check_upload_size(size)?;
            let user = username_of(username)?;
            let global = global_limits(tx)?;
            let name = parsed.as_str();
            // After the checks that refuse the request itself (a domain not hosted here rolls the
            // transaction back, and the watches would only go back to the queue).
            watches.write(tx)?;
            expire(tx, now, EXPIRE_PER_CALL)?;
            if owner_suspended(tx, name, d.owner.as_deref())? {
                let limit = UploadLimit::DomainSuspended;
                return Ok(UploadDecision::Denied(Denial {
                    limit,
                    limit_value: 0,
                    usage: 0,
                    requested: size_u,
                    retry_at: None,
                }));
            }
            let limits = EffectiveLimits::new(&d.uploads, &user_overrides(tx, name, &user)?);
            let deny = |denial| Ok(UploadDecision::Denied(denial));
            if let Some(max) = limits.max_file_size.filter(|&max| size_u > max) {
                let limit = UploadLimit::FileSize;
                return deny(Denial { limit, limit_value: max, usage: 0, requested: size_u, retry_at: None });
            }
            let (user_stored, user_reserved) = sql::usage(tx, "user", name, &user)?;
            let (domain_stored, domain_reserved) = sql::usage(tx, "domain", name, "")?;
            let (global_stored, global_reserved) = sql::usage(tx, "global", "", "")?;
            // Whatever the settings, a domain keeps at most MAX_DOMAIN_STORAGE and all domains
            // together no more than the totals can count: no request can overflow a total, and
            // one domain without limits cannot fill the others' room.
            let domain_cap = limits.domain_storage.map_or(MAX_DOMAIN_STORAGE, |l| l.min(MAX_DOMAIN_STORAGE));
            let global_cap = global.storage.map_or(i64::MAX as u64, |l| l.min(i64::MAX as u64));
            let storage = [
                (limits.user_storage, user_stored, user_reserved, UploadLimit::UserStorage),
                (Some(domain_cap), domain_stored, domain_reserved, UploadLimit::DomainStorage),
                (Some(global_cap), global_stored, global_reserved, UploadLimit::GlobalStorage),
            ];
            if let Some(d) = storage.into_iter().find_map(|(l, s, r, k)| storage_denial(l, s, r, size_u, k)) {
                return deny(d);
            }
            let scopes = [
                Scope {
                    domain: name,
                    username: &user,
                    reserved: user_reserved,
                    limits: limits.user_windows,
                    kinds: USER_WINDOWS,
                },
                Scope {
                    domain: name,
                    username: "",
                    reserved: domain_reserved,
                    limits: limits.domain_windows,
                    kinds: DOMAIN_WINDOWS,
                },
            ];
            for scope in scopes.iter().filter(|s| s.limits.iter().any(Option::is_some)) {
                if let Some(d) = windows::check(tx, scope, size, now)? {
                    return deny(d);
                }
            }
            let lifetime = lifetime.unwrap_or(d.uploads.slot_lifetime).clamp(1, MAX_SLOT_LIFETIME) as i64;
            let expires_at = now + lifetime;
            let reservation =
                sql::NewReservation { domain: name, username: &user, size, created_at: now, expires_at, slot_key };
            let id = sql::insert_reservation(tx, &reservation)?;
            add_totals(tx, name, &user, 0, size)?;
            let count_until = expires_at + KEEP_RELEASED;
            Ok(UploadDecision::Granted(Reservation { id, size: size_u, expires_at, count_until }))
        });
        watches.settle(failure_key(self), &decision);
        decision
    }

    /// Records a completed upload of `bytes` as file `file_id` (the server's name for it, used
    /// again by [`Hosting::forget_file`]). The bytes the server measured are recorded, not the
    /// size asked for, so the ledger matches the disk. An expired reservation still records the
    /// file (for a day after expiry), so a slow upload that completes is never lost from it.
    pub fn commit_upload(&self, reservation: i64, bytes: i64, file_id: &str) -> Result<()> {
        check_commit(bytes, file_id)?;
        let now = self.now();
        self.store().write(|tx| commit(tx, reservation, bytes, file_id, now))
    }

    /// Records a completed upload of `bytes` whose slot was granted under `slot_key` (see
    /// [`Hosting::authorize_keyed_upload`]). Slots of one key and size are interchangeable, so
    /// the oldest such reservation is the one completed. `not-found` when none is left (the
    /// slot was granted before this module ran, or more than a day ago).
    pub fn commit_keyed_upload(&self, slot_key: &str, bytes: i64, file_id: &str) -> Result<()> {
        check_key("slot key", slot_key)?;
        check_commit(bytes, file_id)?;
        let now = self.now();
        self.store().write(|tx| {
            let reservation = sql::reservation_by_key(tx, slot_key, bytes)?
                .ok_or_else(|| Error::not_found("upload reservation", format!("{slot_key} ({bytes} bytes)")))?;
            commit(tx, reservation, bytes, file_id, now)
        })
    }

    /// A PUT for a slot granted under `slot_key` failed after the server had used the slot up
    /// (the client's connection closed, the disk failed): gives the oldest open reservation of
    /// that key and size back at once, rather than at the slot's expiry hours later. It stays on
    /// record as released, so should the slot work after all, the upload is still counted.
    /// `false` when no open reservation matches.
    pub fn release_keyed_upload(&self, slot_key: &str, bytes: i64) -> Result<bool> {
        check_key("slot key", slot_key)?;
        self.store().write(|tx| match sql::reservation_by_key(tx, slot_key, bytes)? {
            Some(id) => release_open(tx, id),
            None => Ok(false),
        })
    }

    /// Gives a granted slot's bytes back (the upload failed or was never made). Releasing a slot
    /// that already expired is fine; an unknown (or committed) one is `not-found`.
    pub fn release_upload(&self, reservation: i64) -> Result<()> {
        self.store().write(|tx| {
            let (domain, user, size, released) = sql::reservation(tx, reservation)?
                .ok_or_else(|| Error::not_found("upload reservation", reservation.to_string()))?;
            if !released {
                add_totals(tx, &domain, &user, 0, -size)?;
            }
            sql::delete_reservation(tx, reservation)
        })
    }

    /// A stored file was deleted: its bytes leave storage (not the windows: that volume was
    /// uploaded). `false` when the ledger does not know the file, so deleting twice is harmless.
    pub fn forget_file(&self, file_id: &str) -> Result<bool> {
        self.store().write(|tx| forget(tx, file_id))
    }

    /// Maintenance for a background worker (decisions already do a bounded share of it):
    /// releases expired reservations, forgets long-released ones, and drops volume buckets no
    /// window reaches, of scopes that stopped uploading. Bounded per call (a few hundred rows,
    /// all found by index, so the write lock is held for milliseconds: a server's slot decision
    /// waiting for it on its event loop gives up after a fraction of a second); returns how many
    /// rows it changed, so a caller may repeat while it is not zero.
    pub fn purge_upload_ledger(&self) -> Result<usize> {
        let now = self.now();
        self.store()
            .write(|tx| Ok(expire(tx, now, PURGE_EXPIRED_STEP)? + windows::prune_all(tx, now, PURGE_BUCKET_STEP)?))
    }
}
