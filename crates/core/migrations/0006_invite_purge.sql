-- What the invite purge needs (issue 11.5 and what its test found).
--
-- 1. Invite ids are never used twice. Without AUTOINCREMENT SQLite hands out max(id) + 1, so once
--    the purge deleted the newest invites, the next invite took a purged one's id and inherited
--    its audit trail (invite_audit keeps purged invites' history by id). The table is rebuilt
--    with AUTOINCREMENT, ids kept; dropping the old table nulls registrations.invite_id (its ON
--    DELETE SET NULL), so those links are saved first and put back.
CREATE TABLE invites_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO invites_new (id, domain, token_hash, kind, username, inviter, uses_total, uses_left, created_by, note,
                         created_at, expires_at, revoked_at, revoked_by)
    SELECT id, domain, token_hash, kind, username, inviter, uses_total, uses_left, created_by, note,
           created_at, expires_at, revoked_at, revoked_by FROM invites;
-- Ids of invites already purged (seen in the audit trail) are not handed out again either.
DELETE FROM sqlite_sequence WHERE name = 'invites_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'invites_new', max(coalesce((SELECT max(id) FROM invites), 0), coalesce(max(invite_id), 0))
    FROM invite_audit;
CREATE TEMP TABLE registration_invites AS SELECT id, invite_id FROM registrations WHERE invite_id IS NOT NULL;
DROP TABLE invites;
ALTER TABLE invites_new RENAME TO invites;
UPDATE registrations
   SET invite_id = (SELECT r.invite_id FROM registration_invites r WHERE r.id = registrations.id)
 WHERE id IN (SELECT id FROM registration_invites);
DROP TABLE registration_invites;
CREATE INDEX invites_by_domain ON invites (domain, created_at);
CREATE INDEX invites_by_username ON invites (domain, username) WHERE username IS NOT NULL;

-- 2. The invite a registration used. Without this index, deleting an invite (its ON DELETE SET
--    NULL) and the purge's "still held by a pending registration?" check each scanned every
--    registration: 2,000 invites against 100,000 registrations took 31 s under the write lock.
--    Partial: most registrations of an open domain have no invite.
CREATE INDEX registrations_by_invite ON registrations (invite_id, state) WHERE invite_id IS NOT NULL;
