-- Retention of archives kept by the XMPP servers themselves (issue 13): where each hosted
-- domain's one-to-one and group chat archives live, as the server registered them when it
-- loaded, so a sweep (from the server's housekeeping pass, the CLI or the C API) knows where to
-- delete and how.
CREATE TABLE retention_archive_stores (
    kind          TEXT NOT NULL CHECK (kind IN ('archive', 'muc')),
    -- The server's host the archive is stored under (example.org; conference.example.org for
    -- a group chat service).
    server_host   TEXT NOT NULL,
    -- The hosted domain whose policy applies.
    domain        TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    -- How to reach it: 'prosody_sql' (the core deletes in Prosody's SQLite database at
    -- `location`), 'prosody_internal' (Prosody deletes through its storage API, steps planned
    -- by the core); other servers add theirs.
    backend       TEXT NOT NULL,
    location      TEXT,
    -- The server's name of the store ('archive', 'muc_log').
    store         TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    PRIMARY KEY (kind, server_host)
) STRICT, WITHOUT ROWID;
CREATE INDEX retention_archive_stores_by_domain ON retention_archive_stores (domain, kind);
