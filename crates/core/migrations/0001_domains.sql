-- Hosted domains. `name` is the IDNA ASCII, lower-case form (see domain_name.rs), so the
-- primary key makes `Bücher.example` and `xn--bcher-kva.example` one row.
CREATE TABLE domains (
    name        TEXT PRIMARY KEY NOT NULL,
    settings    TEXT NOT NULL DEFAULT '{}',  -- DomainSettings as JSON
    created_at  INTEGER NOT NULL,            -- unix seconds
    updated_at  INTEGER NOT NULL
) STRICT;

-- Provider-wide settings (one row): ProviderSettings as JSON, for what is not per domain
-- (global caps, the provider's DNS values).
CREATE TABLE provider_settings (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    settings    TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
