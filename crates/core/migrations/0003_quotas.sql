-- Upload quota ledger. Decisions read a handful of rows by primary key, never the files, so
-- their cost does not grow with the number of uploads stored.

-- Running totals per scope: ('global','',''), ('domain',D,''), ('user',D,U).
CREATE TABLE upload_usage (
    scope           TEXT NOT NULL CHECK (scope IN ('global', 'domain', 'user')),
    domain          TEXT NOT NULL,
    username        TEXT NOT NULL,
    stored_bytes    INTEGER NOT NULL DEFAULT 0 CHECK (stored_bytes >= 0),
    reserved_bytes  INTEGER NOT NULL DEFAULT 0 CHECK (reserved_bytes >= 0),
    PRIMARY KEY (scope, domain, username)
) STRICT, WITHOUT ROWID;

-- Uploaded volume per user and per domain (username ''), for the day/week/month windows: per
-- hour (span 3600, for the daily window) and per day (span 86400, for week and month), so a
-- check reads at most 24 + 30 rows per scope however busy it is.
CREATE TABLE upload_volume (
    domain      TEXT NOT NULL,
    username    TEXT NOT NULL,
    span        INTEGER NOT NULL CHECK (span IN (3600, 86400)),
    start       INTEGER NOT NULL,   -- unix seconds / span
    bytes       INTEGER NOT NULL CHECK (bytes >= 0),
    PRIMARY KEY (domain, username, span, start)
) STRICT, WITHOUT ROWID;
-- For the maintenance purge of scopes that stopped uploading (active scopes prune their own
-- buckets by primary key on every commit). New rows land at its right edge: one page a commit.
CREATE INDEX upload_volume_by_age ON upload_volume (span, start);

-- Granted slots not yet completed; they count against every limit until committed, released
-- or expired.
CREATE TABLE upload_reservations (
    -- Never reused: a late commit or release of an old slot must not touch a newer one.
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    domain      TEXT NOT NULL,
    username    TEXT NOT NULL,
    size        INTEGER NOT NULL CHECK (size > 0),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    -- 1 once expired or released: it no longer counts, but an upload that still completes
    -- finds its row and is recorded.
    released    INTEGER NOT NULL DEFAULT 0 CHECK (released IN (0, 1))
) STRICT;
CREATE INDEX upload_reservations_by_expiry ON upload_reservations (released, expires_at);

-- Files that exist, so that deleting one frees exactly its size.
CREATE TABLE upload_files (
    file_id     TEXT PRIMARY KEY,
    domain      TEXT NOT NULL,
    username    TEXT NOT NULL,
    size        INTEGER NOT NULL CHECK (size >= 0),
    stored_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Per-user overrides of the domain's upload limits (UserUploadLimits as JSON).
CREATE TABLE upload_user_limits (
    domain      TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    username    TEXT NOT NULL,
    limits      TEXT NOT NULL,
    PRIMARY KEY (domain, username)
) STRICT, WITHOUT ROWID;
