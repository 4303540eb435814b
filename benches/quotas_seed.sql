-- Fills a store's upload ledger for the quota benches through the bindings (lua_quotas.lua,
-- nif_quotas.sh), straight into the tables: a million uploads through the API would take
-- minutes and measure nothing new. Run with sqlite3 after setting the parameters:
--   sqlite3 STORE ".parameter set :n 1000000" ".parameter set :now 1750000000" \
--           ".parameter set :history 100" ".parameter set :domain 'bench.example'" ".read benches/quotas_seed.sql"
-- Uploads 0 .. n-1: the first :history by the measured user, the rest by user0..user999, at
-- now - (i * 7919 mod 30 days) as in crates/core/benches/quotas.rs; hourly and daily volume
-- buckets per user and for the domain; running totals for the users, the domain and the server.
PRAGMA journal_mode = WAL;
PRAGMA busy_timeout = 5000;
BEGIN;
WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < :n - 1)
INSERT INTO upload_files (file_id, domain, username, size, stored_at)
SELECT 'f' || i, :domain,
       CASE WHEN i < :history THEN 'measured' ELSE 'user' || ((i - :history) % 1000) END,
       1000,
       :now - (((CASE WHEN i < :history THEN i ELSE i - :history END) * 7919) % 2592000)
FROM s;
INSERT INTO upload_volume (domain, username, span, start, bytes)
SELECT domain, username, span, stored_at / span, sum(size)
FROM upload_files, (SELECT 3600 AS span UNION ALL SELECT 86400)
GROUP BY domain, username, span, stored_at / span;
INSERT INTO upload_volume (domain, username, span, start, bytes)
SELECT domain, '', span, stored_at / span, sum(size)
FROM upload_files, (SELECT 3600 AS span UNION ALL SELECT 86400)
GROUP BY domain, span, stored_at / span;
INSERT INTO upload_usage (scope, domain, username, stored_bytes, reserved_bytes)
SELECT 'user', domain, username, sum(size), 0 FROM upload_files GROUP BY domain, username;
INSERT INTO upload_usage (scope, domain, username, stored_bytes, reserved_bytes)
SELECT 'domain', domain, '', sum(size), 0 FROM upload_files GROUP BY domain;
INSERT INTO upload_usage (scope, domain, username, stored_bytes, reserved_bytes)
SELECT 'global', '', '', sum(size), 0 FROM upload_files;
INSERT OR REPLACE INTO provider_settings (id, settings, updated_at)
VALUES (1, '{"uploads":{"storage":1000000000000000}}', :now);
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
