-- When a user's upload exception was set, so that a removal of the account that is made late
-- (a background write retried behind another process's lock, as of the time the server asked)
-- drops only exceptions set before it, never those set for a new account of the same name.
-- Rows from before this migration count as set at the beginning of time.
ALTER TABLE upload_user_limits ADD COLUMN set_at INTEGER NOT NULL DEFAULT 0;
