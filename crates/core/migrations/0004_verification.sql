-- Customers' claims on domains and their verification state. A claim exists before the domain
-- is hosted; a verified claim makes the domain hosted, owned by the claiming account.
CREATE TABLE domain_claims (
    domain          TEXT NOT NULL,     -- IDNA ASCII
    account         TEXT NOT NULL,
    token           TEXT NOT NULL,     -- the challenge; public by nature (it is put in DNS)
    state           TEXT NOT NULL CHECK (state IN ('pending', 'verified', 'lost', 'suspended')),
    created_at      INTEGER NOT NULL,
    verified_at     INTEGER,
    lost_since      INTEGER,
    last_checked_at INTEGER,
    next_check_at   INTEGER,
    last_error      TEXT,
    PRIMARY KEY (domain, account)
) STRICT;
CREATE INDEX domain_claims_due ON domain_claims (next_check_at) WHERE state IN ('verified', 'lost');

-- Every state change, with its reason.
CREATE TABLE domain_claim_events (
    id          INTEGER PRIMARY KEY,
    domain      TEXT NOT NULL,
    account     TEXT NOT NULL,
    at          INTEGER NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    reason      TEXT NOT NULL
) STRICT;
CREATE INDEX domain_claim_events_by_domain ON domain_claim_events (domain, id);
