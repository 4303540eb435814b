-- When an operator last removed each domain name, so that a server's request to host it (its
-- invite module at start) that is made late, retried behind another process's lock as of the
-- time the server asked, does not add back a domain removed after that time.
CREATE TABLE domain_removals (
    name        TEXT PRIMARY KEY NOT NULL,   -- IDNA ASCII, as domains.name
    removed_at  INTEGER NOT NULL             -- unix seconds, the latest removal
) STRICT;
