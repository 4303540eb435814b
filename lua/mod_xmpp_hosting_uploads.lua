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
-- ours, or it will refuse first with its own numbers. The service's disco#info tells each user
-- the max-file-size that applies to them, and its ad-hoc command "My upload usage" their usage
-- beside their limits.
--
-- Prosody 0.12 fires no event when an upload completes or a file is deleted, so the ledger is
-- kept true by watching files:
--   - completion: the slot id is read from mod_http_file_share's reply; a granted slot is
--     committed when its file appears (mod_http_file_share renames it into place only when the
--     upload is complete), under the file's path, and released when it never does. The slots
--     awaited are kept in Prosody's storage, so a restart loses none (set http_file_share_secret,
--     or mod_http_file_share itself invalidates the slots it issued before the restart).
--   - deletion: every xmpp_hosting_upload_sweep_interval seconds the core looks for the counted
--     files on disk and forgets those gone (expired by mod_http_file_share, or deleted by an
--     admin). That runs on the core's worker thread, like the purge of old slots and windows;
--     the loop only picks up the summary.

local st = require "util.stanza";
local jid = require "util.jid";
local dm = require "util.datamanager";
local datetime = require "util.datetime";
local server = require "net.server";

local get_store = module:depends("xmpp_hosting").get_store;

local namespace = "urn:xmpp:http:upload:0";
local check_interval = module:get_option_number("xmpp_hosting_upload_check_interval", 5);
-- How long after its slot expires an upload may still complete and be counted.
local late_upload_grace = module:get_option_number("xmpp_hosting_upload_grace", 3600);
local sweep_interval = module:get_option_number("xmpp_hosting_upload_sweep_interval", 300);

-- slot id -> { reservation = id, expires = time } while the upload is awaited.
local slots = module:open_store("xmpp_hosting_slots", "keyval");
local watched = slots:get(nil) or {};
for slot, w in pairs(watched) do
	if w.committed then watched[slot] = nil; end -- counted already (kept by older versions)
end

local function save()
	local ok, err = slots:set(nil, watched);
	if not ok then module:log("error", "Cannot save the watched upload slots: %s", err); end
end

local function file_of(slot)
	return dm.getpath(slot, module.host, "http_file_share", "bin");
end

-- The directory mod_http_file_share keeps this component's files in.
local files_root = file_of("slot"):match("^(.*)/[^/]*$");

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

-- disco#info: the max-file-size of the service's form (XEP-0363 section 4) is the one that
-- applies to the user asking, when it is smaller than mod_http_file_share's. mod_disco answers
-- from a cached stanza, so the reply is changed on a copy.
local disco_info = "http://jabber.org/protocol/disco#info";

local function upload_form(query)
	for form in query:childtags("x", "jabber:x:data") do
		for field in form:childtags("field") do
			if field.attr.var == "FORM_TYPE" and field:get_child_text("value") == namespace then
				return form;
			end
		end
	end
end

local function with_max_file_size(reply, max)
	reply = st.clone(reply);
	local query = reply:get_child("query", disco_info);
	local form = query and upload_form(query);
	if not query then return reply; end
	if not form then
		query:tag("x", { xmlns = "jabber:x:data", type = "result" })
			:tag("field", { var = "FORM_TYPE", type = "hidden" }):text_tag("value", namespace):up()
			:tag("field", { var = "max-file-size" }):text_tag("value", tostring(max)):up()
		:up();
		return reply;
	end
	for field in form:childtags("field") do
		if field.attr.var == "max-file-size" then
			local theirs = tonumber(field:get_child_text("value"));
			if not theirs or max < theirs then
				field:maptags(function(child) if child.name ~= "value" then return child; end end);
				field:text_tag("value", tostring(max));
			end
			return reply;
		end
	end
	form:tag("field", { var = "max-file-size" }):text_tag("value", tostring(max)):up();
	return reply;
end

module:hook("iq-get/host/" .. disco_info .. ":query", function(event)
	local stanza, origin = event.stanza, event.origin;
	local username, domain = jid.split(jid.bare(stanza.attr.from));
	local store = get_store();
	if not store or not username or not store:domain(domain) then return; end
	local report = store:upload_report(domain, username);
	local max = report and report.limits.max_file_size;
	if not max then return; end
	event.origin = setmetatable({
		send = function(reply)
			if reply.attr.type == "result" then reply = with_max_file_size(reply, max); end
			return origin.send(reply);
		end;
	}, { __index = origin });
end, 10);

-- Ad-hoc command for any user of a hosted domain: their usage beside their limits, in the
-- core's words (the same text ejabberd's module gives).
module:depends("adhoc");
local usage_node = "urn:xmpp-hosting:upload-usage";
module:provides("adhoc", module:require("adhoc").new("My upload usage", usage_node, function(_, data)
	local username, domain = jid.split(jid.bare(data.from));
	local store = get_store();
	if not store or not username or not store:domain(domain) then
		return { status = "completed"; error = { message = "Uploads from your server are not counted here" } };
	end
	local text, err = store:describe_upload_usage(domain, username);
	if not text then
		module:log("error", "Upload usage of %s@%s: %s", username, domain, err);
		return { status = "completed"; error = { message = "Your usage cannot be shown right now" } };
	end
	return { status = "completed"; info = text };
end, "any"));

-- Commits completed uploads and releases abandoned slots; at most `per_check` slots a tick,
-- resuming where the last tick stopped, so a tick stays short.
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
		local path = file_of(slot);
		local size = size_of(path);
		if size then
			local ok, err, code = store:commit_upload(w.reservation, size, path);
			if ok or code == "already-exists" or code == "not-found" then
				watched[slot], changed = nil, true;
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

-- Runs `callback(result...)` on the loop once a result computed on the core's worker is in.
local function when_done(pending, callback)
	local watch;
	watch = server.watchfd(pending:getfd(), function()
		if pending:ready() and watch then
			watch:close();
			watch = nil;
			callback(pending:result());
		end
	end);
end

local function upkeep()
	local store = get_store();
	local pending, err = store and store:start_upload_upkeep({ files_root });
	if not pending then
		if store then module:log("warn", "Cannot start the upload upkeep: %s", err); end
		return sweep_interval;
	end
	when_done(pending, function(done, upkeep_err)
		if not done then
			module:log("warn", "Upload upkeep failed: %s", upkeep_err);
		elseif done.files_forgotten > 0 or done.purged > 0 then
			module:log("info", "Upload upkeep: %d of %d files gone, %d ledger rows purged",
				done.files_forgotten, done.files_checked, done.purged);
		end
	end);
	return sweep_interval;
end

module:add_timer(check_interval, check_slots);
module:add_timer(sweep_interval, upkeep);
