-- Certificates (issue 14): one key and one served certificate per hosted domain.
-- key_pem is the domain's PRIVATE KEY (PKCS#8 PEM): the store file is created 0600 and must stay
-- readable only by the account running the XMPP server and the admins who run the CLI.
CREATE TABLE certificates (
    domain      TEXT PRIMARY KEY REFERENCES domains(name) ON DELETE CASCADE,
    key_kind    TEXT NOT NULL CHECK (key_kind IN ('ecdsa', 'rsa')),
    key_pem     TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('self-signed', 'imported')),
    cert_pem    TEXT NOT NULL,          -- the domain's certificate
    chain_pem   TEXT NOT NULL DEFAULT '', -- intermediates an imported certificate came with
    not_before  INTEGER NOT NULL,
    not_after   INTEGER NOT NULL,
    sha256      TEXT NOT NULL,          -- colon-separated hex of the certificate's DER
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX certificates_not_after ON certificates (not_after);
