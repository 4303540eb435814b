//! Registration invites and per-domain registration policy (issue 3).
