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
}

impl Drop for TestStore {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
