-- mod_xmpp_hosting_roster: "everyone is in everybody else's contact list", per hosted domain.
--
-- Load it on each VirtualHost (modules_enabled = { "xmpp_hosting_roster" }); switch it per
-- domain in the store: `xmpp-hosting domain settings DOMAIN shared_roster on|off` (or
-- `prosodyctl mod_xmpp_hosting domain set DOMAIN shared_roster on`). Who is in the group and
-- what it is called is the core's answer (store:shared_roster); this file only puts that
-- answer into Prosody's rosters, the way mod_groups does:
--   - roster-load: the contacts are added to the roster as it is loaded (subscription both, in
--     the domain's group), marked so they are never saved (persist = false, dropped by a
--     datamanager callback as mod_groups does) and so they can be taken out again;
--   - resource-bind: a roster kept in memory from before (an online user's, or Prosody's roster
--     cache) is brought in line with the setting as it is now;
--   - the setting switched (from the CLI, prosodyctl, the panel: any process): every online
--     user's roster is brought in line and the contacts added or taken out are pushed to their
--     clients, as mod_groups' own pushes do. The core names the domains whose settings changed
--     since the last look (store:settings_changes, one indexed read for all domains) and which
--     of them had their shared roster switched (only those are brought in line: a change to
--     another setting pushes nothing); an error on one domain is logged, not the end of the
--     watch (each domain's work runs in pcall, the timer always gets its interval back); this
--     module is global (one look every few seconds, the core's interval, for all its hosts) and
--     adds its hooks to each host it is loaded on (module.add_host);
--   - an account created (in-band registration, or mod_xmpp_hosting_users' ad-hoc command) or
--     deleted: every online user's roster is brought in line and the change pushed to their
--     clients (RFC 6121 roster push), so a new user appears without a re-login.
-- Roster items a user made themselves are never changed.

local usermanager = require "core.usermanager";
local rostermanager = require "core.rostermanager";
local datamanager = require "util.datamanager";

module:set_global();

local hosting_module = module:depends("xmpp_hosting");
local get_store = hosting_module.get_store;

-- The hosts this module is loaded on: host -> function bringing its online users in line.
local served = {};

-- The host's account names, or nil and why: not every auth provider can list its accounts
-- (usermanager.users returns nil then). It is a generic for's triple: the internal providers'
-- iterator needs its state.
local function accounts(host)
	local ok, iter, state, control = pcall(usermanager.users, host);
	if not (ok and iter) then
		return nil, ok and "this server's authentication cannot list its accounts" or tostring(iter);
	end
	local list = {};
	for username in iter, state, control do list[#list + 1] = username; end
	return list;
end

-- The core's answer for `username`: { group, contacts } or false (no shared roster here).
local function shared_for(host, username, list)
	local store = get_store();
	if not store then return false; end
	local err;
	if not list then list, err = accounts(host); end
	if not list then
		module:log("warn", "Cannot list the accounts of %s for the shared roster: %s", host, err);
		return false;
	end
	local shared;
	shared, err = store:shared_roster(host, username, list);
	if shared == nil then
		module:log("warn", "Cannot read the shared roster of %s@%s: %s", username, host, err);
		return false;
	end
	return shared;
end

-- Brings `roster` in line with `shared`: adds the contacts it lacks, takes out the ones this
-- module added that are contacts no more. With `only` (a set of JIDs), only those are looked
-- at: `shared` was then computed from those accounts alone. Returns the JIDs changed.
local function reconcile(roster, shared, only)
	local changed, wanted = {}, {};
	for contact, item in pairs(roster) do
		if contact and item.xmpp_hosting_shared and (not only or only[contact]) then wanted[contact] = false; end
	end
	if shared then
		for _, contact in ipairs(shared.contacts) do
			if wanted[contact] == false then
				wanted[contact] = true;
			elseif not roster[contact] and (not only or only[contact]) then
				roster[contact] = { subscription = "both", groups = { [shared.group] = true }, persist = false,
					xmpp_hosting_shared = true };
				changed[#changed + 1] = contact;
			end
		end
		if roster[false] then roster[false].version = true; end -- as mod_groups: not versioned
	end
	for contact, keep in pairs(wanted) do
		if not keep then
			roster[contact] = nil;
			changed[#changed + 1] = contact;
		end
	end
	return changed;
end

local function push(host, username, changed)
	for _, contact in ipairs(changed) do rostermanager.roster_push(username, host, contact); end
end

function module.add_host(module) -- luacheck: ignore 431 (the host's own module object)
	local host = module.host;

	module:hook("roster-load", function(event)
		reconcile(event.roster, shared_for(host, event.username));
	end);

	module:hook("resource-bind", function(event)
		local session = event.session;
		if session.roster then
			push(host, session.username, reconcile(session.roster, shared_for(host, session.username)));
		end
	end);

	-- Every online user's roster, after `username`'s account came (exists) or went: only that JID
	-- is looked at, so the cost is one store call per online user, not a listing of the domain's
	-- accounts.
	local function account_changed(username, exists)
		local only = { [username .. "@" .. host] = true };
		for online, user in pairs(prosody.hosts[host].sessions or {}) do
			if user.roster and online ~= username then
				push(host, online, reconcile(user.roster, shared_for(host, online, exists and { username } or {}), only));
			end
		end
	end

	module:hook("user-registered", function(event) account_changed(event.username, true); end);
	module:hook("xmpp-hosting/account-created", function(event) account_changed(event.username, true); end);
	-- The account is gone even while its sessions are still being closed (user_exists would say
	-- it is there as long as one is open).
	module:hook_global("user-deleted", function(event)
		if event.host == host then account_changed(event.username, false); end
	end);

	-- The setting switched: every online user's roster brought in line with it (the domain's
	-- accounts listed once for all of them).
	served[host] = function()
		local sessions = prosody.hosts[host] and prosody.hosts[host].sessions or {};
		if not next(sessions) then return; end
		local list, err = accounts(host);
		if not list then
			module:log("error", "Cannot bring online rosters of %s in line with its shared roster: %s", host, err);
			return;
		end
		local pushed = 0;
		for online, user in pairs(sessions) do
			if user.roster then
				local changed = reconcile(user.roster, shared_for(host, online, list));
				push(host, online, changed);
				pushed = pushed + #changed;
			end
		end
		if pushed > 0 then module:log("info", "Shared roster settings changed: %d roster item(s) pushed", pushed); end
	end;

	function module.unload() -- luacheck: ignore 431
		served[host] = nil;
	end
end

-- Looks at which domains' settings changed since the last look (in any process), every few
-- seconds as the core says, and brings the online users of those this server serves in line.
local revision, watching;

local function look()
	local store, err = get_store();
	local changes;
	if store then changes, err = store:settings_changes(revision); end
	if not changes then
		module:log("warn", "Cannot read which domains' settings changed: %s", tostring(err));
		return 60;
	end
	local first = revision == nil;
	revision = changes.revision;
	if not first then
		for _, domain in ipairs(changes.shared_roster_switched or {}) do
			if served[domain] then
				local ok, why = pcall(served[domain]);
				if not ok then
					module:log("error", "Cannot apply the shared roster switched on %s: %s", domain, tostring(why));
				end
			end
		end
	end
	return changes.next_in;
end

-- A timer callback that errs or returns no number is never run again (util.timer), which
-- would stop the watch for every host: whatever happens, the next look is scheduled.
local function watch()
	if not watching then return; end
	local ok, next_in = pcall(look);
	if not ok then
		module:log("error", "Cannot look at which domains' settings changed: %s", tostring(next_in));
		return 60;
	end
	return tonumber(next_in) or 60;
end

function module.load()
	if prosody.process_type ~= "prosody" then return; end
	watching = true;
	module:add_timer(0, watch);
end

-- The contacts added here are never written to a user's stored roster.
local function unsaved(username, store_host, datastore, data)
	if served[store_host] and datastore == "roster" and type(data) == "table" then
		local kept = {};
		for contact, item in pairs(data) do
			if not (contact and item.xmpp_hosting_shared) then kept[contact] = item; end
		end
		return username, store_host, datastore, kept;
	end
	return username, store_host, datastore, data;
end

datamanager.add_callback(unsaved);

function module.unload()
	watching = false;
	datamanager.remove_callback(unsaved);
end
