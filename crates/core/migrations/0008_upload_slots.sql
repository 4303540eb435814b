-- Slots whose file the server names when it grants them: Prosody's mod_http_file_share puts the
-- slot id in its reply, and the finished upload lands at a path made from it. One row per slot,
-- kept until its file is counted or the slot can no longer bring one, so that
--   - a reservation holds while its upload is still arriving (the partial file grows), however
--     long that takes, and is given back once the upload failed;
--   - a file that appears late is still charged to whoever was granted the slot, even after the
--     reservation itself is gone.
-- The core looks at the disk for these rows on its worker; decisions never read this table.
CREATE TABLE upload_slots (
    file_path       TEXT PRIMARY KEY,   -- where the finished upload appears (the file's id once counted)
    domain          TEXT NOT NULL,
    username        TEXT NOT NULL,
    reservation     INTEGER,            -- upload_reservations.id; NULL or dangling once purged
    granted_at      INTEGER NOT NULL,
    usable_until    INTEGER NOT NULL,   -- no new upload for the slot can start after this
    arriving_bytes  INTEGER             -- the partial file's size at the last look; NULL when none
) STRICT, WITHOUT ROWID;

-- Upload directories a server asked the core to watch, and how it names an upload still being
-- written there. Any process's sweep or audit (the CLI's too) walks them for files the ledger
-- does not know.
CREATE TABLE upload_roots (
    root            TEXT PRIMARY KEY,
    partial_suffix  TEXT NOT NULL,
    registered_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
