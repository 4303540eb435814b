-- Some servers learn which slot an upload used only when it completes, and only by a name of
-- their own: ejabberd's mod_http_upload hands the quota hook the uploader's directory before the
-- slot exists, and the finished PUT names the same directory. The reservation keeps that key so
-- the completed upload finds its reservation again, across restarts too.
ALTER TABLE upload_reservations ADD COLUMN slot_key TEXT;
CREATE INDEX upload_reservations_by_slot_key ON upload_reservations (slot_key, size) WHERE slot_key IS NOT NULL;
