-- mod_xmpp_hosting_users: the domain's owner manages its users over ad-hoc commands (XEP-0050).
--
-- Load it on each VirtualHost (modules_enabled = { "xmpp_hosting_users" }). Commands, sent to
-- the domain itself (its bare host JID), the same nodes as ejabberd's mod_xmpp_hosting_users:
--   urn:xmpp-hosting:users#create        accountjid, password, password-verify
--   urn:xmpp-hosting:users#list          (the domain's accounts)
--   urn:xmpp-hosting:users#password      accountjid, password, password-verify
--   urn:xmpp-hosting:users#delete        accountjid
--   urn:xmpp-hosting:users#registration  policy: open, invite or closed
-- Who may run them (the owner of the domain, i.e. the account whose DNS proof made it theirs,
-- while that claim is not suspended; and the operator's admins), on which accounts (only this
-- domain's) and what the client is told (the result note, or the stanza error) is decided by
-- the core (store:decide_user_command). This file carries the decision out through Prosody's
-- own account API (usermanager), which is also what prosodyctl uses. Operators keep prosodyctl.

local usermanager = require "core.usermanager";
local dataforms = require "util.dataforms";
local jid = require "util.jid";
local st = require "util.stanza";

local hosting_module = module:depends("xmpp_hosting");
local get_store = hosting_module.get_store;
local host = module.host;

local server_api = module:require("xmpp_hosting_server").detect();

module:depends("adhoc");
local new_adhoc = module:require("adhoc").new;

-- The operator's admins: the `admins` option on 0.12, the prosody:admin role on 13.0.
if server_api and server_api.roles then
	module:default_permission("prosody:admin", ":manage-hosted-users");
end

local function operator_admin(from)
	if server_api and server_api.roles then
		return module:may(":manage-hosted-users", from, true) and true or false;
	end
	return usermanager.is_admin(from, host) and true or false;
end

local internal_error = { type = "wait", condition = "internal-server-error", text = "The store cannot be reached" };

-- The core's decision on `action` with `fields` from the form (nil: only whether the sender
-- manages this domain), or the error to answer with.
local function decide(from, action, fields)
	local store = get_store();
	if not store then return nil, internal_error; end
	fields = fields or {};
	local bare = jid.bare(from);
	local d, err = store:decide_user_command({
		domain = host, requester = bare, operator_admin = operator_admin(bare), action = action,
		account = fields.accountjid, password = fields.password, password_verify = fields["password-verify"],
		policy = fields.policy,
	});
	if not d then
		module:log("error", "Cannot decide %s by %s on %s: %s", tostring(action), bare, host, err);
		return nil, internal_error;
	end
	if d.decision ~= "allowed" then return nil, d; end
	return d;
end

local function refuse(e)
	return { status = "error", error = e };
end

local account_form = dataforms.new {
	title = "Account";
	{ name = "FORM_TYPE", type = "hidden", value = "http://jabber.org/protocol/admin" };
	{ name = "accountjid", type = "jid-single", required = true, label = "The account's JID" };
};

local password_form = dataforms.new {
	title = "Account and password";
	{ name = "FORM_TYPE", type = "hidden", value = "http://jabber.org/protocol/admin" };
	{ name = "accountjid", type = "jid-single", required = true, label = "The account's JID" };
	{ name = "password", type = "text-private", required = true, label = "Password" };
	{ name = "password-verify", type = "text-private", required = true, label = "Password again" };
};

local policy_form = dataforms.new {
	title = "Who may register on this domain";
	{ name = "FORM_TYPE", type = "hidden", value = "http://jabber.org/protocol/admin" };
	{ name = "policy", type = "list-single", required = true, label = "Registration",
		options = { { label = "Anyone", value = "open" }, { label = "With an invite", value = "invite" },
			{ label = "Nobody", value = "closed" } } };
};

local list_result = dataforms.new {
	{ name = "FORM_TYPE", type = "hidden", value = "http://jabber.org/protocol/admin" };
	{ name = "accountjids", type = "jid-multi", label = "Accounts" };
};

-- What carries out an allowed action on the account it names, through usermanager.
local perform = {
	create = function(d, fields)
		local ok, err = usermanager.create_user(d.username, fields.password, host);
		if ok then module:fire_event("xmpp-hosting/account-created", { username = d.username, host = host }); end
		return ok, err;
	end;
	password = function(d, fields)
		return usermanager.set_password(d.username, fields.password, host, nil);
	end;
	delete = function(d)
		return usermanager.delete_user(d.username, host);
	end;
};

