-- Certificates (issue 14): the smallest expiry threshold (31, 7, 1 days; 0 once expired) the
-- admins and the domain's owner were told about for the certificate served now, so each notice
-- goes out once. A new certificate (generated, renewed, imported) starts again from NULL.
ALTER TABLE certificates ADD COLUMN expiry_notified INTEGER;
