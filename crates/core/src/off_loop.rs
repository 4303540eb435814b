//! Store calls handed to the core's worker, for callers that must not wait on a lock.
//!
//! Every store call may wait up to the busy timeout for another process's write lock (the CLI,
//! the other server, a backup). On Prosody's event loop that wait stalls every session: four
//! registrations behind a held lock once pushed a ping from 0.5 ms to 4 s. A call made through
//! [`Hosting::later`] runs on the worker's blocking pool, on a connection of its own opened with
//! the longer `worker_busy_timeout`, and its caller watches the [`Pending`]'s descriptor instead.

use crate::worker::Pending;
use crate::{Error, Hosting, Result};

impl Hosting {
    /// Runs `call` on the worker with this store's own worker handle; the result arrives through
    /// the returned [`Pending`] (descriptor, callback or wait). A panic in `call` becomes an
    /// internal error for the caller, never a silent loss.
    pub fn later<T, F>(&self, call: F) -> Result<Pending<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&Hosting) -> Result<T> + Send + 'static,
    {
        let worker = self.worker_handle()?;
        Pending::spawn(async move {
            tokio::task::spawn_blocking(move || call(&worker))
                .await
                .unwrap_or_else(|e| Err(Error::Internal(format!("a store call on the worker failed: {e}"))))
        })
        .map_err(|e| Error::Internal(format!("cannot start work on the worker: {e}")))
    }

    /// The handle worker calls use: the same file on a connection of its own, seen through the
    /// same clock. In memory there is only the one connection.
    fn worker_handle(&self) -> Result<Hosting> {
        let Some((path, options)) = self.reopen_options() else { return Ok(self.clone()) };
        let opened = self.worker_slot().get_or_try_init(|| {
            let mut worker_options = options.clone();
            worker_options.busy_timeout = options.worker_busy_timeout;
            Hosting::open_with(path, &worker_options)
        })?;
        Ok(opened.with_clock_of(self))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rusqlite::Connection;

    use crate::test_store::TestStore;
    use crate::{Hosting, OpenOptions};

    #[test]
    fn a_call_waits_on_the_worker_for_a_lock_the_callers_own_handle_would_give_up_on() {
        let store = TestStore::new("off-loop-lock");
        let path = store.path.clone();
        let options =
            OpenOptions { busy_timeout: Duration::from_millis(10), worker_busy_timeout: Duration::from_secs(10) };
        let h = Hosting::open_with(&path, &options).unwrap();

        // Another process's write lock, held for a while.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();

        // On the caller's thread the short timeout gives up at once ...
        let err = h.add_domain("blocked.example").unwrap_err();
        assert_eq!(err.code(), "store", "{err}");

        // ... while the same write handed to the worker waits the lock out.
        let pending = h.later(|w| w.add_domain("waits.example")).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(pending.try_take().is_none(), "the worker call finished while the lock was held");
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(pending.wait().unwrap().name.as_str(), "waits.example");
        assert!(h.domain("waits.example").is_ok());
    }

    #[test]
    fn a_panicking_call_gives_its_caller_an_internal_error() {
        let h = Hosting::open_in_memory().unwrap();
        let err = h.later(|_| -> crate::Result<()> { panic!("boom") }).unwrap().wait().unwrap_err();
        assert_eq!(err.code(), "internal");
    }
}
