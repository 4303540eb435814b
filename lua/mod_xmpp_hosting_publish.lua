-- mod_xmpp_hosting_publish: what a hosted domain publishes, from the settings it enforces.
--
-- Load it on a VirtualHost (with mod_xmpp_hosting in the global modules_enabled). It serves,
-- over Prosody's own HTTP (mod_http, on the host's http_host):
--   /.well-known/xmpp-provider-v2.json   the XMPP Providers provider file, version 2
--   /policy                              the policy page (HTML, for phones)
--   /policy/json                         the same content as JSON, for web portals
-- (move them with http_paths = { xmpp_provider_file = ..., xmpp_hosting_policy = ... }), and adds
-- to the host's disco#info the XEP-0157 contact addresses and the policy as XEP-0128 forms:
-- do not set contact_info / server_info or load mod_server_contact_info as well.
--
-- Every answer is computed by the core from the store on the request that asks, so a changed
-- retention, upload limit or registration policy is published by the next request. The page
-- promises that an account can be deleted in-band (XEP-0077 <remove/>) even while registration
-- is closed: this module loads mod_user_account_management, which answers it, whatever
-- allow_registration says.
--
-- New accounts registered in-band get the domain's support room as a bookmark (XEP-0402, through
-- mod_pep).
--
-- Admin commands: prosodyctl mod_xmpp_hosting_publish show|set|provider-file|page|disco DOMAIN ...

local st = require "util.stanza";
local usermanager = require "core.usermanager";

local xmpp_hosting = module:depends("xmpp_hosting");
local get_store = xmpp_hosting.get_store;
local host = module.host;

-- Accounts are counted by iterating the host's users: at most once per this many seconds.
local count_every = module:get_option_number("xmpp_hosting_publish_count_interval", 3600);

if prosody.process_type == "prosody" and host ~= "*" then
	module:depends("http");
	module:depends("disco");
	module:depends("user_account_management");
end

local counted, counted_at;
local function accounts()
	local now = os.time();
	if counted_at and now - counted_at < count_every then return counted; end
	-- The storage backend's own listing; it may fail (internal storage raises when the host has
	-- no accounts directory yet): then there is no count to show, not a broken page.
	local ok, n = pcall(function()
		if not usermanager.users then return nil; end
		local count = 0;
		for _ in usermanager.users(host) do count = count + 1; end
		return count;
	end);
	if not ok then
		module:log("debug", "Cannot count the accounts of %s: %s", host, tostring(n));
		n = nil;
	end
	counted, counted_at = n, now;
	return n;
end

local function failed(event, err, code)
	module:log(code == "not-found" and "debug" or "error", "Cannot publish %s: %s", host, tostring(err));
	event.response.headers.content_type = "text/plain; charset=utf-8";
	return code == "not-found" and 404 or 500;
end

local function serve(event, method, content_type, ...)
	local store, err, code = get_store();
	local body;
	if store then body, err, code = store[method](store, host, ...); end
	if not body then return failed(event, err, code); end
	local headers = event.response.headers;
	headers.content_type = content_type;
	headers.cache_control = "no-cache";
	headers.x_content_type_options = "nosniff";
	return body;
end

local function reader_language(event)
	return event.request.headers.accept_language or "";
end

