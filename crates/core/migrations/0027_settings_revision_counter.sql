-- Settings revisions from a counter that only rises. 0022 gave each change the highest revision
-- still in `domains` plus one: removing the domain that held it lowered that maximum, so the next
-- change elsewhere got a revision a watching server had already passed, and was never applied.
--
-- Also a revision per domain for its shared roster alone: a running server pushes every contact to
-- every online user when it is switched, work it must not do for a change to any other setting
-- (a description, a quota). The comparison is on the stored JSON, so every writer is covered.
CREATE TABLE settings_revision_counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO settings_revision_counter (id, revision)
SELECT 1, coalesce(max(settings_revision), 0) FROM domains;

ALTER TABLE domains ADD COLUMN shared_roster_revision INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER domains_settings_revision_insert;
DROP TRIGGER domains_settings_revision_update;

-- A domain added counts as switched: accounts it has may already be online.
CREATE TRIGGER domains_settings_revision_insert AFTER INSERT ON domains
BEGIN
    UPDATE settings_revision_counter SET revision = revision + 1 WHERE id = 1;
    UPDATE domains
    SET settings_revision = (SELECT revision FROM settings_revision_counter WHERE id = 1),
        shared_roster_revision = (SELECT revision FROM settings_revision_counter WHERE id = 1)
    WHERE name = NEW.name;
END;

CREATE TRIGGER domains_settings_revision_update AFTER UPDATE OF settings ON domains
WHEN NEW.settings IS NOT OLD.settings
BEGIN
    UPDATE settings_revision_counter SET revision = revision + 1 WHERE id = 1;
    UPDATE domains
    SET settings_revision = (SELECT revision FROM settings_revision_counter WHERE id = 1),
        shared_roster_revision = CASE
            WHEN coalesce(json_extract(NEW.settings, '$.shared_roster'), 0)
                 IS NOT coalesce(json_extract(OLD.settings, '$.shared_roster'), 0)
            THEN (SELECT revision FROM settings_revision_counter WHERE id = 1)
            ELSE shared_roster_revision
        END
    WHERE name = NEW.name;
END;
