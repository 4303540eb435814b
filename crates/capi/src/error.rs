//! Status codes and the thread's last error: core errors are mapped to C here and only here.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

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
    /// A bug in the library or a failure of the machine (no randomness, no worker thread); the
    /// call did nothing it could not undo.
    XH_ERR_PANIC = 10,
    XH_ERR_UNKNOWN = 11,
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
                "internal" => xh_status::XH_ERR_PANIC,
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

/// Records the outcome of a call for this thread and returns its status.
pub(crate) fn record(result: Result<(), Failure>) -> xh_status {
    let (status, message) = match result {
        Ok(()) => (xh_status::XH_OK, String::new()),
        Err(f) => (f.status(), f.message()),
    };
    // Messages come from Display impls and never hold NUL; strip any to be safe.
    let message = CString::new(message.replace('\0', "")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = (status, message));
    status
}

/// The message of the last failed call on this thread ("" after a success). The string belongs
/// to the library and stays valid until the next call on this thread.
#[no_mangle]
pub extern "C" fn xh_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().1.as_ptr())
}

/// The status of the last call on this thread.
#[no_mangle]
pub extern "C" fn xh_last_error_code() -> xh_status {
    LAST_ERROR.with(|e| e.borrow().0)
}
