-- What the last check of a claim found when it was not the proof ("found TXT "verify=…" at …,
-- expected …", "no TXT record at …"), so that every caller, and `domain claims` later, can say
-- why a domain is not verified.
ALTER TABLE domain_claims ADD COLUMN finding TEXT;
