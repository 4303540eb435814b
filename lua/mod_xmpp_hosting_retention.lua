-- mod_xmpp_hosting_retention: xmpp-hosting's retention of Prosody's message archives.
--
-- Load it where the archives are: on each VirtualHost with mod_mam, and on each group chat
-- component with mod_muc_mam (or in the global modules_enabled, beside mod_xmpp_hosting).
--
--   VirtualHost "example.org"
--     modules_enabled = { "mam", "xmpp_hosting_retention" }
--   Component "conference.example.org" "muc"
--     modules_enabled = { "muc_mam", "xmpp_hosting_retention" }
--
-- The policy (`prosodyctl mod_xmpp_hosting retention set example.org archive 30d`) is the core's,
-- per hosted domain; a group chat service's archive follows the domain it is a subdomain of.
-- This module only tells the core where the archive lives and carries out what it plans:
--   - storage = "sql" on SQLite: the core deletes in Prosody's database itself, on its worker
--     thread, in steps of a few milliseconds (mod_xmpp_hosting's housekeeping pass runs them).
--     Prosody's SQLite connection is given a busy timeout here, so a Prosody query that meets
--     one of those steps waits for it instead of failing with "database is locked".
--   - storage = "internal": Prosody deletes through its archive storage API, a few users' (or
--     rooms') archives per step, one step per timer tick, as the core plans it (cutoff, users'
--     own shorter retention, cursor, batch, pause).
-- Prosody's own expiry of the same archive (archive_expires_after, muc_log_expires_after; both
-- default to "1w") is compared with the policy when the module loads: running beside ours it is
-- logged as a warning (it deletes in one long transaction that blocks the server), deleting
-- sooner than the policy promises as an error; set it to "never" to leave expiry to
-- xmpp-hosting.
--
-- Users choose a shorter retention for their own archive with the ad-hoc command "Archive
-- retention" (never longer than their domain's).

local jid = require "util.jid";
local time_now = require "util.time".now;
local resolve_relative_path = require "util.paths".resolve_relative_path;
local dataforms = require "util.dataforms";
local adhoc_util = require "util.adhoc";
local async = require "util.async";

local hosting_module = module:depends("xmpp_hosting");
local get_store = hosting_module.get_store;

local host = module.host;

-- What this host archives, as Prosody's modules name it: kind, store, expiry option, its default.
local archives = {
	mam = { kind = "archive", store_option = "archive_store", store = "archive",
		expiry = "archive_expires_after", expiry_default = "1w" };
	muc_mam = { kind = "muc", store_option = nil, store = "muc_log",
		expiry = "muc_log_expires_after", expiry_default = "1w" };
};

-- The hosted domain whose policy applies: this host, or for a component the domain above it.
local function hosted_domain(s)
	if s:domain(host) then return host; end
	local parent = host:match("^[^.]+%.(.+)$");
	if parent and s:domain(parent) then return parent; end
	return nil;
end

