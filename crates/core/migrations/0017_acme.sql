-- ACME (issue 14): trusted certificates by DNS-01 through the customer's one CNAME.
-- The certificate itself is stored in `certificates` like an import; these tables keep the
-- ACME account and each domain's ACME bookkeeping.

-- One account per ACME directory. `credentials` holds the account's PRIVATE KEY (instant-acme's
-- credentials JSON, PKCS#8 inside): like certificates.key_pem it never leaves the store.
CREATE TABLE acme_accounts (
    directory_url TEXT PRIMARY KEY,
    account_url   TEXT NOT NULL,
    credentials   TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

-- Domains whose certificate the provider obtains and renews by ACME.
CREATE TABLE acme_domains (
    domain          TEXT PRIMARY KEY REFERENCES domains(name) ON DELETE CASCADE,
    enabled_at      INTEGER NOT NULL,
    issued_sha256   TEXT,              -- fingerprint of the certificate ACME last issued
    issued_at       INTEGER,
    last_attempt_at INTEGER,
    failures        INTEGER NOT NULL DEFAULT 0, -- failed attempts since the last issue
    next_attempt_at INTEGER,           -- backoff: no renewal attempt before this
    last_error      TEXT
) STRICT;
