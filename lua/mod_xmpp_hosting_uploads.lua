-- mod_xmpp_hosting_uploads: upload quotas from xmpp-hosting for Prosody's mod_http_file_share.
--
-- Load it on the upload component, beside http_file_share:
--
--   Component "share.example.org" "http_file_share"
--     modules_enabled = { "xmpp_hosting_uploads" }
--
-- Each slot request is decided by the uploader's domain's limits (max file size, storage per
-- user/domain/global, daily/weekly/monthly volume), before mod_http_file_share sees it, and
-- answered with the XEP-0363 errors: file-too-large (modify/not-acceptable with max-file-size),
-- quota (wait/resource-constraint with a retry stamp), bad size (modify/bad-request). Requests
-- from domains the store does not host are left to mod_http_file_share alone. Set
-- mod_http_file_share's own http_file_share_size_limit / _daily_quota / _global_quota at or above
-- ours, or it will refuse first with its own numbers.
--
-- Prosody 0.12 fires no event when an upload completes or a file is deleted, so the ledger is
-- kept true by watching files: the slot id is read from mod_http_file_share's reply, a granted
-- slot is committed when its file appears (mod_http_file_share renames it into place only when
-- the upload is complete), released when it never does, and forgotten when the file is gone
-- (expired by mod_http_file_share, or deleted by an admin). The slots being watched are kept in
-- Prosody's storage, so a restart loses none (set http_file_share_secret, or mod_http_file_share
-- itself invalidates the slots it issued before the restart).

local st = require "util.stanza";
local jid = require "util.jid";
local dm = require "util.datamanager";
local datetime = require "util.datetime";

local get_store = module:depends("xmpp_hosting").get_store;

local namespace = "urn:xmpp:http:upload:0";
local check_interval = module:get_option_number("xmpp_hosting_upload_check_interval", 5);
-- How long after its slot expires an upload may still complete and be counted.
local late_upload_grace = module:get_option_number("xmpp_hosting_upload_grace", 3600);

-- slot id -> { reservation = id, expires = time } while the upload is awaited,
--            { committed = true } once the file is counted.
local slots = module:open_store("xmpp_hosting_slots", "keyval");
local watched = slots:get(nil) or {};

local function save()
	local ok, err = slots:set(nil, watched);
	if not ok then module:log("error", "Cannot save the watched upload slots: %s", err); end
end

local function file_of(slot)
	return dm.getpath(slot, module.host, "http_file_share", "bin");
end

local function size_of(path)
	local f = io.open(path, "rb");
	if not f then return nil; end
	local size = f:seek("end");
	f:close();
	return size;
end

-- The slot id in mod_http_file_share's put URL: …/file_share/<slot>/<filename>.
local function slot_of(reply)
	local slot = reply:get_child("slot", namespace);
	local put = slot and slot:get_child("put");
	local url = put and put.attr.url;
	return url and url:match("/([^/]+)/[^/]*$");
end

local function quota_error(stanza, d)
	local reply = st.error_reply(stanza, d.type, d.condition, d.text);
	if d.limit == "file-size" then
		reply:get_child("error")
			:tag("file-too-large", { xmlns = namespace })
				:text_tag("max-file-size", tostring(d.limit_value)):up();
	elseif d.retry_at then
		reply:get_child("error"):tag("retry", { xmlns = namespace, stamp = datetime.datetime(d.retry_at) }):up();
	end
	return reply;
end

module:hook("iq-get/host/" .. namespace .. ":request", function(event)
	local stanza, origin = event.stanza, event.origin;
	local request = stanza.tags[1];
	local username, domain = jid.split(jid.bare(stanza.attr.from));
	local store = get_store();
	if not store or not username or not store:domain(domain) then
		return; -- not ours to decide
	end
	local decision, err, code = store:authorize_upload(domain, username, request.attr.size);
	if not decision then
		if code == "invalid-argument" then
			origin.send(st.error_reply(stanza, "modify", "bad-request", err));
		else
			module:log("error", "Upload quota check failed for %s@%s: %s", username, domain, err);
			origin.send(st.error_reply(stanza, "wait", "internal-server-error"));
		end
		return true;
	end
	if decision.decision == "denied" then
		module:log("info", "Upload slot for %s@%s refused: %s", username, domain, decision.text);
		origin.send(quota_error(stanza, decision));
		return true;
	end
	-- Granted: let mod_http_file_share issue the slot, and read its id from the reply.
	event.origin = setmetatable({
		send = function(reply)
			local slot = reply.attr.type == "result" and slot_of(reply);
			if slot then
				module:log("debug", "Watching slot %s (reservation %d)", slot, decision.id);
				watched[slot] = { reservation = decision.id, expires = decision.expires_at };
				save();
			else
				store:release_upload(decision.id);
			end
			return origin.send(reply);
		end;
	}, { __index = origin });
end, 10);

-- Commits completed uploads, releases abandoned slots, forgets deleted files; at most
-- `per_check` slots a tick, resuming where the last tick stopped, so a tick stays short.
local per_check = module:get_option_number("xmpp_hosting_upload_checks_per_tick", 500);
local cursor;

local function check_slots()
	local store = get_store();
	if not store then return check_interval; end
	local now, changed = os.time(), false;
	if cursor ~= nil and watched[cursor] == nil then cursor = nil; end
	local batch = {};
	for _ = 1, per_check do
		cursor = next(watched, cursor);
		if cursor == nil then break; end
		batch[#batch + 1] = cursor;
	end
	for _, slot in ipairs(batch) do
		local w = watched[slot];
		local size = size_of(file_of(slot));
		if w.committed then
			if not size then
				store:forget_file(slot);
				watched[slot], changed = nil, true;
			end
		elseif size then
			local ok, err, code = store:commit_upload(w.reservation, size, slot);
			if ok or code == "already-exists" then
				watched[slot], changed = { committed = true }, true;
			else
				module:log("error", "Cannot count upload %s: %s", slot, err);
			end
		elseif now > w.expires + late_upload_grace then
			store:release_upload(w.reservation);
			watched[slot], changed = nil, true;
		end
	end
	if cursor ~= nil and watched[cursor] == nil then cursor = nil; end
	if changed then save(); end
	return check_interval;
end

module:add_timer(check_interval, check_slots);
