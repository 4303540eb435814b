-- mod_xmpp_hosting: xmpp-hosting's store inside Prosody, and its admin commands.
--
-- Load it globally (modules_enabled). It opens the store named by `xmpp_hosting_database`
-- (default: xmpp_hosting.sqlite in Prosody's data directory) and offers:
--
--   prosodyctl mod_xmpp_hosting domain add|list|show|remove [NAME]
--   prosodyctl mod_xmpp_hosting domain set NAME SETTING VALUE   (e.g. registration.policy open)
--   prosodyctl mod_xmpp_hosting invite create DOMAIN [--uses N] [--kind account|roster|reset]
--                                [--username U] [--inviter JID] [--expires-in SECONDS|never] [--note TEXT]
--   prosodyctl mod_xmpp_hosting invite list DOMAIN | revoke DOMAIN ID | purge
--   prosodyctl mod_xmpp_hosting domain claim|verify NAME ACCOUNT   (customers' own domains)
--   prosodyctl mod_xmpp_hosting domain claims [NAME]               (claims and their states)
--   prosodyctl mod_xmpp_hosting dns check NAME                      (the DNS tester's table)
--   prosodyctl mod_xmpp_hosting quota show DOMAIN [USER] | set DOMAIN LIMIT BYTES [--user USER]
--                                | clear DOMAIN USER | audit [--repair]    (upload limits)
--   prosodyctl shell:  xmpp_hosting:domain_add("example.org")  (domain_list, domain_show, domain_remove,
--                      invite_create(domain, {uses = 3}), invite_list(domain), invite_revoke(domain, id))
--
-- In the server it also runs the core's housekeeping pass from one timer: checkpoints of the
-- store's write-ahead log, re-checks of customers' verified domains (the admins get the core's
-- notice, and xmpp-hosting/domain-lost or -suspended fires, when a record is gone), the purge of
-- unusable invites and the upkeep of the upload ledger. The core's worker does the work; the
-- loop only watches for the report and delivers it.
--
-- The rules live in the Rust core (require "xmpp_hosting"); this file only wires them into
-- Prosody. Other xmpp-hosting modules get the open store with module:depends("xmpp_hosting").

module:set_global();

-- Which Prosody this is decides the APIs used (xmpp_hosting_server.lib.lua); on a version the
-- modules were not built and tested for they refuse to load rather than half-work.
local server_lib = module:require("xmpp_hosting_server");
local certs = module:require("xmpp_hosting_certs");
local server_api, unsupported = server_lib.detect();
if not server_api then
	module:log("error", "%s: not loading", unsupported);
	error(unsupported);
end
-- In the server's log; prosodyctl would print it before every command's output, so debug there.
module:log(prosody.process_type == "prosody" and "info" or "debug", "xmpp-hosting on Prosody %s: %s",
	prosody.version, server_api.api);

local xh = require "xmpp_hosting";
local async = require "util.async";
local server = require "net.server";
local st = require "util.stanza";
local jid_split = require "util.jid".split;
local usermanager = require "core.usermanager";

local database_path = module:get_option_path("xmpp_hosting_database", "xmpp_hosting.sqlite", "data");
-- Seconds a store call on the server's event loop may wait for another process's write lock (the
-- CLI, ejabberd, a backup) before it fails: every session waits with it. Writes that can wait
-- longer run on the core's worker (call_off_loop). prosodyctl waits the core's default (2 s).
local loop_busy_timeout = module:get_option_number("xmpp_hosting_busy_timeout", 0.25);
-- Seconds a store write made on the core's worker waits for another process's write lock before
-- it fails (the core checks the value: 0.1 to 3600; unset, the core's 10). A write someone waits
-- for (an admin command, a registration) fails then with an error that says so; one nobody
-- waits for (a removed account forgotten, a login counted, a directory or an archive registered)
-- is tried again by the worker after longer and longer pauses (8 tries; with the 10 s wait,
-- over about three minutes) and only then logged as failed.
local store_lock_timeout = module:get_option_number("xmpp_hosting_store_lock_timeout");

-- Opened on first use, not at load: prosodyctl loads modules for commands that may never
-- touch the store, and a broken path should fail the command that needs it, loudly.
local store;
function get_store() -- luacheck: ignore 131 (exported to dependent modules)
	if not store then
		local err, code;
		local options = { lock_timeout = store_lock_timeout };
		if prosody.process_type == "prosody" then options.busy_timeout = loop_busy_timeout; end
		store, err, code = xh.open(database_path, options);
		if not store then
			module:log("error", "Cannot open the xmpp-hosting store %s: %s (%s)", database_path, err, code);
			return nil, err, code;
		end
		module:log("info", "xmpp-hosting %s: store %s", xh.version(), database_path);
	end
	return store;
end

-- Waits for a result computed on the core's worker thread (DNS) without blocking the event loop:
-- the loop watches the result's descriptor and wakes this runner when it is readable. Works in
-- the server (admin shell) and in prosodyctl, whose commands both run in util.async runners. A
-- `*_or_later` method's answer given at once (not a pending userdata) is returned as it is.
local function await(pending, err, code)
	if type(pending) ~= "userdata" then return pending, err, code; end
	if not pending:ready() then
		local wait, done = async.waiter();
		local watch = server.watchfd(pending:getfd(), function()
			if pending:ready() then done(); end
		end);
		wait();
		watch:close();
	end
	return pending:result();
end

-- For the other xmpp-hosting modules, where nothing waits for the answer: runs
-- `callback(value, err, code)` with a `*_or_later` method's answer, at once when it was given at
-- once, else on the loop once the core's worker has it (another process held the store's lock).
function when_done(result, err, code, callback) -- luacheck: ignore 131 (exported to dependent modules)
	if type(result) ~= "userdata" then return callback(result, err, code); end
	local watch;
	watch = server.watchfd(result:getfd(), function()
		if result:ready() and watch then
			watch:close();
			watch = nil;
			callback(result:result());
		end
	end);
end

-- For the other xmpp-hosting modules, in a runner (a stanza or HTTP handler, an admin command): a
-- `*_or_later` method's answer, waited for without blocking the loop.
function wait_for(result, err, code) -- luacheck: ignore 131 (exported to dependent modules)
	return await(result, err, code);
end

-- For the other xmpp-hosting modules: a store call made with a `*_later` method, waited for
-- without blocking the loop when the caller runs in a runner (stanza handlers do), else the
-- plain call on the loop. `store:begin_registration_later(...)` pairs with `begin_registration`.
function call_off_loop(store, method, ...) -- luacheck: ignore 131 (exported to dependent modules)
	if async.ready() then
		return await(store[method .. "_later"](store, ...));
	end
	return store[method](store, ...);
end

-- Housekeeping: ONE timer runs the core's housekeeping pass (store checkpoint, re-checks of
-- customers' domains, invite purge, upload-ledger upkeep). The core decides what is due, runs it
-- on its worker and hands back a finished report: log lines, notices for the admins, and when to
-- come back. This file only delivers it. The options below change the core's schedule (seconds);
-- unset, the core's defaults apply.
local schedule_options = {
	checkpoint = "xmpp_hosting_checkpoint_interval",
	domain_recheck = "xmpp_hosting_recheck_interval",
	invite_purge = "xmpp_hosting_purge_interval",
	upload_upkeep = "xmpp_hosting_upload_sweep_interval",
	certificates = "xmpp_hosting_certificates_interval",
	retention = "xmpp_hosting_retention_interval",
};

-- Upload directories the pass sweeps for deleted files, registered by mod_xmpp_hosting_uploads
-- on each upload component (root -> that component's xmpp_hosting_upload_sweep_interval or false).
local upload_roots = {};
local housekeeping, housekeeping_stopped;

function add_upload_root(root, sweep_interval) -- luacheck: ignore 131 (exported to dependent modules)
	upload_roots[root] = sweep_interval or false;
	housekeeping = nil; -- made again with the new schedule at the next pass
end

function remove_upload_root(root) -- luacheck: ignore 131 (exported to dependent modules)
	upload_roots[root] = nil;
	housekeeping = nil;
end

local function get_housekeeping(s)
	if housekeeping then return housekeeping; end
	local overrides = {};
	for step, option in pairs(schedule_options) do overrides[step] = module:get_option_number(option); end
	-- A component's own sweep interval applies when the global option is unset.
	for _, interval in pairs(upload_roots) do
		if interval and not module:get_option_number(schedule_options.upload_upkeep) then
			overrides.upload_upkeep = math.min(overrides.upload_upkeep or interval, interval);
		end
	end
	local err;
	housekeeping, err = s:housekeeping(overrides);
	if not housekeeping then module:log("error", "Housekeeping cannot start: %s", err); end
	-- Its certificate step keeps xmpp_hosting_certificates equal to the store (issue 14).
	if housekeeping then housekeeping:install_certificates_into(certs.directory(module), "prosody"); end
	return housekeeping;
end

-- Sends a notice of the report to the people the core named: `admins` (the global option), each
-- from their own host (this module is global and has no host to send from); `owner`, the
-- domain's owner, from that domain when this server hosts it, else from the owner's own host.
local function deliver(notice)
	if notice.to == "admins" then
		for _, admin in ipairs(server_lib.admin_jids(server_api)) do
			local _, host = jid_split(admin);
			module:context(host):send(st.message({ to = admin, from = host, type = "chat" }):text_tag("body", notice.text));
		end
	elseif notice.to == "owner" then
		local node, host = jid_split(notice.account);
		local from = prosody.hosts[notice.domain] and notice.domain or (node and prosody.hosts[host] and host);
		if from then
			module:context(from):send(st.message({ to = notice.account, from = from, type = "chat" }):text_tag("body", notice.text));
		else
			module:log("info", "No local host to tell %s: %s", tostring(notice.account), notice.text);
		end
		return; -- the admins' copy already fired the event
	end
	module:fire_event("xmpp-hosting/" .. notice.event, { notice = notice });
end

-- Registrations that never finished, answered from Prosody's own account store (only for the
-- hosts this server serves: another server's accounts are not ours to vouch for).
local function account_answers(hk)
	local stale, err = hk:stale_registrations();
	if not stale then
		module:log("warn", "Cannot list unfinished registrations: %s", err);
		return {};
	end
	local answers = {};
	for _, r in ipairs(stale) do
		if prosody.hosts[r.domain] and prosody.hosts[r.domain].users then
			answers[#answers + 1] = { id = r.id, account_exists = usermanager.user_exists(r.username, r.domain) };
		end
	end
	return answers;
end

-- Runs `f(...)` and logs its error instead of passing it on: an error in one part of the
-- report's handling (a module's event handler, a certificate reload, a notice) must neither stop
-- the other parts nor the timer, or housekeeping would silently stop for good.
local function guarded(what, f, ...)
	local ok, err = pcall(f, ...);
	if not ok then module:log("error", "Housekeeping: %s failed: %s", what, tostring(err)); end
	return ok;
end

local function use_report(report)
	for _, line in ipairs(report.log) do module:log(line.level, "%s", line.text); end
	for _, notice in ipairs(report.notices) do guarded("delivering a notice", deliver, notice); end
	local installed = report.certificates and report.certificates.installed;
	if installed and (#installed.installed > 0 or #installed.removed > 0) then
		guarded("reloading certificates", certs.reload, module);
	end
	-- Archives only the server may change (internal storage): mod_xmpp_hosting_retention runs them.
	for _, due in ipairs(report.retention_due or {}) do
		guarded(("the retention of %s %s"):format(tostring(due.domain), tostring(due.kind)),
			module.fire_event, module, "xmpp-hosting/retention-due", due);
	end
end

local housekeep;

-- Starts one pass; returns when to try again when none was started (else the pass's report
-- schedules the next, so passes never overlap).
local function start_pass()
	local s = get_store();
	local hk = s and get_housekeeping(s);
	if not hk then return 60; end
	local roots = {};
	for root in pairs(upload_roots) do roots[#roots + 1] = root; end
	local pending, err = hk:run(roots, account_answers(hk));
	if not pending then
		module:log("warn", "Housekeeping failed to start: %s", err);
		return 60;
	end
	local watch;
	watch = server.watchfd(pending:getfd(), function()
		if not (watch and pending:ready()) then return; end
		watch:close();
		watch = nil;
		local next_in = 60;
		guarded("handling the pass's report", function()
			local report, report_err = pending:result();
			if not report then
				module:log("warn", "Housekeeping failed: %s", report_err);
				return;
			end
			-- The core's schedule stands even when a part of the handling fails: that part is logged.
			next_in = report.next_in or 60;
			use_report(report);
		end);
		if not housekeeping_stopped then module:add_timer(next_in, housekeep); end
	end);
	return nil;
end

-- One pass; a pass that cannot start (an error included) is tried again in a minute.
housekeep = function()
	if housekeeping_stopped then return; end
	local ok, delay = pcall(start_pass);
	if not ok then
		module:log("error", "Housekeeping pass failed: %s", tostring(delay));
		return 60;
	end
	return delay;
end

function module.load()
	if prosody.process_type ~= "prosody" then return; end
	-- Open at start in the server so a broken store shows in the log right away.
	get_store();
	certs.reindex_before_tls(module);
	-- The first pass waits a moment, for the hosts and upload components to load.
	module:add_timer(1, housekeep);
end

-- An account removed inside the server (in-band by its user, in the admin shell, by an ad-hoc
-- command) leaves nothing acting in its name: its invites are revoked and its upload exceptions
-- dropped, so a later account of the same name inherits neither. (prosodyctl deluser runs in
-- its own process, which does not load this module: `xmpp-hosting account removed` there.)
-- Never waits on the loop for another process's lock on the store: while one is held, the core's
-- worker does it once the lock is free.
module:hook_global("user-deleted", function(event)
	local username, host = event.username, event.host;
	local s, err = get_store();
	local removed, code;
	if s then removed, err, code = s:account_removed_or_later(host, username); end
	if type(removed) == "userdata" then
		module:log("debug", "The store is locked by another process: removed account %s@%s is forgotten once it is free",
			username, host);
	end
	when_done(removed, err, code, function(done, done_err)
		if not done then
			module:log("error", "Cannot forget removed account %s@%s: %s", username, host, tostring(done_err));
		elseif done.invites_revoked > 0 or done.upload_limits_cleared then
			module:log("info", "Account %s@%s removed: %d invite(s) revoked%s", username, host,
				done.invites_revoked, done.upload_limits_cleared and ", upload exceptions dropped" or "");
		end
	end);
end);

-- Admin commands, shared by prosodyctl and the admin shell. Each returns ok, text. (The cert
-- group lives in xmpp_hosting_certs.lib.lua.)

-- An admin command's store write (`method` names the plain call; its `_or_later` variant is
-- made): tried at once without waiting for any lock; while another process (the CLI, ejabberd,
-- a backup) holds the store's write lock, the core's worker makes it once the lock is free and
-- the command's runner (the admin shell's, prosodyctl's) waits for that. The server's loop never
-- waits for the lock, and the command is not failed by the loop's short busy timeout.
local function write(s, method, ...)
	local answer, err, code = s[method .. "_or_later"](s, ...);
	if type(answer) == "userdata" then
		module:log("debug", "The store is locked by another process: %s is made once it is free", method);
	end
	return await(answer, err, code);
end

local function format_domain(d)
	local name = d.name;
	if d.unicode_name ~= d.name then
		name = ("%s (%s)"):format(d.name, d.unicode_name);
	end
	return ("%s  registration=%s"):format(name, d.settings.registration.policy);
end

local domain_commands = {};

function domain_commands.add(s, name)
	local d, err = write(s, "add_domain", name);
	if not d then return false, err; end
	return true, "Added " .. format_domain(d);
end

function domain_commands.list(s)
	local list, err = s:domains();
	if not list then return false, err; end
	local lines = {};
	for _, d in ipairs(list) do lines[#lines + 1] = format_domain(d); end
	lines[#lines + 1] = ("%d domain(s)"):format(#list);
	return true, table.concat(lines, "\n");
end

function domain_commands.show(s, name)
	local d, err = s:domain(name);
	if err then return false, err; end
	if not d then return false, "Domain not hosted: " .. name; end
	local r = d.settings.registration;
	return true, table.concat({
		format_domain(d),
		("  owner: %s"):format(d.settings.owner or "-"),
		("  users may invite: %s"):format(tostring(r.users_may_invite)),
		("  added: %s"):format(os.date("!%Y-%m-%d %H:%M UTC", d.created_at)),
	}, "\n");
end

function domain_commands.set(s, name, setting, value)
	if not setting or not value then return false, "Usage: domain set NAME SETTING VALUE"; end
	local d, err = write(s, "set_domain_setting", name, setting, value);
	if not d then return false, err; end
	return true, ("%s: %s = %s"):format(d.name, setting, value);
end

function domain_commands.remove(s, name)
	local ok, err = write(s, "remove_domain", name);
	if not ok then return false, err; end
	return true, "Removed " .. name;
end

function domain_commands.claim(s, name, account)
	if not account then return false, "Usage: domain claim NAME ACCOUNT"; end
	local c, err = write(s, "claim_domain", name, account);
	if not c then return false, err; end
	return true, c.text;
end

function domain_commands.verify(s, name, account)
	if not account then return false, "Usage: domain verify NAME ACCOUNT"; end
	local c, err = await(s:verify_domain(name, account));
	if not c then return false, err; end
	return true, c.text;
end

-- Checks every claim now (bounded concurrency on the core's worker); the core sums up the states.
function domain_commands.verify_all(s)
	local summary, verify_err = await(s:verify_all_claims());
	if not summary then return false, verify_err; end
	return true, summary.text;
end

function domain_commands.claims(s, name)
	local list, err = s:claims(name);
	if not list then return false, err; end
	local lines = {};
	for _, c in ipairs(list) do lines[#lines + 1] = c.text; end
	lines[#lines + 1] = ("%d claim(s)"):format(#list);
	return true, table.concat(lines, "\n");
end

local dns_commands = {};

function dns_commands.check(s, name)
	local report, err = await(s:dns_test(name));
	if not report then return false, err; end
	local lines = {};
	for _, row in ipairs(report.rows) do
		local found = row.problem and ("DNS error: " .. tostring(row.problem.kind)) or table.concat(row.found, ", ");
		lines[#lines + 1] = ("%-40s %-5s %-7s expected %s, found %s"):format(row.name, row.type, row.status,
			row.expected, found ~= "" and found or "nothing");
	end
	return true, table.concat(lines, "\n");
end

-- The DNS tester for every claimed domain, summed up by the core.
function dns_commands.check_all(s)
	local summary, test_err = await(s:dns_test_all_claims());
	if not summary then return false, test_err; end
	return true, summary.text;
end

local function format_time(t)
	return t and os.date("!%Y-%m-%d %H:%M UTC", t) or "never";
end

local invite_commands = {};

-- spec: the options as typed on prosodyctl ({"--uses", "3", ...}, read and checked by the core),
-- or a table of fields from the admin shell (invite_create("example.org", {uses = 3})).
function invite_commands.create(s, domain, spec)
	spec = spec or {};
	local created, err;
	if spec[1] ~= nil or next(spec) == nil then
		created, err = write(s, "create_invite_from_options", domain, spec);
	else
		spec.domain = domain;
		created, err = write(s, "create_invite", spec);
	end
	if not created then return false, err; end
	local lines = {
		("Invite %d created on %s (%d use(s), expires %s)"):format(created.invite.id, created.invite.domain,
			created.invite.uses_total, format_time(created.invite.expires_at)),
		"URI: " .. created.uri,
	};
	if created.landing_url then lines[#lines + 1] = "Link: " .. created.landing_url; end
	return true, table.concat(lines, "\n");
end

-- Each line, status included, is the core's: the same on ejabberdctl and the CLI.
function invite_commands.list(s, domain)
	local list, err = s:invites(domain);
	if not list then return false, err; end
	local lines = {};
	for _, i in ipairs(list) do lines[#lines + 1] = i.line; end
	lines[#lines + 1] = ("%d invite(s)"):format(#list);
	return true, table.concat(lines, "\n");
end

-- The id as typed: the core refuses "1.5" or "x" in words.
function invite_commands.revoke(s, domain, id)
	if id == nil then return false, "Usage: invite revoke DOMAIN ID"; end
	local invite, err = write(s, "revoke_invite", domain, id);
	if not invite then return false, err; end
	return true, ("Revoked invite %d"):format(invite.id);
end

-- Inside the server, registrations that never finished are settled first by this server's
-- account store (a use is never given back for an account that exists); the purge itself runs
-- on the core's worker, so thousands of invites do not stall the loop. Settling never waits on
-- the loop for another process's lock: while one is held, the core's worker settles them once
-- it is free, and the shell's runner waits for that.
function invite_commands.purge(s)
	local settled = 0;
	if prosody.process_type == "prosody" then
		local answers = account_answers(s);
		if #answers > 0 then
			local n, err, code = s:settle_stale_registrations_or_later(answers);
			if type(n) == "userdata" then
				module:log("debug", "The store is locked by another process: %d registration(s) that never finished are settled once it is free",
					#answers);
			end
			n, err = await(n, err, code);
			if not n then return false, err; end
			settled = n;
		end
	end
	local report, err = await(s:start_purge_invites());
	if not report then return false, err; end
	local text = ("Removed %d invite(s)"):format(report.invites_removed);
	if settled > 0 then
		text = text .. ("; settled %d registration(s) that never finished"):format(settled);
	end
	if report.registrations_unsettled > 0 then
		text = text .. ("; %d registration(s) that never finished wait for their server"):format(report.registrations_unsettled);
	end
	return true, text;
end

local quota_commands = {};

-- The limits that apply and what is used, in the core's words (scope first; for a domain also
-- the limits each user has by default, for a user their exceptions).
function quota_commands.show(s, domain, username)
	local text, err = s:describe_upload_quota(domain, username);
	if not text then return false, err; end
	return true, text;
end

-- A domain's limit (user_daily, domain_storage, max_file_size, …) or, with a user, that user's
-- exception (max_file_size, storage, daily, weekly, monthly); bytes, or null to remove it.
function quota_commands.set(s, domain, limit, value, username)
	if not limit or not value then return false, "Usage: quota set DOMAIN LIMIT VALUE [--user USER]"; end
	local report, err = write(s, "set_upload_limit", domain, username, limit, value);
	if not report then return false, err; end
	return true, ("%s: %s = %s"):format(username and (username .. "@" .. domain) or domain, limit, value);
end

function quota_commands.clear(s, domain, username)
	if not username then return false, "Usage: quota clear DOMAIN USER"; end
	local ok, err = write(s, "clear_user_upload_limits", domain, username);
	if not ok then return false, err; end
	return true, ("%s@%s: exceptions removed, the domain's limits apply"):format(username, domain);
end

-- Recounts storage from the files and open slots the ledger holds (on the core's worker: seconds
-- for a million files); --repair corrects the running totals that differ.
function quota_commands.audit(s, repair)
	local audit, err = await(s:start_upload_audit(repair == "--repair"));
	if not audit then return false, err; end
	return true, audit.text;
end

-- Retention (issue 13): the policy, the sweeps and their log, in the core's words.
local retention_commands = {};

function retention_commands.show(s, domain, username)
	if username then
		local period, err = s:user_archive_retention(domain, username);
		if not period then return false, err; end
		return true, ("%s@%s: archive kept for %s"):format(username, domain, period);
	end
	local text, err = s:describe_retention(domain);
	if not text then return false, err; end
	return true, ("%s: %s"):format(domain, text);
end

-- archive | muc | uploads | backups, a period as written ("30d", "1w", seconds, "never"); with a
-- user, that user's own archive ("default": back to the domain's).
function retention_commands.set(s, domain, what, value, username)
	if not what or not value then return false, "Usage: retention set DOMAIN WHAT PERIOD [--user USER]"; end
	if username then
		if what ~= "archive" then return false, "a user chooses only their own archive's retention"; end
		local period, err = write(s, "set_user_archive_retention", domain, username, value ~= "default" and value or nil);
		if not period then return false, err; end
		return true, ("%s@%s: archive kept for %s"):format(username, domain, period);
	end
	local ok, err = write(s, "set_retention", domain, what, value);
	if not ok then return false, err; end
	local text = s:describe_retention(domain);
	return true, ("%s: %s; takes effect at the next sweep"):format(domain, text);
end

-- On the core's worker; uploads unless --kind says otherwise. Archives in Prosody's internal
-- storage only the running server may change: in the server (admin shell) the sweep is handed to
-- the host's mod_xmpp_hosting_retention, which runs it step by step; prosodyctl says so.
function retention_commands.sweep(s, domain, options)
	local kind, dry_run = "uploads", false;
	local i = 1;
	while options and options[i] do
		if options[i] == "--kind" and options[i + 1] then kind, i = options[i + 1], i + 2;
		elseif options[i] == "--dry-run" then dry_run, i = true, i + 1;
		else return false, "Usage: retention sweep DOMAIN [--kind archive|muc|uploads] [--dry-run]"; end
	end
	local pending, err = s:start_retention_sweep(domain, kind, { dry_run = dry_run });
	if not pending then return false, err; end
	local record, sweep_err, code = await(pending);
	if not record then
		if code == "not-allowed" and prosody.process_type == "prosody" then
			local started = prosody.events.fire_event("xmpp-hosting/retention-sweep-now",
				{ domain = domain, kind = kind, dry_run = dry_run });
			if started then
				return true, ("%s #%d of the %s of %s runs in the server: see retention log"):format(
					dry_run and "Dry run" or "Sweep", started, kind, domain);
			end
		end
		return false, sweep_err;
	end
	return record.failed == 0, record.text;
end

function retention_commands.log(s, domain)
	local text, err = s:describe_retention_log(domain, 20);
	if not text then return false, err; end
	return true, text;
end

local cert_commands = certs.commands(module, await, write);

local groups = {
	cert = { commands = cert_commands, arg = "DOMAIN",
		needs_arg = { generate = true, show = true, csr = true, import = true, posh = true } },
	domain = { commands = domain_commands, arg = "NAME",
		needs_arg = { add = true, show = true, remove = true, set = true, claim = true, verify = true } },
	invite = { commands = invite_commands, needs_arg = { create = true, list = true, revoke = true }, arg = "DOMAIN" },
	dns = { commands = dns_commands, needs_arg = { check = true }, arg = "DOMAIN" },
	quota = { commands = quota_commands, needs_arg = { show = true, set = true, clear = true }, arg = "DOMAIN" },
	retention = { commands = retention_commands, needs_arg = { show = true, set = true, sweep = true }, arg = "DOMAIN" },
};

local function run_command(group_name, verb, ...)
	local group = groups[group_name];
	local command = group and group.commands[verb];
	if not command then
		return false, ("Unknown command: %s %s"):format(tostring(group_name), tostring(verb));
	end
	if group.needs_arg[verb] and type((...)) ~= "string" then
		return false, ("Usage: %s %s %s"):format(group_name, verb, group.arg);
	end
	local s, err = get_store();
	if not s then return false, err; end
	return command(s, ...);
end

local usage = [=[
Usage: prosodyctl mod_xmpp_hosting domain add|list|show|remove [NAME]
       prosodyctl mod_xmpp_hosting domain set NAME SETTING VALUE   (e.g. registration.policy open)
       prosodyctl mod_xmpp_hosting invite create DOMAIN [--uses N] [--kind account|roster|reset]
                  [--username U] [--inviter JID] [--expires-in SECONDS|never] [--note TEXT]
       prosodyctl mod_xmpp_hosting invite list DOMAIN | revoke DOMAIN ID | purge
       prosodyctl mod_xmpp_hosting domain claim|verify NAME ACCOUNT | domain claims [NAME]
       prosodyctl mod_xmpp_hosting dns check NAME
       prosodyctl mod_xmpp_hosting quota show DOMAIN [USER] | clear DOMAIN USER | audit [--repair]
       prosodyctl mod_xmpp_hosting quota set DOMAIN LIMIT BYTES|null [--user USER]
                  (LIMIT: max_file_size, user_storage, domain_storage, user_daily, ..., domain_monthly;
                   with --user: max_file_size, storage, daily, weekly, monthly)
       prosodyctl mod_xmpp_hosting retention show DOMAIN [USER] | log [DOMAIN]
       prosodyctl mod_xmpp_hosting retention set DOMAIN archive|muc|uploads|backups PERIOD [--user USER]
       prosodyctl mod_xmpp_hosting retention sweep DOMAIN [--kind archive|muc|uploads] [--dry-run]
       prosodyctl mod_xmpp_hosting cert generate DOMAIN [--key ecdsa|rsa] [--days N] | show DOMAIN [--pem]
       prosodyctl mod_xmpp_hosting cert csr DOMAIN | import DOMAIN FILE | acme DOMAIN | check | install
       prosodyctl mod_xmpp_hosting cert posh DOMAIN [--service client|server] | posh DOMAIN --check FILE]=];

-- prosodyctl mod_xmpp_hosting …
function module.command(arg)
	local group, verb = arg[1], arg[2];
	if not groups[group] or not verb then
		print(usage);
		return 2;
	end
	local ok, text;
	if group == "invite" and verb == "create" then
		-- The options go to the core as typed ("--uses", "3", ...): it reads and refuses them.
		ok, text = run_command(group, verb, arg[3], { table.unpack(arg, 4) });
	elseif group == "retention" and verb == "sweep" then
		ok, text = run_command(group, verb, arg[3], { table.unpack(arg, 4) });
	elseif group == "cert" then
		ok, text = run_command(group, verb, arg[3], { table.unpack(arg, 4) });
		-- A check's answer is its list, also when it says no (exit 1).
		if not ok and (verb == "check" or verb == "posh") and text and text:find("\n") then
			print(text);
			return 1;
		end
	elseif group == "retention" and verb == "set" and arg[6] ~= nil then
		if arg[6] ~= "--user" or not arg[7] then
			ok, text = false, "Usage: retention set DOMAIN WHAT PERIOD [--user USER]";
		else
			ok, text = run_command(group, verb, arg[3], arg[4], arg[5], arg[7]);
		end
	elseif group == "quota" and verb == "set" and arg[6] ~= nil then
		if arg[6] ~= "--user" or not arg[7] then
			ok, text = false, "Usage: quota set DOMAIN LIMIT VALUE [--user USER]";
		else
			ok, text = run_command(group, verb, arg[3], arg[4], arg[5], arg[7]);
		end
	else
		ok, text = run_command(group, verb, arg[3], arg[4], arg[5]);
	end
	if not ok then
		io.stderr:write("Error: ", tostring(text), "\n");
		return 1;
	end
	print(text);
	return 0;
end

-- prosodyctl shell: xmpp_hosting:domain_add("example.org"), xmpp_hosting:invite_create("example.org", {uses = 3}) …
local shell_env = module:shared("/*/admin_shell/env");
shell_env.xmpp_hosting = {};
for group_name, group in pairs(groups) do
	for verb in pairs(group.commands) do
		shell_env.xmpp_hosting[group_name .. "_" .. verb] = function(_, ...)
			return run_command(group_name, verb, ...);
		end
	end
end

function module.unload()
	housekeeping_stopped = true;
	shell_env.xmpp_hosting = nil;
end
