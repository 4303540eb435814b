//! The handle every binding holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use once_cell::sync::OnceCell;

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::store::Store;
use crate::Result;

/// How to open a store file.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// How long a call waits for another process's write lock before failing with a store error.
    /// Kept short by default: the calling thread may be a server's event loop.
    pub busy_timeout: Duration,
    /// The same for calls handed to the core's worker ([`Hosting::later`]): nobody's loop waits
    /// there, so they may wait out a long write by another process (a backup, the CLI's audit).
    pub worker_busy_timeout: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { busy_timeout: Duration::from_secs(2), worker_busy_timeout: Duration::from_secs(10) }
    }
}

/// An open xmpp-hosting store and the rules over it. Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct Hosting {
    inner: Arc<Inner>,
    clock: Arc<dyn Clock>,
}

struct Inner {
    store: Store,
    /// The file and how to open it again, for the worker's own handle.
    reopen: Option<(PathBuf, OpenOptions)>,
    /// Opened on the first [`Hosting::later`] call: a connection of its own, so that a worker call
    /// waiting for another process's lock never holds the connection the caller's thread uses.
    worker: OnceCell<Hosting>,
    /// Background writes of this store still waiting for another process's lock (see
    /// [`crate::off_loop::Retry::most_waiting`]).
    background_waiting: std::sync::atomic::AtomicUsize,
    /// Upload slot watches asked for through this handle and not yet in the store (see
    /// `quotas/slot_watches.rs`).
    slot_watches: crate::quotas::SlotWatchQueue,
}

impl std::fmt::Debug for Hosting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosting").field("clock", &self.clock).finish_non_exhaustive()
    }
}

impl Hosting {
    /// Opens (creating if needed) the store file at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &OpenOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        let mut hosting = Self::from_store(Store::open(path.as_ref(), options.busy_timeout)?);
        Arc::get_mut(&mut hosting.inner).expect("just made").reopen =
            Some((path.as_ref().to_path_buf(), options.clone()));
        Ok(hosting)
    }

    /// Opens an existing store file for reading only: what an admin who may only read it (or a
    /// disk with no space left) still allows. Nothing is created or migrated; any write fails
    /// with a store error. A store whose schema is older than this version must be opened
    /// writable once first.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::from_store(Store::open_read_only(path.as_ref(), OpenOptions::default().busy_timeout)?))
    }

    /// A private store that vanishes with the handle, for tests.
    pub fn open_in_memory() -> Result<Self> {
        Ok(Self::from_store(Store::open_in_memory()?))
    }

    fn from_store(store: Store) -> Self {
        Hosting {
            inner: Arc::new(Inner {
                store,
                reopen: None,
                worker: OnceCell::new(),
                background_waiting: Default::default(),
                slot_watches: Default::default(),
            }),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same store seen through another clock (tests move time with a [`crate::ManualClock`]).
    pub fn with_clock(self, clock: impl Clock + 'static) -> Self {
        Hosting { inner: self.inner, clock: Arc::new(clock) }
    }

    /// `self`'s store seen through `other`'s clock (the worker's handle follows its caller's).
    pub(crate) fn with_clock_of(&self, other: &Hosting) -> Self {
        Hosting { inner: self.inner.clone(), clock: other.clock.clone() }
    }

    /// The current time as the rules see it.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Moves the write-ahead log into the database file. Servers call this from a timer (every
    /// few seconds) so that no request pays for it; it never blocks other writers. Returns the
    /// number of WAL pages and how many of them were copied back.
    pub fn checkpoint(&self) -> Result<(i64, i64)> {
        self.store().checkpoint()
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Where [`Hosting::open_with`] opened the store, and how (`None` in memory).
    pub(crate) fn reopen_options(&self) -> Option<&(PathBuf, OpenOptions)> {
        self.inner.reopen.as_ref()
    }

    pub(crate) fn worker_slot(&self) -> &OnceCell<Hosting> {
        &self.inner.worker
    }

    pub(crate) fn background_waiting(&self) -> &std::sync::atomic::AtomicUsize {
        &self.inner.background_waiting
    }

    pub(crate) fn slot_watches(&self) -> &crate::quotas::SlotWatchQueue {
        &self.inner.slot_watches
    }
}