if prosody.process_type == "prosody" and host ~= "*" then
	module:provides("http", {
		name = "xmpp_provider_file";
		default_path = "/.well-known/xmpp-provider-v2.json";
		-- Fetched by other sites' scripts (the providers list, clients on the web).
		cors = { enabled = true; origins = { "*" } };
		route = {
			GET = function(event) return serve(event, "provider_file", "application/json"); end;
		};
	});
	module:provides("http", {
		name = "xmpp_hosting_policy";
		default_path = "/policy";
		route = {
			GET = function(event)
				local page = serve(event, "policy_page", "text/html; charset=utf-8", reader_language(event), { accounts = accounts() });
				-- The page loads nothing from anywhere; say so to the browser too.
				event.response.headers.content_security_policy = "default-src 'none'; style-src 'unsafe-inline'";
				return page;
			end;
			["GET /json"] = function(event)
				return serve(event, "policy_json", "application/json", reader_language(event), { accounts = accounts() });
			end;
		};
	});

	-- disco#info: the forms are kept as host items (what mod_disco answers from) and brought up
	-- to date from the store before each query to the host is answered.
	local current, current_text = {}, nil;
	local function refresh()
		local store = get_store();
		local forms, err;
		if store then forms, err = store:disco_forms(host); end
		if not forms then
			if store then module:log("error", "Cannot read what %s publishes: %s", host, tostring(err)); end
			return;
		end
		local built, texts = {}, {};
		for _, form in ipairs(forms) do
			local x = st.stanza("x", { xmlns = "jabber:x:data", type = "result" })
				:tag("field", { var = "FORM_TYPE", type = "hidden" }):text_tag("value", form.form_type):up();
			for _, field in ipairs(form.fields) do
				x:tag("field", { var = field.var });
				for _, value in ipairs(field.values) do x:text_tag("value", value); end
				x:up();
			end
			built[#built + 1] = x;
			texts[#texts + 1] = tostring(x);
		end
		local text = table.concat(texts);
		if text == current_text then return; end
		for _, x in ipairs(current) do module:remove_item("extension", x); end
		for _, x in ipairs(built) do module:add_item("extension", x); end
		current, current_text = built, text;
	end
	module:hook("iq-get/host/http://jabber.org/protocol/disco#info:query", function() refresh(); end, 10);
	module:hook_global("server-started", refresh);
	-- The host is hosted by the module that gates its registration (mod_xmpp_hosting_invites)
	-- or by `xmpp-hosting domain add`; a host the store does not know publishes nothing (404).
	function module.load() if prosody.start_time then refresh(); end end
end

-- Logins, for the daily and monthly active accounts on the page: one short write by key (at
-- most one an hour per account; a login within the hour only reads), only the core's digest of
-- the name is stored. It never waits on the loop for another process's lock on the store: while
-- one is held, the core's worker counts the login once it is free, and the login goes on.
if prosody.process_type == "prosody" and host ~= "*" then
	local when_done = xmpp_hosting.when_done;
	module:hook("resource-bind", function(event)
		local username = event.session.username;
		local store = get_store();
		if not store then return; end
		local counted, err, code = store:record_activity_or_later(host, username);
		if type(counted) == "userdata" then
			module:log("debug", "The store is locked by another process: the login of %s@%s is counted once it is free",
				tostring(username), host);
		end
		when_done(counted, err, code, function(ok, late_err)
			if not ok then
				module:log("warn", "Cannot count the login of %s@%s: %s", tostring(username), host, tostring(late_err));
			else
				module:log("debug", "Login of %s@%s counted", tostring(username), host);
			end
		end);
	end);
end

-- The support room (publication.support_room) as a bookmark (XEP-0402) of each account that
-- registers in-band, joined automatically, so new users find help without looking for it.
if prosody.process_type == "prosody" and host ~= "*" then
	local pep = module:depends("pep");
	local bookmark_options = {
		persist_items = true; max_items = "max"; send_last_published_item = "never"; access_model = "whitelist";
	};
	module:hook("user-registered", function(event)
		local store = get_store();
		local bookmark, err = nil, "no store";
		if store then bookmark, err = store:support_bookmark(host); end
		if not bookmark then
			if err then module:log("error", "No support bookmark for %s@%s: %s", event.username, host, tostring(err)); end
			return;
		end
		local item = st.stanza("item", { xmlns = "http://jabber.org/protocol/pubsub", id = bookmark.jid })
			:tag("conference", { xmlns = "urn:xmpp:bookmarks:1", name = bookmark.name,
				autojoin = bookmark.autojoin and "true" or "false" });
		local ok, perr = pep.get_pep_service(event.username):publish("urn:xmpp:bookmarks:1", true, bookmark.jid, item,
			bookmark_options);
		if not ok then
			module:log("error", "Cannot bookmark %s for %s@%s: %s", bookmark.jid, event.username, host, tostring(perr));
		end
	end);
end

-- prosodyctl mod_xmpp_hosting_publish show|set|provider-file|page|disco DOMAIN [FIELD VALUE]
local usage = [[Usage: prosodyctl mod_xmpp_hosting_publish COMMAND DOMAIN ...
  show DOMAIN                 what DOMAIN publishes: its description and what it enforces
  set DOMAIN FIELD VALUE      set one field of the description (JSON or text; null clears);
                              FIELD.LANG for one language (terms.de URL; terms.de null removes it)
  provider-file DOMAIN        the provider file (v2)
  page DOMAIN [LANGUAGE]      the policy page (HTML)
  disco DOMAIN                the forms added to DOMAIN's disco#info]];

function module.command(arg)
	local verb, domain = arg[1], arg[2];
	local store, err = get_store();
	if not store then
		io.stderr:write("Error: ", tostring(err), "\n");
		return 1;
	end
	local out;
	if verb == "show" and domain then
		out, err = store:describe_publication(domain);
	elseif verb == "set" and domain and arg[3] and arg[4] then
		out, err = store:set_publication(domain, arg[3], arg[4]);
		if out then out, err = store:describe_publication(domain); end
	elseif verb == "provider-file" and domain then
		out, err = store:provider_file(domain);
	elseif verb == "page" and domain then
		out, err = store:policy_page(domain, arg[3] or "");
	elseif verb == "disco" and domain then
		local forms;
		forms, err = store:disco_forms(domain);
		if forms then
			local lines = {};
			for _, form in ipairs(forms) do
				lines[#lines + 1] = form.form_type;
				for _, field in ipairs(form.fields) do
					lines[#lines + 1] = "  " .. field.var .. ": " .. table.concat(field.values, ", ");
				end
			end
			out = table.concat(lines, "\n");
		end
	else
		print(usage);
		return 2;
	end
	if not out then
		io.stderr:write("Error: ", tostring(err), "\n");
		return 1;
	end
	print((out:gsub("\n$", "")));
	return 0;
end
