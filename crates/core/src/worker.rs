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

use crate::locked::locked;
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

/// The result, or who wants it.
struct Slot<T> {
    value: Mutex<State<T>>,
    done: Condvar,
}

/// A result is kept until taken, or handed straight to a registered callback.
struct State<T> {
    value: Option<T>,
    callback: Option<Box<dyn FnOnce(T) + Send>>,
}

/// What a task's caller gets when the task panicked instead of finishing: without it the caller
/// would wait forever (and Prosody's watcher would wait on a descriptor that never fires).
pub trait FromPanic {
    fn from_panic(message: String) -> Self;
}

impl<T> FromPanic for crate::Result<T> {
    fn from_panic(message: String) -> Self {
        Err(crate::Error::Internal(format!("a background task failed: {message}")))
    }
}

/// The text of a panic's payload, as far as it has one.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_string(),
        (_, Some(s)) => s.clone(),
        _ => "panicked".to_string(),
    }
}

/// A result that the worker is still computing.
pub struct Pending<T> {
    slot: Arc<Slot<T>>,
    /// Readable (one byte) once the result is in.
    signal: UnixStream,
}

impl<T: FromPanic + Send + 'static> Pending<T> {
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
        let slot = Arc::new(Slot { value: Mutex::new(State { value: None, callback: None }), done: Condvar::new() });
        let filled = slot.clone();
        RUNTIME.spawn(async move {
            // The work runs as a task of its own so that a panic in it ends only that task; its
            // caller then gets an internal error instead of nothing.
            let value = match RUNTIME.spawn(fut).await {
                Ok(value) => value,
                Err(e) if e.is_panic() => T::from_panic(panic_text(&*e.into_panic())),
                Err(e) => T::from_panic(e.to_string()),
            };
            then(&value);
            let mut state = locked(&filled.value);
            match state.callback.take() {
                Some(callback) => {
                    drop(state);
                    callback(value);
                }
                None => state.value = Some(value),
            }
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
        let value = locked(&self.slot.value).value.take();
        if value.is_some() {
            let mut buf = [0u8; 8];
            let _ = (&self.signal).read(&mut buf);
        }
        value
    }

    /// Hands the result to `callback` instead: on the worker thread when the result comes in
    /// later, or at once on this thread when it is already in. For hosts that are told rather
    /// than ask (the NIF sends the calling Erlang process a message from the callback). The
    /// callback must not block: it runs on one of the worker's few threads.
    pub fn on_done(self, callback: impl FnOnce(T) + Send + 'static) {
        let mut state = locked(&self.slot.value);
        match state.value.take() {
            Some(value) => {
                drop(state);
                callback(value);
            }
            None => state.callback = Some(Box::new(callback)),
        }
    }

    /// Blocks until the result is in.
    pub fn wait(self) -> T {
        let mut value = locked(&self.slot.value);
        loop {
            if let Some(v) = value.value.take() {
                return v;
            }
            value = self.slot.done.wait(value).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Runs `call` with a clone of `h` on the runtime's blocking pool, from one of its tasks: a wait
/// for another process's lock must not hold one of the two threads every DNS and ACME task
/// shares. `what` names the call if it panicked.
pub(crate) async fn blocking<T: Send + 'static>(
    h: &crate::Hosting,
    what: &str,
    call: impl FnOnce(&crate::Hosting) -> crate::Result<T> + Send + 'static,
) -> crate::Result<T> {
    let h = h.clone();
    tokio::task::spawn_blocking(move || call(&h))
        .await
        .map_err(|e| crate::Error::Internal(format!("{what} failed: {e}")))?
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
                Ok(42)
            },
            move |v: &crate::Result<i32>| tx.send(*v.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
        assert!(p.try_take().is_none());
        // The descriptor becomes readable when the result is in.
        let mut fds = [libc_pollfd(p.fd())];
        assert_eq!(poll_fds(&mut fds, 5000), 1);
        assert_eq!(rx.recv().unwrap(), 42);
        assert_eq!(p.try_take().unwrap().unwrap(), 42);
        assert_eq!(Pending::spawn(async { crate::Result::Ok("done") }).unwrap().wait().unwrap(), "done");
    }

    #[test]
    fn a_callback_gets_the_result_whether_it_is_in_yet_or_not() {
        let (tx, rx) = std::sync::mpsc::channel();
        let later = Pending::spawn(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            crate::Result::Ok("later")
        })
        .unwrap();
        let tx2 = tx.clone();
        later.on_done(move |v| tx2.send((v.unwrap(), std::thread::current().name().map(String::from))).unwrap());
        let already = Pending::spawn(async { crate::Result::Ok("already") }).unwrap();
        let mut fds = [libc_pollfd(already.fd())];
        assert_eq!(poll_fds(&mut fds, 5000), 1);
        already.on_done(move |v| tx.send((v.unwrap(), std::thread::current().name().map(String::from))).unwrap());
        let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(first.0, "already");
        let second = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(second, ("later", Some("xmpp-hosting-worker".to_string())));
    }

    #[test]
    fn a_panicking_task_answers_with_an_internal_error() {
        fn boom() -> crate::Result<u8> {
            panic!("index out of bounds")
        }
        // Every way of waiting gets the answer: the descriptor, a callback, and blocking (last:
        // without the answer it would wait forever, where the others fail after 5 s).
        let p = Pending::spawn(async { boom() }).unwrap();
        let mut fds = [libc_pollfd(p.fd())];
        assert_eq!(poll_fds(&mut fds, 5000), 1, "the descriptor never became readable");
        assert_eq!(p.try_take().unwrap().unwrap_err().code(), "internal");
        let (tx, rx) = std::sync::mpsc::channel();
        Pending::spawn(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            boom()
        })
        .unwrap()
        .on_done(move |v| tx.send(v.map_err(|e| e.code())).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Err("internal"));
        let e = Pending::spawn(async { boom() }).unwrap().wait().unwrap_err();
        assert_eq!(e.code(), "internal");
        assert!(e.to_string().contains("index out of bounds"), "{e}");
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