-- Which storage driver Prosody uses for `store` on this host (storagemanager's rule).
local function driver_of(store)
	local storage = module:get_option("storage");
	local name;
	if type(storage) == "table" then name = storage[store]; elseif type(storage) == "string" then name = storage; end
	return name or module:get_option_string("default_storage", "internal");
end

-- Prosody's SQLite database file, as mod_storage_sql resolves it; nil when not SQLite.
local function sqlite_file()
	local params = module:get_option("sql", { driver = "SQLite3", database = "prosody.sqlite" });
	if params.driver ~= "SQLite3" or params.database == ":memory:" then return nil; end
	return resolve_relative_path(prosody.paths.data or ".", params.database or "prosody.sqlite");
end

-- Prosody's SQL connections (mod_storage_sql shares them under this path).
local sql_engines = module:shared("/*/sql/connections");
-- Milliseconds a Prosody query waits for a lock held by one of the core's steps.
local busy_ms = module:get_option_number("xmpp_hosting_sql_busy_timeout", 2000);

-- Gives Prosody's SQLite connections a busy timeout (LuaDBI sets none), now and on reconnect,
-- and a longer WAL before they checkpoint by themselves: the core's sweep checkpoints on its
-- worker before the log reaches 10,000 pages (checkpoints every 1,000 pages were half its time),
-- and Prosody's connection, at SQLite's default 1,000, would copy the sweep's pages on its loop
-- (the core's number, PROSODY_AUTOCHECKPOINT in crates/core/src/retention/prosody_archive.rs, given
-- by the gate).
-- Only the connection to the database the sweeps work in (`archive_file`) gets the longer WAL:
-- the housekeeping pass checkpoints that file off the loop (Hosting::checkpoint_prosody_databases),
-- no other.
-- Its transactions also pass the core's gate for that file (LoopGate in prosody_archive.rs): no
-- sweep step begins while this loop is in one, and one that begins during a step waits for that
-- step's commit (a few milliseconds) instead of sleeping in SQLite's busy handler; the sweep no
-- longer leaves a gap after each step for this loop's writes, so it runs at full speed while
-- Prosody is idle.
local function give_busy_timeout(s, archive_file)
	for _, engine in pairs(sql_engines) do
		if engine.params and engine.params.driver == "SQLite3" and not engine.xmpp_hosting_busy then
			engine.xmpp_hosting_busy = true;
			local swept = archive_file
				== resolve_relative_path(prosody.paths.data or ".", engine.params.database or "prosody.sqlite");
			local gate = swept and s:prosody_sql_gate(archive_file);
			local function set_busy(e)
				return e:transaction(function()
					e:execute(("PRAGMA busy_timeout = %d"):format(busy_ms));
					if gate then e:execute(("PRAGMA wal_autocheckpoint = %d"):format(gate:autocheckpoint())); end
					local row = e:select("PRAGMA wal_autocheckpoint")();
					module:log("debug", "Prosody's SQLite connection %s: busy timeout %d ms, WAL checkpointed at %s pages",
						e.url, busy_ms, row and tostring(row[1]));
				end);
			end
			-- The settings belong to a connection. Prosody calls onconnect only when its own first
			-- statements on a new connection succeed, and keeps the connection when they fail (another
			-- process held the lock then): so whether the current connection has them is checked
			-- around every transaction, and they are set again on a new one.
			local set_on;
			local function settle(e)
				if e.conn == nil or set_on == e.conn then return; end
				set_on = e.conn; -- before: set_busy runs a transaction of its own
				local ok, ret, err = pcall(set_busy, e);
				if not ok or not ret then
					set_on = nil; -- tried again at the next transaction
					module:log("warn", "Cannot set the busy timeout of %s yet: %s", e.url, tostring(ok and err or ret));
				end
			end
			local transaction = engine.transaction;
			engine.transaction = function(e, ...)
				settle(e);
				if gate then gate:enter(); end
				local ok, a, b, c, d = pcall(transaction, e, ...);
				if gate then gate:leave(); end
				if not ok then error(a, 0); end
				settle(e);
				return a, b, c, d;
			end;
			settle(engine);
		end
	end
end

-- Registers this host's archives with the core, and checks Prosody's own expiry of them.
local registered = {};
local function register(module_name)
	local what = archives[module_name];
	if not what or registered[module_name] or not require "core.modulemanager".is_loaded(host, module_name) then
		return;
	end
	local s = get_store();
	local domain = s and hosted_domain(s);
	if not domain then
		module:log("debug", "%s is not a hosted domain nor below one: its archive is not swept", host);
		return;
	end
	local store = what.store_option and module:get_option_string(what.store_option, what.store) or what.store;
	local driver = driver_of(store);
	local backend, location;
	if driver == "sql" then
		location = sqlite_file();
		if not location then
			module:log("warn", "The %s of %s is in an SQL database other than SQLite, which xmpp-hosting does not sweep",
				store, host);
			return;
		end
		backend = "prosody_sql";
		module:open_store(store, "archive"); -- opens the connection, so it gets its busy timeout now
		give_busy_timeout(s, location);
	elseif driver == "internal" then
		backend = "prosody_internal";
	else
		module:log("warn", "The %s of %s is in storage %q, which xmpp-hosting does not sweep", store, host, driver);
		return;
	end
	-- Never waits on the loop for another process's lock on the store: while one is held, the
	-- core's worker registers it once the lock is free.
	local answer, err, code = s:register_archive_store_or_later(domain, what.kind, host, backend, location, store);
	if type(answer) == "userdata" then
		module:log("debug", "The store is locked by another process: the %s of %s is registered for retention once it is free",
			store, host);
	end
	registered[module_name] = true; -- not again while the worker registers it
	hosting_module.when_done(answer, err, code, function(ok, done_err)
		if not ok then
			registered[module_name] = nil;
			module:log("error", "Cannot register the %s of %s for retention: %s", store, host, tostring(done_err));
			return;
		end
		module:log("debug", "Retention of %s: %s in %s%s", host, store, backend, location and (" " .. location) or "");
		local configured = module:get_option(what.expiry);
		local value = configured == nil and what.expiry_default or tostring(configured);
		local conflict = s:server_expiry_conflict(domain, what.kind, host, what.expiry, value);
		if conflict then module:log(conflict.level, "%s", conflict.text); end
	end);
end

local function register_all()
	for name in pairs(archives) do register(name); end
end

-- Sweeps of internal storage, run here a step per timer tick as the core plans them.
local running = {};

-- One step: at most plan.batch archives (users or rooms) after the cursor, each deleted through
-- the storage API up to its cutoff. Returns what the core's driven_step_done takes.
local function run_step(plan)
	local started = time_now();
	local done = { deleted = 0, batch = plan.batch };
	local failures = {};
	-- Where the step starts (the cursor: after this archive) and the last archive it looked at
	-- (the next step's cursor) are kept apart: a store's first archive, when the store before
	-- filled the batch, must name that store's last one as where to go on.
	local at_host, at_user;
	if plan.cursor then at_host, at_user = plan.cursor:match("^([^\t]*)\t(.*)$"); end
	local last_host, last_user;
	local count = 0;
	for _, st in ipairs(plan.stores) do
		if not at_host or st.server_host >= at_host then
			local archive = module:context(st.server_host):open_store(st.store, "archive");
			local names = {};
			for name in archive:users() do names[#names + 1] = name; end
			table.sort(names);
			for _, name in ipairs(names) do
				if st.server_host ~= at_host or name > at_user then
					if count >= plan.batch and last_host then
						done.next = last_host .. "\t" .. last_user;
						break;
					end
					local cutoff = plan.users[name] or plan.cutoff;
					if cutoff then
						-- Prosody's "end" is inclusive and its times may carry fractions: a second
						-- below the core's cutoff keeps "strictly before" whatever the rounding.
						local deleted, err;
						if plan.dry_run then
							-- What the delete below would take: the same query, counted (Prosody 13's
							-- internal storage gives no total for a filtered query).
							local iter, find_err = archive:find(name, { ["end"] = cutoff - 1 });
							if iter then
								deleted = 0;
								for _ in iter do deleted = deleted + 1; end
							else
								err = find_err;
							end
						else
							deleted, err = archive:delete(name, { ["end"] = cutoff - 1 });
						end
						if deleted then
							done.deleted = done.deleted + (tonumber(deleted) or 0);
						else
							failures[#failures + 1] = ("%s@%s: %s"):format(name, st.server_host, tostring(err));
						end
					end
					count = count + 1;
					last_host, last_user = st.server_host, name;
				end
			end
			if done.next then break; end
		end
	end
	if #failures > 0 then done.failures = failures; end
	done.took_us = math.floor((time_now() - started) * 1e6);
	return done;
end

local function drive(s, plan)
	local slot = plan.domain .. "/" .. plan.kind .. (plan.dry_run and "/dry" or "");
	running[slot] = plan.sweep;
	module:add_timer(plan.pause, function()
		local ok, done = pcall(run_step, plan);
		-- A failed step is recorded with the cursor it was given, so the sweep stays under way and
		-- the next pass resumes it there: "\t" (before every store) when it failed at the start,
		-- since no cursor would tell the core the sweep ended, done, and its later stores unswept.
		-- A dry run is never resumed: it ends here, its failure in its record.
		if not ok then
			local resume = not plan.dry_run and (plan.cursor or "\t") or nil;
			done = { failures = { tostring(done) }, batch = plan.batch, next = resume };
			module:log("error", "Retention sweep step failed: %s", tostring(done.failures[1]));
		end
		-- Recorded without waiting on the loop for another process's lock on the store: while
		-- one is held, the core's worker records it once the lock is free.
		local answer, err, code = s:driven_step_done_or_later(plan.sweep, done);
		if type(answer) == "userdata" then
			module:log("debug", "The store is locked by another process: step of retention sweep #%d is recorded once it is free",
				plan.sweep);
		end
		hosting_module.when_done(answer, err, code, function(out, done_err)
			if not out then
				module:log("warn", "Retention sweep #%d stopped: %s", plan.sweep, tostring(done_err));
				running[slot] = nil;
				return;
			end
			if out.next and ok then
				return drive(s, out.next);
			end
			running[slot] = nil;
			local level = (out.record.failed > 0 or #out.record.errors > 0) and "warn" or "info";
			module:log(level, "Retention: %s", out.record.text);
		end);
	end);
end

-- Starts (or resumes) a due sweep of internal storage whose first store is this host's; with
-- dry_run, a dry run of it (counted through the same storage API, deleting nothing).
local function start_driven(domain, kind, dry_run)
	local s = get_store();
	if not s or running[domain .. "/" .. kind .. (dry_run and "/dry" or "")] then return; end
	local stores = s:archive_stores(domain, kind);
	local first;
	for _, st in ipairs(stores or {}) do
		if st.backend == "prosody_internal" then first = first or st; end
	end
	if not first or first.server_host ~= host then return; end
	-- Claimed without waiting on the loop for another process's lock on the store: while one is
	-- held, the core's worker claims it once the lock is free (and the admin shell's command,
	-- which runs in a runner, waits for that to say the sweep's number).
	local slot = domain .. "/" .. kind .. (dry_run and "/dry" or "");
	local answer, err, code = s:begin_driven_sweep_or_later(domain, kind, dry_run and true or nil);
	local function begun(plan, begin_err, begin_code)
		if not plan then
			running[slot] = nil;
			if begin_code ~= "not-allowed" then module:log("warn", "Retention sweep of %s %s: %s", domain, kind, begin_err); end
			return;
		end
		drive(s, plan);
		return plan.sweep;
	end
	if type(answer) ~= "userdata" then return begun(answer, err, code); end
	module:log("debug", "The store is locked by another process: the sweep of %s %s begins once it is free", domain, kind);
	running[slot] = true; -- not begun twice meanwhile
	if async.ready() then return begun(hosting_module.wait_for(answer)); end
	hosting_module.when_done(answer, err, code, begun);
end

module:hook_global("xmpp-hosting/retention-due", function(event)
	start_driven(event.domain, event.kind);
end);

-- `retention sweep [--dry-run]` in the admin shell: the sweep id when this host runs it.
module:hook_global("xmpp-hosting/retention-sweep-now", function(event)
	return start_driven(event.domain, event.kind, event.dry_run);
end);

module:hook_global("module-loaded", function(event)
	if event.host == host and archives[event.module] then register(event.module); end
end);

function module.load()
	if prosody.process_type ~= "prosody" then return; end
	module:add_timer(0, register_all);
end

-- Ad-hoc command for users of a hosted domain: see, set or clear their own archive retention.
if module:get_host_type() == "local" then
	module:depends("adhoc");
	local form = dataforms.new({
		title = "Archive retention";
		instructions = "How long your message archive is kept on this server. Leave empty to keep the "
			.. "server's retention; write a period such as 30d, 1w or 1y to keep less.";
		{ name = "FORM_TYPE", type = "hidden", value = "urn:xmpp-hosting:retention" };
		{ name = "current", type = "fixed", label = "Kept now" };
		{ name = "period", type = "text-single", label = "Your retention (e.g. 30d; empty for the server's)" };
	});
	local function current(data)
		local username, domain = jid.split(jid.bare(data.from));
		local s = get_store();
		if not s or not username or not s:domain(domain) then return nil, { type = "cancel", condition = "item-not-found",
			text = "Archives of your server are not kept by xmpp-hosting" }; end
		local period, err = s:user_archive_retention(domain, username);
		if not period then return nil, err; end
		return { current = ("Your archive is kept for %s"):format(period) };
	end
	module:provides("adhoc", module:require("adhoc").new("Archive retention", "urn:xmpp-hosting:retention",
		adhoc_util.new_initial_data_form(form, current, function(fields, form_err, data)
			if form_err then
				return { status = "completed"; error = { message = "The form was not filled in correctly" } };
			end
			local username, domain = jid.split(jid.bare(data.from));
			local s = get_store();
			if not s then return { status = "completed"; error = { message = "Retention cannot be changed right now" } }; end
			local value = fields.period;
			if value == "" then value = nil; end
			local period, err = s:set_user_archive_retention(domain, username, value);
			if not period then
				return { status = "completed"; error = { message = tostring(err) } };
			end
			return { status = "completed"; info = ("Your archive is now kept for %s"):format(period) };
		end), "local_user"));
end
