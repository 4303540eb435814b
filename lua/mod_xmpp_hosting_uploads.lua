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
-- from domains the store does not host are left to mod_http_file_share alone. The decision never
-- waits on the loop for another process's lock on the store: it is tried without waiting, and
-- while the CLI, ejabberd or a backup holds the write lock the core's worker makes it once the
-- lock is free; the request is answered then (mod_http_file_share issues the slot as usual) and
-- the loop serves everything else meanwhile. Set
-- mod_http_file_share's own http_file_share_size_limit / _daily_quota / _global_quota at or above
-- ours, or it will refuse first with its own numbers. The service's disco#info tells each user
-- the max-file-size that applies to them, and its ad-hoc command "My upload usage" their usage
-- beside their limits.
--
-- Prosody 0.12 fires no event when an upload completes or a file is deleted, so the ledger is
-- kept true by watching files, all of it in the core, on its worker thread:
--   - completion: the slot id is read from mod_http_file_share's reply and the core is told the
--     path the slot's file will have. mod_http_file_share names the slot only after our decision
--     has committed, so the core queues that watch in memory and writes it in the next slot
--     decision's transaction (or the next look at the slots, below, before it looks): a slot
--     request costs the loop one store write, nothing that grows with the slots awaited. The
--     queue is written as Prosody stops (waiting, at most the store's lock timeout, for another
--     process's lock) or the module unloads. Lost are only the few watches since the last request
--     or look when Prosody crashes, or when another process holds the lock past that wait as it
--     stops: those slots' files then count in global storage only.
--     Every xmpp_hosting_upload_check_interval seconds the core looks at the slots awaited: a
--     file renamed into place is counted; a `<slot>.bin~` still growing (uploads over
--     http_max_content_size stream into it, as slowly as the client likes) keeps the reservation
--     holding; a slot that can bring no file any more gives its bytes back. Slots outlive a
--     restart (set http_file_share_secret, or mod_http_file_share itself invalidates the slots
--     it issued before the restart).
--   - files the ledger does not know (a slot granted before this module was loaded, a file put
--     there by hand): the core's sweep of this directory counts them, charged to the slot's
--     owner when the core watched that slot, else to global storage only.
--   - deletion: mod_xmpp_hosting's housekeeping pass (every xmpp_hosting_upload_sweep_interval
--     seconds, 300 by default) has the core look for the counted files on disk and forget those
--     gone (expired by mod_http_file_share, or deleted by an admin), on the core's worker
--     thread, with the purge of old slots and windows; the loop only picks up the report.

local st = require "util.stanza";
local jid = require "util.jid";
local dm = require "util.datamanager";
local datetime = require "util.datetime";
local async = require "util.async";
local base64_decode = require "util.encodings".base64.decode;
local json = require "util.json";

local hosting_module = module:depends("xmpp_hosting");
local get_store = hosting_module.get_store;

local namespace = "urn:xmpp:http:upload:0";
local check_interval = module:get_option_number("xmpp_hosting_upload_check_interval", 5);
-- No upload for a slot can start after its upload token expires: the core keeps the slot (and
-- charges its file to the uploader) until then. How long that is, is mod_http_file_share's: 0.12
-- signs the token for 300 s, 13.0 leaves it to util.jwt's default of 600 s. So it is read from
-- the token itself (its `exp`); this is used for a token that cannot be read, and for the slots
-- of earlier versions of this module, whose tokens are gone: no supported version signs longer.
local longest_slot_life = 600;
-- mod_http_file_share writes an upload still arriving to the file's name plus this.
local partial_suffix = "~";

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

-- Seconds until the upload token in mod_http_file_share's reply expires (its JWT's `exp`, read
-- only: the signature is mod_http_file_share's to check).
local b64url_to_b64 = { ["-"] = "+", ["_"] = "/" };
local function slot_usable_for(reply)
	local slot = reply:get_child("slot", namespace);
	local put = slot and slot:get_child("put");
	for header in (put and put:childtags("header")) or function() end do
		local token = header.attr.name == "Authorization" and header:get_text():match("^Bearer [^.]+%.([^.]+)%.");
		local decoded = token and base64_decode(token:gsub("[-_]", b64url_to_b64) .. "==");
		local ok, claims = pcall(json.decode, decoded or "");
		local exp = ok and type(claims) == "table" and tonumber(claims.exp);
		if exp then return math.max(1, math.floor(exp - os.time())); end
	end
	module:log("warn", "The slot's upload token has no expiry to read: the slot is awaited for %d s", longest_slot_life);
	return longest_slot_life;
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

