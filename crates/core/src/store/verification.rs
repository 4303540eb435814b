//! SQL for domain verification.
