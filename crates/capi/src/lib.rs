//! The C ABI of xmpp-hosting: a thin layer over `xmpp_hosting_core`, as regex-capi is over regex.
//!
//! Conventions (see `include/xmpp_hosting.h`): every call returns an [`xh_status`]; results are
//! JSON strings written to an `out` pointer (which may be NULL when the caller does not want
//! them) and freed with [`xh_string_free`]; the reason for a failure is in
//! [`xh_last_error_message`]. Nothing unwinds across the boundary.

#![allow(non_camel_case_types, clippy::missing_safety_doc)]

mod accounts;
mod certificates;
mod domains;
mod error;
mod handle;
mod housekeeping;
mod invites;
mod publish;
mod quotas;
mod retention;
mod strings;
mod users;
mod verification;

pub use certificates::*;
pub use domains::*;
pub use error::{xh_last_error_code, xh_last_error_message, xh_status};
pub use handle::*;
pub use housekeeping::*;
pub use invites::*;
pub use publish::*;
pub use quotas::*;
pub use retention::*;
pub use strings::xh_string_free;
pub use users::*;
pub use verification::*;

/// The library version, a static string the caller must not free.
#[no_mangle]
pub extern "C" fn xh_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