-- `callback(result...)` with a `*_or_later` method's answer: at once, or on the loop once the
-- core's worker has it (see mod_xmpp_hosting).
local when_done = hosting_module.when_done;

-- Store writes the slot hook makes besides the decision (a slot mod_http_file_share did not
-- issue gives its bytes back): done at once when nobody else holds the store's lock, else on the
-- core's worker, which tries again until the lock is free; the loop never waits for another process.
local function release(store, reservation)
	local done, err = store:release_upload_or_later(reservation);
	when_done(done, err, nil, function(ok, late_err)
		if not ok then module:log("warn", "Cannot release upload reservation %s: %s", reservation, late_err); end
	end);
end

-- A granted slot: mod_http_file_share issues it (its handler runs after this one), and its id is
-- read from the reply so that the core can watch for the slot's file.
local function issue(event, store, grant)
	local origin = event.origin;
	event.origin = setmetatable({
		send = function(reply)
			local slot = reply.attr.type == "result" and slot_of(reply);
			if slot then
				-- Queued in the core, written with the next decision or look at the slots: no
				-- store call here.
				local ok, watch_err = store:watch_upload_slot(grant.id, file_of(slot), slot_usable_for(reply));
				if not ok then module:log("error", "Cannot watch upload slot %s: %s", slot, watch_err); end
			else
				release(store, grant.id);
			end
			return origin.send(reply);
		end;
	}, { __index = origin });
end

-- Answers a refused or failed request; true when answered, nil for a grant (after `issue`).
local function answer(event, store, decision, err, code)
	local stanza, origin = event.stanza, event.origin;
	if not decision then
		if code == "invalid-argument" then
			origin.send(st.error_reply(stanza, "modify", "bad-request", err));
		else
			module:log("error", "Upload quota check failed for %s: %s", stanza.attr.from, err);
			origin.send(st.error_reply(stanza, "wait", "internal-server-error"));
		end
		return true;
	end
	if decision.decision == "denied" then
		module:log("info", "Upload slot for %s refused: %s", stanza.attr.from, decision.text);
		origin.send(quota_error(stanza, decision));
		return true;
	end
	issue(event, store, decision);
end

local request_event = "iq-get/host/" .. namespace .. ":request";

-- A request decided on the core's worker is fired again once the decision is in, so that
-- mod_http_file_share issues the slot as for any other; in a runner, as stanza handlers run.
local again = async.runner(function(event)
	if not module:fire_event(request_event, event) then
		-- mod_http_file_share went away meanwhile: nobody else will answer.
		local grant = event.xmpp_hosting.decision;
		if grant then release(get_store(), grant.id); end
		event.origin.send(st.error_reply(event.stanza, "cancel", "service-unavailable"));
	end
end, {
	error = function(_, err) module:log("error", "Issuing an upload slot decided off the loop failed: %s", err); end;
});

