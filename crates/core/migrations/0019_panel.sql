-- The customer's web panel (issue 16): login sessions and failed-login counters.
-- A session row holds only the SHA-256 of the cookie's random id, so a copy of the store does not
-- let anyone log in; the CSRF token is kept as is (the page must be given it back, and it is
-- useless without the cookie).
CREATE TABLE panel_sessions (
    id_hash      TEXT PRIMARY KEY,
    account      TEXT NOT NULL,          -- bare JID, as the server authenticated it
    admin        INTEGER NOT NULL CHECK (admin IN (0, 1)),
    csrf         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL        -- absolute end; idleness ends it earlier
) STRICT;

CREATE INDEX panel_sessions_expires_at ON panel_sessions (expires_at);

-- Failed logins per account ('account:alice@example.org') and per address ('address:192.0.2.1').
CREATE TABLE panel_login_failures (
    key             TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    blocked_until   INTEGER NOT NULL
) STRICT;
