-- Retention (issue 13). The per-domain policy lives in the domain's settings JSON; these tables
-- hold what settings cannot: users' own shorter archive retention, and the sweeps.

-- A user's own archive retention, never longer than the domain's (checked when set; the sweep
-- takes the shorter of the two, so a domain shortened later still wins).
CREATE TABLE retention_user_archive (
    domain      TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    username    TEXT NOT NULL,
    period      TEXT NOT NULL,          -- a Period as written ("30d")
    set_at      INTEGER NOT NULL,
    PRIMARY KEY (domain, username)
) STRICT, WITHOUT ROWID;

-- Every sweep, running or finished: its row is both the resumable state (cursor, lease) and the
-- audit log entry an admin reads.
CREATE TABLE retention_sweeps (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    domain          TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('archive', 'muc', 'uploads')),
    dry_run         INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    -- Data stored strictly before this goes. Only ever lowered while the sweep runs (a clock
    -- set back, a longer policy), never raised.
    cutoff          INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('running', 'done', 'cancelled')),
    cursor          TEXT,               -- where the next step starts; NULL at the beginning
    owner           TEXT,               -- the process running it
    lease_until     INTEGER NOT NULL DEFAULT 0, -- another process may take over after this
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    parts           INTEGER NOT NULL DEFAULT 1, -- runs it took (a restart or a budget adds one)
    steps           INTEGER NOT NULL DEFAULT 0,
    deleted         INTEGER NOT NULL DEFAULT 0,
    bytes           INTEGER NOT NULL DEFAULT 0,
    failed          INTEGER NOT NULL DEFAULT 0,
    duration_us     INTEGER NOT NULL DEFAULT 0,
    longest_step_us INTEGER NOT NULL DEFAULT 0,
    errors          TEXT NOT NULL DEFAULT '[]'  -- JSON array of texts, capped
) STRICT;
-- One sweep of a kind per domain at a time, across every process and node.
CREATE UNIQUE INDEX retention_sweeps_one_running ON retention_sweeps (domain, kind) WHERE state = 'running';
CREATE INDEX retention_sweeps_by_domain ON retention_sweeps (domain, kind, started_at);

-- Expired uploads are found by age per domain, a step at a time.
CREATE INDEX upload_files_by_age ON upload_files (domain, stored_at);