module:hook(request_event, function(event)
	local store = get_store();
	if event.xmpp_hosting then -- decided on the worker, fired again (see `again`)
		if event.xmpp_hosting.decision then issue(event, store, event.xmpp_hosting.decision); end
		return;
	end
	local username, domain = jid.split(jid.bare(event.stanza.attr.from));
	if not store or not username or not domain then
		return; -- not ours to decide
	end
	-- The decision at once, or, while another process holds the store's write lock, the same
	-- decision made by the core's worker once the lock is free: answered then, and the session
	-- (and every other) is served meanwhile.
	local decision, err, code = store:authorize_upload_or_later(domain, username, event.stanza.tags[1].attr.size);
	if not decision and (code == "not-found" or code == "invalid-domain") then
		return; -- a domain the store does not host: mod_http_file_share's own rules apply
	end
	if type(decision) ~= "userdata" then
		return answer(event, store, decision, err, code);
	end
	when_done(decision, nil, nil, function(late, late_err, late_code)
		if not late and (late_code == "not-found" or late_code == "invalid-domain") then
			event.xmpp_hosting = { not_ours = true };
		elseif answer(event, store, late, late_err, late_code) then
			return;
		else
			event.xmpp_hosting = { decision = late };
		end
		again:run(event);
	end);
	return true;
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

-- Earlier versions kept the slots awaited in Prosody's storage: hand them to the core once.
local old_slots = module:open_store("xmpp_hosting_slots", "keyval");

local function adopt_old_slots(store)
	local old = old_slots:get(nil);
	if not old then return; end
	for slot, w in pairs(old) do
		if not w.committed and w.reservation then
			store:watch_upload_slot(w.reservation, file_of(slot), longest_slot_life);
		end
	end
	old_slots:set(nil, nil);
end

-- The core looks at the slots awaited on its worker; the loop only starts it and reads the summary.
-- root_watched: false, "pending" (the core's worker registers the directory once another
-- process's lock on the store is free: the loop does not wait for it), or true.
local root_watched, checking = false, false;

local function watch_root(store)
	local answer, err = store:watch_upload_root_or_later(files_root, partial_suffix);
	if type(answer) == "userdata" then
		module:log("debug", "The store is locked by another process: the upload directory %s is registered once it is free",
			files_root);
	end
	root_watched = "pending";
	when_done(answer, err, nil, function(ok, watch_err)
		if not ok then
			root_watched = false;
			module:log("error", "Cannot watch the upload directory %s: %s", files_root, watch_err);
			return;
		end
		root_watched = true;
		module:log("debug", "Watching the upload directory %s", files_root);
		adopt_old_slots(store);
	end);
end

local function check_slots()
	local store = get_store();
	if not store or checking then return check_interval; end
	if not root_watched then watch_root(store); end
	if root_watched ~= true then return check_interval; end
	local pending, err = store:start_upload_slot_check({ files_root });
	if not pending then
		module:log("warn", "Cannot look at the upload slots: %s", err);
		return check_interval;
	end
	checking = true;
	when_done(pending, nil, nil, function(done, check_err)
		checking = false;
		if not done then
			module:log("warn", "Looking at the upload slots failed: %s", check_err);
			return;
		end
		if done.watch_failures > 0 then
			module:log("error", "%d upload slot(s) could not be watched (%s): their files count in global storage only",
				done.watch_failures, done.last_watch_failure);
		end
		if done.slots_completed > 0 or done.slots_ended > 0 then
			module:log("debug", "Upload slots: %d completed, %d ended, %d arriving", done.slots_completed,
				done.slots_ended, done.slots_arriving);
		end
	end);
	return check_interval;
end

module:add_timer(check_interval, check_slots);
-- Deleted files are swept by mod_xmpp_hosting's housekeeping pass, the one timer of every
-- periodic step: this component only names its directory (and its own sweep interval, if set).
hosting_module.add_upload_root(files_root, module:get_option_number("xmpp_hosting_upload_sweep_interval"));

-- Watches still queued are written as the module goes or Prosody stops, so that slots still
-- usable after a restart keep their owner. The module unloading while Prosody runs on: at once,
-- or by the core's worker, which tries until another process's lock is free (the loop does not
-- wait).
local function write_queued_watches()
	local store = get_store();
	if not store then return; end
	local written, err = store:write_upload_slot_watches_or_later();
	when_done(written, err, nil, function(ok, late_err)
		if not ok then module:log("warn", "Cannot write the upload slots awaited: %s", late_err); end
	end);
end

-- Prosody stopping: the process exits right after, and a write left to the worker would be lost
-- with it, so this one waits for another process's lock (on the worker, at most the store's lock
-- timeout); the loop serves nobody any more.
module:hook_global("server-stopping", function()
	local store = get_store();
	if not store then return; end
	local written, err = store:write_upload_slot_watches_waiting();
	if not written then module:log("warn", "Cannot write the upload slots awaited: %s", err); end
end);

function module.unload()
	write_queued_watches();
	hosting_module.remove_upload_root(files_root);
end
