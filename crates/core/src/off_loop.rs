//! Store calls handed to the core's worker, for callers that must not wait on a lock.
//!
//! Every store call may wait up to the busy timeout for another process's write lock (the CLI,
//! the other server, a backup). On Prosody's event loop that wait stalls every session: four
//! registrations behind a held lock once pushed a ping from 0.5 ms to 4 s. A call made through
//! [`Hosting::later`] runs on the worker's blocking pool, on a connection of its own opened with
//! the longer `worker_busy_timeout`, and its caller watches the [`Pending`]'s descriptor instead.
//!
//! A call that is usually quick and must stay quick (a slot decision) goes through
//! [`Hosting::now_or_later`] instead: it is tried on the caller's thread without waiting for any
//! lock, and only when another connection holds the write lock is it handed to the worker. The
//! caller then answers from the [`Pending`], as for `later`.

use std::cell::Cell;

use crate::worker::Pending;
use crate::{Error, Hosting, Result};

thread_local! {
    /// Set while a [`Hosting::now_or_later`] attempt runs on this thread: the store's
    /// transactions then give up at once on another connection's lock (SQLITE_BUSY) instead of
    /// waiting for it. `Some(true)` once one of the attempt's transactions has committed.
    static ATTEMPT: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Whether store calls on this thread wait for another connection's lock (the handle's busy
/// timeout): not during a [`Hosting::now_or_later`] attempt.
pub(crate) fn waits_for_locks() -> bool {
    ATTEMPT.with(|a| a.get().is_none())
}

/// A transaction committed during a [`Hosting::now_or_later`] attempt: the attempt's work is then
/// partly done, and handing it to the worker would do that part twice.
pub(crate) fn committed() {
    ATTEMPT.with(|a| {
        if a.get().is_some() {
            a.set(Some(true));
        }
    });
}

/// Marks this thread's store calls as an attempt for as long as it lives (a panic in the call
/// ends the attempt too), and puts back what was there before.
struct AttemptScope(Option<bool>);

impl AttemptScope {
    fn start() -> Self {
        AttemptScope(ATTEMPT.with(|a| a.replace(Some(false))))
    }

    /// Whether a transaction committed during the attempt.
    fn committed(&self) -> bool {
        ATTEMPT.with(|a| a.get() == Some(true))
    }
}

impl Drop for AttemptScope {
    fn drop(&mut self) {
        ATTEMPT.with(|a| a.set(self.0));
    }
}

/// A worker call that waited `waited` for another connection's write lock and gave up: said in
/// an admin's words (SQLite's own is "database is locked"), still a busy store error (code
/// `store`, [`Error::is_busy`]) for callers that tell them apart. The transaction that met the
/// lock was rolled back; a call of several transactions may have committed the ones before it,
/// so the text does not promise that nothing was written.
fn gave_up(e: Error, waited: Option<std::time::Duration>) -> Error {
    match (e, waited) {
        (Error::Store(rusqlite::Error::SqliteFailure(code, _)), Some(waited))
            if code.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            Error::Store(rusqlite::Error::SqliteFailure(
                code,
                Some(format!(
                    "the store's write lock was held elsewhere (the command line, the other server, a backup, a \
                     long sweep) for over {} s, as long as xmpp-hosting waits for it; this change was not made, or \
                     not all of it: check, and try it again once the lock is free",
                    waited.as_secs_f64()
                )),
            ))
        }
        (e, _) => e,
    }
}

