//! Status codes and the thread's last error: core errors are mapped to C here and only here.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use xmpp_hosting_core::Error;

/// The outcome of a call. `XH_OK` is 0; every other value names a kind of failure.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum xh_status {
    XH_OK = 0,
    /// A domain name that cannot be hosted.
    XH_ERR_INVALID_DOMAIN = 1,
    /// A value that is well-formed C but unacceptable (bad JSON, a zero count...).
    XH_ERR_INVALID_ARGUMENT = 2,
    XH_ERR_NOT_FOUND = 3,
    XH_ERR_ALREADY_EXISTS = 4,
    XH_ERR_NOT_ALLOWED = 5,
    /// The store file could not be used (unwritable, locked past the busy timeout, ...).
    XH_ERR_STORE = 6,
    /// Stored data this version cannot read.
    XH_ERR_CORRUPT = 7,
    /// A required pointer argument was NULL.
    XH_ERR_NULL_POINTER = 8,
    /// A string argument was not UTF-8.
    XH_ERR_INVALID_UTF8 = 9,
    /// A bug in the library, caught before it could unwind into C; the call did nothing it could
    /// not undo.
    XH_ERR_PANIC = 10,
    /// An error code newer than this ABI: the message still says what went wrong.
    XH_ERR_UNKNOWN = 11,
    /// The machine failed (no OS randomness, no worker thread): not the caller's fault.
    XH_ERR_INTERNAL = 12,
}

