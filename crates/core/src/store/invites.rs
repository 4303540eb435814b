//! SQL for invites.
