-- mod_xmpp_hosting_panel: the customers' web panel, served by Prosody's own HTTP.
--
-- Load it on one VirtualHost (with mod_xmpp_hosting in the global modules_enabled); the panel is
-- at /panel on that host's HTTP (move it with http_paths = { xmpp_hosting_panel = "/..." }).
-- Customers log in with their XMPP address (an account on any host of this server) and see only
-- their own domains; the admins of the server see every domain.
--
-- This module only converts: the core's router (the pages, the JSON API, sessions, CSRF, login
-- throttling, who may see what) answers every request. The one thing done here is the password
-- check, by Prosody's own authentication (usermanager.test_password): the core never sees a
-- stored password. HTTP handlers run in util.async runners, so an auth provider that waits
-- (SQL, LDAP, an external service) waits without blocking the loop, and so does a request that
-- meets another process's lock on the store (the core's worker answers it once it is free);
-- internal_hashed computes its PBKDF2 on the loop, a few milliseconds per login, which login
-- throttling bounds.
--
-- The users page works the same way: the core decides who may create, re-password or delete
-- which account (the same decision as mod_xmpp_hosting_users' ad-hoc commands) and hands this
-- module the change to carry out through Prosody's own account API (usermanager, as
-- mod_xmpp_hosting_users and prosodyctl do), then says what to answer.

local usermanager = require "core.usermanager";

local xmpp_hosting = module:depends("xmpp_hosting");
local server_lib = module:require("xmpp_hosting_server");

local APP = "xmpp_hosting_panel";
local DEFAULT_PATH = "/panel";

-- A `*_or_later` answer; HTTP handlers run in util.async runners, which wait without blocking the loop.
local function wait(answer, err, code)
	if type(answer) == "userdata" then
		module:log("debug", "The store is locked by another process: the panel request is answered once it is free");
	end
	return xmpp_hosting.wait_for(answer, err, code);
end

local panel;
local function get_panel()
	if panel then return panel; end
	local store, err, code = xmpp_hosting.get_store();
	if not store then return nil, err, code; end
	local url = module:http_url(APP, DEFAULT_PATH);
	local base = url:match("^%a+://[^/]+(/.*)$") or DEFAULT_PATH;
	panel, err, code = store:panel({ base = base });
	return panel, err, code;
end

local function is_admin(jid)
	local generation = server_lib.detect();
	if not generation then return false; end
	for _, admin in ipairs(server_lib.admin_jids(generation)) do
		if admin == jid then return true; end
	end
	return false;
end

-- The server's verdict on a login's password; an address on a host this server does not serve is
-- a wrong password like any other (and counted as one). So is one on a component (an upload or
-- group chat service): its host has no accounts, and no auth provider to ask.
local function check_password(c)
	local h = prosody.hosts[c.host];
	if not (h and h.type == "local" and h.users) then return false; end
	local ok = usermanager.test_password(c.username, c.host, c.password);
	return ok == true;
end

-- An account change the core allowed, carried out on the domain's VirtualHost; what happened
-- goes back to the core, which words the answer. The password is used here and nowhere logged.
local function carry_out(task)
	local host = task.host;
	local h = prosody.hosts[host];
	if not (h and h.type == "local") then return { not_served = true }; end
	if task.action == "list" then
		-- Not every auth provider can list its accounts (usermanager.users returns nil then).
		-- It is a generic for's triple: the internal providers' iterator needs its state.
		local ok, iter, state, control = pcall(usermanager.users, host);
		if not (ok and iter) then
			return { error = "this server's authentication cannot list its accounts" };
		end
		local usernames = {};
		for username in iter, state, control do usernames[#usernames + 1] = username; end
		return { usernames = usernames };
	end
	local existed = usermanager.user_exists(task.username, host) and true or false;
	if (task.require == "absent" and existed) or (task.require == "present" and not existed) then
		return { existed = existed };
	end
	local ok, err;
	if task.action == "create" then
		ok, err = usermanager.create_user(task.username, task.password, host);
		-- What mod_xmpp_hosting_users announces too (the shared roster adds the new account).
		if ok then h.events.fire_event("xmpp-hosting/account-created", { username = task.username, host = host }); end
	elseif task.action == "password" then
		ok, err = usermanager.set_password(task.username, task.password, host, nil);
	elseif task.action == "delete" then
		ok, err = usermanager.delete_user(task.username, host);
	else
		err = "unknown action";
	end
	if ok then
		module:log("info", "Panel: %s of %s@%s done", task.action, task.username, host);
	else
		module:log("warn", "Panel: %s of %s@%s failed: %s", task.action, task.username, host, tostring(err));
	end
	return { existed = existed, done = ok and true or false, error = (not ok) and tostring(err) or nil };
end

local function serve(event, path)
	local request, response = event.request, event.response;
	local p, err, code = get_panel();
	if not p then
		module:log("error", "The panel cannot open the store: %s (%s)", tostring(err), tostring(code));
		return 500;
	end
	local headers = request.headers;
	local answer;
	-- Answered at once, or (while another process holds the store's write lock) by the core's
	-- worker once it is free: this handler's runner waits for that, the loop does not.
	answer, err, code = wait(p:handle_or_later({
		method = request.method;
		path = "/" .. (path or "");
		cookie = headers.cookie;
		csrf = headers.x_csrf_token;
		content_type = headers.content_type;
		body = request.body or "";
		address = request.ip or "";
		tls = request.secure and true or false;
	}));
	if answer and answer.check_password then
		local c = answer.check_password;
		local ok = check_password(c);
		answer, err, code = wait(p:finish_login_or_later(c.ticket, ok, ok and is_admin(c.username .. "@" .. c.host)));
	elseif answer and answer.account then
		answer, err, code = p:finish_account(answer.account.ticket, carry_out(answer.account));
	end
	if not answer then
		module:log("warn", "Panel request refused: %s (%s)", tostring(err), tostring(code));
		return code == "invalid-argument" and 400 or 500;
	end
	for name, value in pairs(answer.headers) do
		response.headers[name:gsub("-", "_")] = value;
	end
	response.status_code = answer.status;
	return answer.body;
end

if prosody.process_type == "prosody" and module.host ~= "*" then
	module:depends("http");
	module:provides("http", {
		name = APP;
		default_path = DEFAULT_PATH;
		route = {
			-- The base without its slash: send the browser to the page (its links are relative).
			GET = function(event)
				event.response.headers.location = event.request.path .. "/";
				return 301;
			end;
			["GET /*"] = serve;
			["POST /*"] = serve;
		};
	});
end