-- A two-stage command: the form, then the submitted form carried out.
local function form_command(action, form)
	return function(_, data, state)
		if data.action == "cancel" then return { status = "canceled" }; end
		if not state then
			local _, refused = decide(data.from, nil);
			if refused then return refuse(refused); end
			return { status = "executing", actions = { "complete" }, form = form }, "executing";
		end
		local fields, form_err = form:data(data.form);
		if form_err then
			local missing = {};
			for field, why in pairs(form_err) do missing[#missing + 1] = field .. ": " .. why; end
			return refuse({ type = "modify", condition = "bad-request", text = table.concat(missing, "; ") });
		end
		local d, refused = decide(data.from, action, fields);
		if refused then return refuse(refused); end
		if d.username then
			local exists = usermanager.user_exists(d.username, host);
			if exists and d.if_exists then return refuse(d.if_exists); end
			if not exists and d.if_missing then return refuse(d.if_missing); end
		end
		if perform[action] then
			local ok, err = perform[action](d, fields);
			if not ok then
				module:log("error", "%s of %s by %s failed: %s", action, tostring(d.jid), jid.bare(data.from), err);
				return refuse({ type = "wait", condition = "internal-server-error", text = tostring(err) });
			end
		end
		module:log("info", "%s (by %s as %s)", d.done, jid.bare(data.from), d.as);
		return { status = "completed", info = d.done };
	end;
end

local node = "urn:xmpp-hosting:users#";

-- Listed only to those who may run them, as ejabberd's mod_xmpp_hosting_users lists them.
-- Prosody's mod_adhoc lists a command by a permission level that is the same for every user of
-- a host (0.12: admin/global_admin/local_user/any; 13.0: roles), and the domain's owner is not
-- one of them. So the commands are registered for "any" (each still asks the core before it
-- does anything) and, after mod_adhoc has built the list (its handlers run at priority 0), the
-- core's answer takes them out again for whoever does not manage this domain. The command
-- nodes' own disco#info answers forbidden to them too, as mod_adhoc answers for a command its
-- permission hides.
local commands_ns = "http://jabber.org/protocol/commands";

local function ours(n)
	return type(n) == "string" and n:sub(1, #node) == node;
end

module:hook("host-disco-items-node", function(event)
	if event.node ~= commands_ns then return; end
	local query = event.reply:get_child("query", "http://jabber.org/protocol/disco#items");
	if not query or not query:get_child("item") then return; end
	local _, refused = decide(event.stanza.attr.from, nil);
	if not refused then return; end
	query:maptags(function(item)
		if item.name == "item" and ours(item.attr.node) then return nil; end
		return item;
	end);
end, -1);

module:hook("host-disco-info-node", function(event)
	if not ours(event.node) then return; end
	local _, refused = decide(event.stanza.attr.from, nil);
	if refused then
		event.origin.send(st.error_reply(event.stanza, "auth", "forbidden", "This item is not available to you"));
		return true;
	end
end, 1);
module:provides("adhoc", new_adhoc("Create a user", node .. "create", form_command("create", password_form), "any"));
module:provides("adhoc", new_adhoc("Change a user's password", node .. "password",
	form_command("password", password_form), "any"));
module:provides("adhoc", new_adhoc("Delete a user", node .. "delete", form_command("delete", account_form), "any"));
module:provides("adhoc", new_adhoc("Registration policy", node .. "registration",
	form_command("registration", policy_form), "any"));

module:provides("adhoc", new_adhoc("List users", node .. "list", function(_, data)
	local _, refused = decide(data.from, "list");
	if refused then return refuse(refused); end
	-- Not every auth provider can list its accounts (usermanager.users returns nil then, or
	-- fails): answered as such instead of a traceback and no answer. It is a generic for's
	-- triple: the internal providers' iterator needs its state.
	local ok, iter, state, control = pcall(usermanager.users, host);
	if not (ok and iter) then
		module:log("warn", "Cannot list the users of %s: %s", host, tostring(ok and state or iter));
		return refuse({ type = "cancel", condition = "feature-not-implemented",
			text = "This server's authentication cannot list its accounts" });
	end
	local usernames = {};
	for username in iter, state, control do usernames[#usernames + 1] = username; end
	local list, err = get_store():domain_user_list(host, usernames);
	if not list then
		module:log("error", "Cannot list the users of %s: %s", host, err);
		return refuse(internal_error);
	end
	return { status = "completed", info = list.text, result = { layout = list_result, values = { accountjids = list.jids } } };
end, "any"));
