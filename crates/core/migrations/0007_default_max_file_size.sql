-- Every domain has a largest file (quotas::DEFAULT_MAX_FILE_SIZE, 100 MiB) unless an admin sets
-- another. Before this, a domain's settings said "max_file_size": null by default, which let a
-- client ask for a slot of any size on a server without a size limit of its own (ejabberd's
-- `max_size: infinity`). Domains whose limit is null get the default; an admin who wants no
-- limit sets null again (`quota set DOMAIN max_file_size null`). A test checks the number
-- against the constant.
UPDATE domains
SET settings = json_set(settings, '$.uploads.max_file_size', 104857600)
WHERE json_valid(settings) AND json_type(settings, '$.uploads.max_file_size') = 'null';
