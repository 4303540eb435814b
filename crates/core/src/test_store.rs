//! A store file for tests that need what memory cannot give: several connections racing, or a
//! restart. Each test gets a directory of its own, removed even when the test fails.

use std::path::PathBuf;
use std::time::Duration;

use crate::{Hosting, OpenOptions};

pub(crate) struct TestStore {
    dir: PathBuf,
    pub path: PathBuf,
}

impl TestStore {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("xh-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TestStore { path: dir.join("store.db"), dir }
    }

    /// A handle with its own connection, as each server process or CLI run has; the busy
    /// timeout is long so that racing writers queue instead of failing.
    pub(crate) fn open(&self) -> Hosting {
        Hosting::open_with(&self.path, &OpenOptions { busy_timeout: Duration::from_secs(30), ..OpenOptions::default() })
            .unwrap()
    }

    /// A handle as a server's loop holds it: its own calls give up on another process's lock
    /// after 10 ms, its worker waits 10 s (longer than any test holds the lock).
    pub(crate) fn open_as_server(&self) -> Hosting {
        let options =
            OpenOptions { busy_timeout: Duration::from_millis(10), worker_busy_timeout: Duration::from_secs(10) };
        Hosting::open_with(&self.path, &options).unwrap()
    }

    /// Another process's write lock on the store, held until [`release_after_waiting`].
    pub(crate) fn hold_write_lock(&self) -> rusqlite::Connection {
        let other = rusqlite::Connection::open(&self.path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        other
    }
}

/// Checks that `pending` work is still waiting 300 ms into another process's write lock (`held`,
/// from [`TestStore::hold_write_lock`]), then commits that write so the work can go on.
pub(crate) fn release_after_waiting<T: crate::worker::FromPanic + Send + 'static>(
    pending: &crate::Pending<T>,
    held: rusqlite::Connection,
) {
    std::thread::sleep(Duration::from_millis(300));
    assert!(pending.try_take().is_none(), "finished while another process held the lock");
    held.execute_batch("COMMIT").unwrap();
}

impl Drop for TestStore {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
