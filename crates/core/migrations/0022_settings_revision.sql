-- A revision number per domain's settings, so a running server can ask "which domains' settings
-- changed since I last looked" with one indexed read, whichever process changed them (the CLI,
-- prosodyctl, the panel, another server). Set by triggers, so no path that writes settings can
-- forget it: each change takes the store's highest revision plus one.
ALTER TABLE domains ADD COLUMN settings_revision INTEGER NOT NULL DEFAULT 0;

CREATE INDEX domains_settings_revision ON domains (settings_revision);

CREATE TRIGGER domains_settings_revision_insert AFTER INSERT ON domains
BEGIN
    UPDATE domains SET settings_revision = (SELECT max(settings_revision) FROM domains) + 1
    WHERE name = NEW.name;
END;

CREATE TRIGGER domains_settings_revision_update AFTER UPDATE OF settings ON domains
WHEN NEW.settings IS NOT OLD.settings
BEGIN
    UPDATE domains SET settings_revision = (SELECT max(settings_revision) FROM domains) + 1
    WHERE name = NEW.name;
END;
