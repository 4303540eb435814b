-- Registration invites. The token itself is never stored: only its SHA-256, so a copy of the
-- database cannot be used to register.
CREATE TABLE invites (
    id          INTEGER PRIMARY KEY,
    domain      TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    token_hash  BLOB NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('account', 'roster', 'reset')),
    username    TEXT,             -- fixed (and reserved) username, or the account to reset
    inviter     TEXT,             -- bare JID whose roster the new account joins (roster invites)
    uses_total  INTEGER NOT NULL CHECK (uses_total >= 1),
    uses_left   INTEGER NOT NULL CHECK (uses_left >= 0 AND uses_left <= uses_total),
    created_by  TEXT NOT NULL,    -- 'admin' or the creating user's bare JID
    note        TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,          -- NULL: never expires
    revoked_at  INTEGER,
    revoked_by  TEXT
) STRICT;
CREATE INDEX invites_by_domain ON invites (domain, created_at);
CREATE INDEX invites_by_username ON invites (domain, username) WHERE username IS NOT NULL;

-- Every registration attempt that a rule let through, and how it ended: the per-IP limits count
-- these, and together with invite_audit they say who redeemed which invite, and when.
CREATE TABLE registrations (
    id          INTEGER PRIMARY KEY,
    domain      TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    username    TEXT NOT NULL,
    ip          TEXT,
    invite_id   INTEGER REFERENCES invites(id) ON DELETE SET NULL,
    by_invite   INTEGER NOT NULL CHECK (by_invite IN (0, 1)),  -- kept when the invite is purged
    state       TEXT NOT NULL CHECK (state IN ('pending', 'created', 'failed')),
    started_at  INTEGER NOT NULL,
    finished_at INTEGER
) STRICT;
CREATE INDEX registrations_by_ip ON registrations (domain, ip, started_at);

-- Append-only history of invites; kept when an invite is purged.
CREATE TABLE invite_audit (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    domain      TEXT NOT NULL,
    invite_id   INTEGER NOT NULL,
    action      TEXT NOT NULL,    -- created, redeemed, returned, revoked, purged
    actor       TEXT,             -- who did it: admin, a JID, or the new account
    detail      TEXT
) STRICT;
CREATE INDEX invite_audit_by_domain ON invite_audit (domain, at);
