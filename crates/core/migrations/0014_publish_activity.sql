-- Publication (issue 15): when each account of a hosted domain was last active, to publish
-- approximate daily and monthly active accounts. Only a digest of the username is kept (the
-- count needs no name), and a row older than the longest window counts for nothing.
CREATE TABLE publish_activity (
    domain      TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    user_digest BLOB NOT NULL,          -- SHA-256 of the domain and the normalised username
    last_active INTEGER NOT NULL,       -- unix seconds of the last login (to the hour)
    PRIMARY KEY (domain, user_digest)
) STRICT, WITHOUT ROWID;

CREATE INDEX publish_activity_recent ON publish_activity (domain, last_active);