/// Why a call failed, before it becomes a status and a message.
pub(crate) enum Failure {
    Core(Error),
    Null(&'static str),
    Utf8(&'static str),
    Panic(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Core(e)
    }
}

impl Failure {
    fn status(&self) -> xh_status {
        match self {
            Failure::Core(e) => match e.code() {
                "invalid-domain" => xh_status::XH_ERR_INVALID_DOMAIN,
                "invalid-argument" => xh_status::XH_ERR_INVALID_ARGUMENT,
                "not-found" => xh_status::XH_ERR_NOT_FOUND,
                "already-exists" => xh_status::XH_ERR_ALREADY_EXISTS,
                "not-allowed" => xh_status::XH_ERR_NOT_ALLOWED,
                "store" => xh_status::XH_ERR_STORE,
                "corrupt" => xh_status::XH_ERR_CORRUPT,
                "internal" => xh_status::XH_ERR_INTERNAL,
                _ => xh_status::XH_ERR_UNKNOWN,
            },
            Failure::Null(_) => xh_status::XH_ERR_NULL_POINTER,
            Failure::Utf8(_) => xh_status::XH_ERR_INVALID_UTF8,
            Failure::Panic(_) => xh_status::XH_ERR_PANIC,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Core(e) => e.to_string(),
            Failure::Null(arg) => format!("{arg} must not be NULL"),
            Failure::Utf8(arg) => format!("{arg} is not valid UTF-8"),
            Failure::Panic(why) => format!("internal error: {why}"),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<(xh_status, CString)> = RefCell::new((xh_status::XH_OK, CString::default()));
}

/// Runs the body of an entry point: its outcome becomes the status and the thread's last error,
/// and a panic becomes `XH_ERR_PANIC` instead of unwinding into C.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> xh_status {
    let result = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|p| Err(Failure::Panic(panic_message(&*p))));
    record(result)
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Records the outcome of a call for this thread and returns its status.
fn record(result: Result<(), Failure>) -> xh_status {
    let (status, message) = match result {
        Ok(()) => (xh_status::XH_OK, String::new()),
        Err(f) => (f.status(), f.message()),
    };
    // Messages come from Display impls and never hold NUL; strip any to be safe.
    let message = CString::new(message.replace('\0', "")).unwrap_or_default();
    // A call made while the thread is ending (a C host's atexit handler calling xh_close: glibc
    // destroys the main thread's thread-locals first) finds the last error gone. `with` would
    // panic there, and a panic in an extern "C" function aborts the process: the outcome is then
    // only returned.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = (status, message));
    status
}

/// The message of the last failed call on this thread ("" after a success). The string belongs
/// to the library and stays valid until the next call on this thread. On a thread that is ending
/// (from an atexit handler or a thread-local destructor) no last error is kept any more: calls
/// still return their status, and this says the last error is gone.
#[no_mangle]
pub extern "C" fn xh_last_error_message() -> *const c_char {
    LAST_ERROR.try_with(|e| e.borrow().1.as_ptr()).unwrap_or(GONE.as_ptr())
}

/// The status of the last call on this thread; `XH_ERR_INTERNAL` on a thread that is ending
/// (see `xh_last_error_message`).
#[no_mangle]
pub extern "C" fn xh_last_error_code() -> xh_status {
    LAST_ERROR.try_with(|e| e.borrow().0).unwrap_or(xh_status::XH_ERR_INTERNAL)
}

/// The message once the thread's last error is destroyed (see [`record`]).
static GONE: &std::ffi::CStr = c"the last error is gone: the thread is ending";

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use xmpp_hosting_core::DomainNameError;

    use super::*;

    fn last_message() -> String {
        unsafe { CStr::from_ptr(xh_last_error_message()) }.to_str().unwrap().to_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_not_an_unwind() {
        assert_eq!(guard(|| panic!("boom")), xh_status::XH_ERR_PANIC);
        assert_eq!(xh_last_error_code(), xh_status::XH_ERR_PANIC);
        assert_eq!(last_message(), "internal error: boom");
        assert_eq!(guard(|| Ok(())), xh_status::XH_OK);
        assert_eq!(last_message(), "");
    }

    #[test]
    fn core_errors_keep_their_kind_and_message() {
        let cases = [
            (Error::from(DomainNameError::Empty), xh_status::XH_ERR_INVALID_DOMAIN),
            (Error::InvalidArgument("x".into()), xh_status::XH_ERR_INVALID_ARGUMENT),
            (Error::NotAllowed("x".into()), xh_status::XH_ERR_NOT_ALLOWED),
            (Error::Corrupt("x".into()), xh_status::XH_ERR_CORRUPT),
            (Error::Internal("x".into()), xh_status::XH_ERR_INTERNAL),
        ];
        for (error, status) in cases {
            let message = error.to_string();
            assert_eq!(guard(|| Err(error.into())), status);
            assert_eq!(last_message(), message);
        }
    }

    #[test]
    fn calls_made_while_the_thread_ends_do_not_panic() {
        // A thread-local destroyed after LAST_ERROR (destructors run last-registered first)
        // calls in from its destructor, as a C host's atexit handler does on the main thread.
        struct LateCaller(std::sync::mpsc::Sender<std::thread::Result<(xh_status, xh_status, String)>>);
        impl Drop for LateCaller {
            fn drop(&mut self) {
                let outcome = catch_unwind(|| {
                    let status = guard(|| Err(Error::Internal("late".into()).into()));
                    (status, xh_last_error_code(), last_message())
                });
                let _ = self.0.send(outcome);
            }
        }
        thread_local! {
            static LATE: RefCell<Option<LateCaller>> = const { RefCell::new(None) };
        }
        let (send, outcomes) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            LATE.with(|l| *l.borrow_mut() = Some(LateCaller(send)));
            guard(|| Ok(()));
        })
        .join()
        .unwrap();
        let (status, code, message) = outcomes.recv().unwrap().expect("a call at thread exit panicked");
        assert_eq!(status, xh_status::XH_ERR_INTERNAL);
        assert_eq!(code, xh_status::XH_ERR_INTERNAL);
        assert!(message.contains("thread is ending"), "{message}");
    }

    #[test]
    fn a_nul_in_a_message_does_not_lose_it() {
        guard(|| Err(Error::InvalidArgument("a\0b".into()).into()));
        assert_eq!(last_message(), "invalid argument: ab");
    }
}