/// The outcome of [`Hosting::now_or_later`]: the result, or the same call still running on the
/// worker because another process held the store's write lock.
pub enum NowOrLater<T> {
    Now(T),
    Later(Pending<Result<T>>),
}

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
        let waited = self.reopen_options().map(|(_, o)| o.worker_busy_timeout);
        Pending::spawn(async move {
            tokio::task::spawn_blocking(move || call(&worker).map_err(|e| gave_up(e, waited)))
                .await
                .unwrap_or_else(|e| Err(Error::Internal(format!("a store call on the worker failed: {e}"))))
        })
        .map_err(|e| Error::Internal(format!("cannot start work on the worker: {e}")))
    }

    /// Runs `call` on this thread, where no store call waits for another connection's lock: when
    /// one is held (another process writing: the CLI, the other server, a backup), the call gives
    /// up at once and runs again on the worker, which waits `worker_busy_timeout` for it. The fast
    /// path costs what the call costs; a held lock costs the caller nothing but a descriptor to
    /// watch. `call` must be safe to start again after failing: if one of its transactions
    /// had committed before it met the lock, its error is returned instead (nothing is done
    /// twice). A result is [`NowOrLater::Now`]; any other error is returned as it is.
    pub fn now_or_later<T, F>(&self, call: F) -> Result<NowOrLater<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Hosting) -> Result<T> + Clone + Send + 'static,
    {
        let attempt = AttemptScope::start();
        let outcome = call.clone()(self);
        let partly_done = attempt.committed();
        drop(attempt);
        match outcome {
            Err(e) if e.is_busy() && !partly_done => self.later(call).map(NowOrLater::Later),
            other => other.map(NowOrLater::Now),
        }
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

    use super::NowOrLater;
    use crate::test_store::TestStore;
    use crate::{Hosting, OpenOptions};

    #[test]
    fn a_worker_call_that_waited_its_whole_timeout_says_so_and_changed_nothing() {
        let store = TestStore::new("off-loop-gave-up");
        let options =
            OpenOptions { busy_timeout: Duration::from_millis(10), worker_busy_timeout: Duration::from_millis(200) };
        let h = Hosting::open_with(&store.path, &options).unwrap();
        let other = Connection::open(&store.path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let err = h.later(|w| w.add_domain("late.example")).unwrap().wait().unwrap_err();
        other.execute_batch("COMMIT").unwrap();
        assert!(err.is_busy() && err.code() == "store", "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("held elsewhere") && text.contains("for over 0.2 s") && text.contains("not made"),
            "{text}"
        );
        assert!(h.domain("late.example").unwrap().is_none(), "nothing half-made");
    }

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

    /// Another connection's write lock, held until `COMMIT`.
    fn lock_holder(path: &std::path::Path) -> Connection {
        let other = Connection::open(path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        other
    }

    #[test]
    fn an_attempt_is_done_at_once_when_nobody_holds_the_lock() {
        let store = TestStore::new("now-or-later-free");
        let h = Hosting::open(&store.path).unwrap();
        match h.now_or_later(|h| h.add_domain("now.example")).unwrap() {
            NowOrLater::Now(d) => assert_eq!(d.name.as_str(), "now.example"),
            NowOrLater::Later(_) => panic!("handed to the worker although nobody held the lock"),
        }
        // Errors other than a held lock are answers too, not reasons to try again.
        match h.now_or_later(|h| h.add_domain("now.example")) {
            Err(e) => assert_eq!(e.code(), "already-exists"),
            Ok(_) => panic!("a refusal was not given at once"),
        }
    }

    #[test]
    fn a_held_lock_hands_the_call_to_the_worker_without_waiting_for_it() {
        let store = TestStore::new("now-or-later-held");
        // A long busy timeout on the caller's handle: the attempt must not use it. The lock is
        // released a moment later, so a caller that waited would get it and decide "now".
        let options =
            OpenOptions { busy_timeout: Duration::from_secs(30), worker_busy_timeout: Duration::from_secs(30) };
        let h = Hosting::open_with(&store.path, &options).unwrap();
        let other = lock_holder(&store.path);
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        });
        let NowOrLater::Later(pending) = h.now_or_later(|h| h.add_domain("later.example")).unwrap() else {
            panic!("the caller's thread waited for another connection's write lock");
        };
        // The caller's own handle is itself again once the attempt is over: it waits.
        assert!(super::waits_for_locks());
        release.join().unwrap();
        assert_eq!(pending.wait().unwrap().name.as_str(), "later.example");
    }

    #[test]
    fn an_attempt_that_committed_something_is_not_started_again() {
        let store = TestStore::new("now-or-later-partly");
        let h = Hosting::open(&store.path).unwrap();
        let path = store.path.clone();
        let outcome = h.now_or_later(move |h| {
            h.add_domain("first.example")?;
            let other = lock_holder(&path);
            let second = h.add_domain("second.example");
            other.execute_batch("COMMIT").unwrap();
            second
        });
        match outcome {
            Err(e) => assert!(e.is_busy(), "{e}"),
            Ok(_) => panic!("a call that had written something was run again"),
        }
        assert!(h.domain("second.example").unwrap().is_none());
    }

    #[test]
    fn a_panicking_call_gives_its_caller_an_internal_error() {
        let h = Hosting::open_in_memory().unwrap();
        let err = h.later(|_| -> crate::Result<()> { panic!("boom") }).unwrap().wait().unwrap_err();
        assert_eq!(err.code(), "internal");
    }
}
