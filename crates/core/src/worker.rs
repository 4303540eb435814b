//! The core's one background worker: a small tokio runtime, started on first use, that runs
//! slow work (DNS now; retention sweeps later) off the caller's thread.
//!
//! A caller gets a [`Pending`] at once and learns of completion three ways, one per host:
//! a file descriptor that becomes readable (Prosody's `server.watchfd` watches it from its event
//! loop, never touching Lua from another thread), a callback run on the worker (the NIF sends a
//! message to the calling Erlang process), or a blocking [`Pending::wait`] (the CLI).

use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};

use once_cell::sync::Lazy;
use tokio::runtime::Runtime;

/// Started lazily: Prosody forks when daemonising, and threads started before a fork are lost.
static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("xmpp-hosting-worker")
        .enable_all()
        .build()
        .expect("the worker runtime starts")
});

struct Slot<T> {
    value: Mutex<Option<T>>,
    done: Condvar,
}

/// A result that the worker is still computing.
pub struct Pending<T> {
    slot: Arc<Slot<T>>,
    /// Readable (one byte) once the result is in.
    signal: UnixStream,
}

impl<T: Send + 'static> Pending<T> {
    /// Starts `fut` on the worker.
    pub fn spawn<F>(fut: F) -> std::io::Result<Self>
    where
        F: Future<Output = T> + Send + 'static,
    {
        Self::spawn_then(fut, |_| {})
    }

    /// Starts `fut` on the worker and calls `then` on the worker thread when it completes,
    /// before the result is handed to the `Pending`.
    pub fn spawn_then<F, C>(fut: F, then: C) -> std::io::Result<Self>
    where
        F: Future<Output = T> + Send + 'static,
        C: FnOnce(&T) + Send + 'static,
    {
        let (signal, mut notify) = UnixStream::pair()?;
        signal.set_nonblocking(true)?;
        let slot = Arc::new(Slot { value: Mutex::new(None), done: Condvar::new() });
        let filled = slot.clone();
        RUNTIME.spawn(async move {
            let value = fut.await;
            then(&value);
            *filled.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
            filled.done.notify_all();
            // The reader may have gone away; nobody is left to tell then.
            let _ = notify.write_all(b"!");
        });
        Ok(Pending { slot, signal })
    }

    /// A descriptor that becomes readable when the result is in.
    pub fn fd(&self) -> RawFd {
        self.signal.as_raw_fd()
    }

    /// The result, if it is in; never blocks. Drains the descriptor so a level-triggered
    /// watcher stops firing.
    pub fn try_take(&self) -> Option<T> {
        let value = self.slot.value.lock().unwrap_or_else(|p| p.into_inner()).take();
        if value.is_some() {
            let mut buf = [0u8; 8];
            let _ = (&self.signal).read(&mut buf);
        }
        value
    }

    /// Blocks until the result is in.
    pub fn wait(self) -> T {
        let mut value = self.slot.value.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(v) = value.take() {
                return v;
            }
            value = self.slot.done.wait(value).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn results_arrive_by_fd_callback_and_wait() {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = Pending::spawn_then(
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                42
            },
            move |v| tx.send(*v).unwrap(),
        )
        .unwrap();
        assert_eq!(p.try_take(), None);
        // The descriptor becomes readable when the result is in.
        let mut fds = [libc_pollfd(p.fd())];
        assert_eq!(poll_fds(&mut fds, 5000), 1);
        assert_eq!(rx.recv().unwrap(), 42);
        assert_eq!(p.try_take(), Some(42));
        assert_eq!(Pending::spawn(async { "done" }).unwrap().wait(), "done");
    }

    // A minimal poll(2) for the test, without a libc dependency.
    #[repr(C)]
    struct PollFd {
        fd: i32,
        events: i16,
        revents: i16,
    }
    extern "C" {
        fn poll(fds: *mut PollFd, nfds: u64, timeout: i32) -> i32;
    }
    fn libc_pollfd(fd: RawFd) -> PollFd {
        PollFd { fd, events: 1, revents: 0 }
    }
    fn poll_fds(fds: &mut [PollFd], timeout_ms: i32) -> i32 {
        // SAFETY: fds is a valid array of pollfd structs for the duration of the call.
        unsafe { poll(fds.as_mut_ptr(), fds.len() as u64, timeout_ms) }
    }
}
