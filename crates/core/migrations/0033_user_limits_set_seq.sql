-- The order in which users' upload exceptions were set, exact where `set_at` (whole seconds, 0032)
-- is not: a removal of an account that is made late (a background write retried behind another
-- process's lock) drops only the exceptions set before the server asked for it. With `set_at`
-- alone, an exception set for a new account of the same name in the removal's own second went
-- too. The counter only rises (a deleted exception never gives its number back), as
-- settings_revision_counter (0027) does. Rows from before this migration count as set first.
CREATE TABLE upload_user_limits_counter (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);
INSERT INTO upload_user_limits_counter (id, last) VALUES (1, 0);
ALTER TABLE upload_user_limits ADD COLUMN set_seq INTEGER NOT NULL DEFAULT 0;
