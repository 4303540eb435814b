-- mod_xmpp_hosting_invites: invite-only registration on a VirtualHost, decided by xmpp-hosting.
--
-- Load it on a VirtualHost (with mod_xmpp_hosting in the global modules_enabled). It replaces
-- Prosody's mod_invites_register and mod_invites_adhoc; do not load those as well, or
-- registration would be gated twice by two invite stores.
--
-- The client flow is the one current clients use (XEP-0401, XEP-0445):
--   1. stream features announce urn:xmpp:invite and urn:xmpp:ibr-token:0;
--   2. <iq type='set'><preauth xmlns='urn:xmpp:pars:0' token='…'/></iq> is answered with a
--      result, or cancel/item-not-found for any unusable token;
--   3. XEP-0077 registration, which the domain's policy (invite, open, closed) decides.
-- A roster invite ends with the new account and the inviter subscribed to each other. Someone
-- who already has an account uses it by sending the inviter a subscription request carrying the
-- token (XEP-0379): it is approved for the inviter, who asks back.
-- Ad-hoc commands: urn:xmpp:invite#invite (users, when the domain lets them) and
-- urn:xmpp:invite#create-account (admins).

local st = require "util.stanza";
local async = require "util.async";
local jid_split = require "util.jid".split;
local jid_bare = require "util.jid".bare;
local datetime = require "util.datetime";
local dataforms = require "util.dataforms";
local rostermanager = require "core.rostermanager";
local usermanager = require "core.usermanager";

local xmpp_hosting = module:depends("xmpp_hosting");
local get_store = xmpp_hosting.get_store;
local call_off_loop = xmpp_hosting.call_off_loop;
local host = module.host;

local require_encryption = module:get_option_boolean("c2s_require_encryption",
	module:get_option_boolean("require_encryption", true));

local presence; -- mod_presence, whose way of sending a user's presence a pre-approval reuses
if prosody.process_type == "prosody" then
	-- In-band registration itself is mod_register_ibr's; this module only decides who may use it.
	module:depends("register_ibr");
	module:depends("adhoc");
	presence = module:depends("presence");
end

function module.load()
	if prosody.process_type ~= "prosody" then return; end
	local modulemanager = require "core.modulemanager";
	for _, other in ipairs({ "invites_register", "invites_adhoc" }) do
		if modulemanager.is_loaded(host, other) then
			module:log("warn", "mod_%s is loaded too: unload it, registration must be gated by one module", other);
		end
	end
	-- A host that loads this module is hosted (the core's rule, the same on ejabberd). Never
	-- waited for on the loop: while another process holds the store's lock, the core's worker
	-- adds the host once it is free.
	local store = get_store();
	if not store then return; end
	local hosted, err, code = store:ensure_hosted_or_later(host);
	if type(hosted) == "userdata" then
		module:log("debug", "The store is locked by another process: %s is added to it once it is free", host);
	end
	xmpp_hosting.when_done(hosted, err, code, function(done, done_err)
		if done and done.log then
			module:log("info", "%s", done.log);
		elseif not done then
			module:log("error", "Cannot add %s to the xmpp-hosting store: %s", host, done_err);
		end
	end);
end

-- 1. Stream features, for clients that have not logged in yet.
local invite_feature = st.stanza("register", { xmlns = "urn:xmpp:invite" }):up();
local ibr_token_feature = st.stanza("register", { xmlns = "urn:xmpp:ibr-token:0" }):up();

module:hook("stream-features", function(event)
	local session, features = event.origin, event.features;
	if session.type ~= "c2s_unauthed" or (require_encryption and not session.secure) then
		return;
	end
	features:add_child(invite_feature);
	features:add_child(ibr_token_feature);
end);

-- 2. The token, presented before registering.
module:hook("stanza/iq/urn:xmpp:pars:0:preauth", function(event)
	local origin, stanza = event.origin, event.stanza;
	if stanza.attr.type ~= "set" then return; end
	local token = stanza.tags[1].attr.token;
	if not token or token == "" then
		origin.send(st.error_reply(stanza, "modify", "bad-request", "The preauth element needs a token"));
		return true;
	end
	-- nil and no error: a token that is not usable, one answer for all of them; an error: the
	-- store failed, and the invite may well be valid.
	local store, err = get_store();
	local invite;
	if store then invite, err = store:check_invite(host, token); end
	if not invite and err then
		module:log("error", "Cannot check an invite token on %s: %s", host, tostring(err));
		origin.send(st.error_reply(stanza, "wait", "internal-server-error", "Invites cannot be checked now, try again later"));
		return true;
	end
	if not invite then
		origin.send(st.error_reply(stanza, "cancel", "item-not-found", "The invite is not valid (unknown, expired or already used)"));
		return true;
	end
	origin.xmpp_hosting_token = token;
	origin.send(st.reply(stanza));
	return true;
end);

-- 3. The registration gate. A begun registration holds the invite's use until we know whether
-- the account was created: user-registered (or user-password-reset) finishes it; if neither
-- fires in the same turn of the event loop (the name was taken, another module refused, the
-- storage failed), the timer gives the use back.
local pending = {};

local function finish(ticket_id, created)
	if not pending[ticket_id] then return; end
	pending[ticket_id] = nil;
	local store, err = get_store();
	local ok;
	if store then ok, err = call_off_loop(store, "finish_registration", ticket_id, created); end
	if not ok then
		module:log("error", "Cannot finish registration %d: %s", ticket_id, tostring(err));
	end
end

-- After the other modules' checks (mod_register_limits, mod_tombstones: priority 0, run in no
-- fixed order among themselves): a registration one of them refused is theirs to answer, and
-- beginning ours would hold an invite's use and count an attempt for nothing.
module:hook("user-registering", function(event)
	if event.allowed == false then return; end
	local session = event.session;
	local token = session and session.xmpp_hosting_token or nil;
	local store, err = get_store();
	local decision;
	if store then
		decision, err = call_off_loop(store, "begin_registration", { domain = host, username = event.username, ip = event.ip, token = token });
	end
	if not decision then
		module:log("error", "Registration of %s refused, the store failed: %s", event.username, tostring(err));
		event.allowed = false;
		event.error = { type = "wait", condition = "internal-server-error", text = "Registration is unavailable, try again later" };
		return;
	end
	if decision.decision == "refused" then
		module:log("info", "Registration of %s@%s from %s refused: %s", event.username, host, tostring(event.ip), decision.reason);
		event.allowed = false;
		event.error = { type = decision.type, condition = decision.condition, text = decision.text };
		return;
	end
	pending[decision.id] = decision;
	if session then session.xmpp_hosting_registration = decision; end
	if decision.reset then
		event.allow_reset = decision.username;
	end
	-- In a runner, so that giving the use back waits on the worker, not on the loop.
	module:add_timer(0, function() async.runner(function() finish(decision.id, false); end):run(true); end);
end, -1);

-- Subscribes a and b to each other (both local users of this host), as if each had asked and
-- the other approved.
local function subscribe_both(a, b)
	for _, pair in ipairs({ { a, b }, { b, a } }) do
		local user, contact = pair[1], pair[2];
		local user_jid, contact_jid = user .. "@" .. host, contact .. "@" .. host;
		rostermanager.set_contact_pending_out(user, host, contact_jid);
		rostermanager.set_contact_pending_in(contact, host, user_jid);
		rostermanager.subscribed(contact, host, user_jid);
		rostermanager.process_inbound_subscription_approval(user, host, contact_jid);
	end
	rostermanager.roster_push(a, host, b .. "@" .. host);
	rostermanager.roster_push(b, host, a .. "@" .. host);
end

local function registration_of(event)
	local session = event.session;
	local decision = session and session.xmpp_hosting_registration;
	if decision and decision.username == event.username and pending[decision.id] then
		session.xmpp_hosting_registration, session.xmpp_hosting_token = nil, nil;
		return decision;
	end
end

module:hook("user-registered", function(event)
	local decision = registration_of(event);
	if not decision then return; end
	finish(decision.id, true);
	if decision.roster_with then
		local inviter = jid_split(decision.roster_with);
		if not usermanager.user_exists(inviter, host) then
			-- Removed since the invite was made: a roster for a missing account would linger.
			module:log("warn", "%s@%s registered with a roster invite from %s, which no longer exists: no subscription",
				event.username, host, decision.roster_with);
			return;
		end
		module:log("info", "Subscribing %s@%s and %s to each other (roster invite)", event.username, host, decision.roster_with);
		subscribe_both(inviter, event.username);
	end
end);

module:hook("user-password-reset", function(event)
	local decision = registration_of(event);
	if decision then finish(decision.id, true); end
end);

-- 4. Pre-authenticated subscription (XEP-0379). The store spends the invite's use when the
-- token is the inviter's roster invite; the inviter then approves and asks back, as their client
-- would, so both end subscribed. Any other token leaves the request to the inviter.
local function approve_and_ask_back(username, contact)
	local inviter = username .. "@" .. host;
	rostermanager.set_contact_pending_in(username, host, contact);
	if rostermanager.subscribed(username, host, contact) then
		rostermanager.roster_push(username, host, contact);
	end
	module:send(st.presence({ from = inviter, to = contact, type = "subscribed" }));
	presence.send_presence_of_available_resources(username, host, contact);
	local item = rostermanager.load_roster(username, host)[contact];
	if item and (item.ask or item.subscription == "both") then return; end
	if rostermanager.set_contact_pending_out(username, host, contact) then
		rostermanager.roster_push(username, host, contact);
		module:send(st.presence({ from = inviter, to = contact, type = "subscribe" }));
	end
end

-- True when the request is approved (handled here), nil to leave it to the inviter.
local function decided(username, inviter, contact, decision, err)
	if not decision then
		module:log("error", "Cannot check the subscription token from %s to %s: %s", contact, inviter, tostring(err));
		return;
	end
	if decision.decision ~= "approved" then
		module:log("debug", "The token from %s to %s approves nothing: %s", contact, inviter, decision.reason);
		return;
	end
	module:log("info", "Subscription of %s to %s pre-approved by invite %d", contact, inviter, decision.invite_id);
	approve_and_ask_back(username, contact);
	return true;
end

-- A request decided on the core's worker is fired again once the decision is in (approved here,
-- or left to mod_presence as any other); in a runner, as stanza handlers run.
local again = async.runner(function(event)
	module:fire_event("presence/bare", event);
end, {
	error = function(_, err) module:log("error", "A subscription decided off the loop failed: %s", err); end;
});

module:hook("presence/bare", function(event)
	local stanza = event.stanza;
	if stanza.attr.type ~= "subscribe" then return; end
	local inviter, contact = jid_bare(stanza.attr.to), jid_bare(stanza.attr.from);
	local username = inviter and jid_split(inviter);
	local late = event.xmpp_hosting_preauth;
	if late then -- decided on the worker, fired again (see `again`)
		event.xmpp_hosting_preauth = nil;
		return decided(username, inviter, contact, late.decision, late.err);
	end
	local preauth = stanza:get_child("preauth", "urn:xmpp:pars:0");
	local token = preauth and preauth.attr.token;
	if not (token and username and contact) or not usermanager.user_exists(username, host)
		or rostermanager.is_contact_subscribed(username, host, contact) then
		return;
	end
	-- Anyone on the federation can send a token: the decision at once, or, while another process
	-- holds the store's write lock, made by the core's worker once it is free, and the request
	-- handled then; the loop serves every session meanwhile.
	local store, err = get_store();
	local decision;
	if store then
		decision, err = store:preauthorize_subscription_or_later(inviter, contact, token);
	end
	if type(decision) ~= "userdata" then
		return decided(username, inviter, contact, decision, err);
	end
	module:log("debug", "The store is locked by another process: the subscription of %s to %s is decided once it is free",
		contact, inviter);
	xmpp_hosting.when_done(decision, nil, nil, function(done, done_err)
		event.xmpp_hosting_preauth = { decision = done, err = done_err };
		again:run(event);
	end);
	return true;
end, 10);

-- Ad-hoc commands (XEP-0401).
local new_adhoc = module:require("adhoc").new;

local invite_result_form = dataforms.new({
	title = "Your invite has been created";
	{ name = "url"; var = "landing-url"; label = "Invite web page"; desc = "Share this link" };
	{ name = "uri"; label = "Invite URI"; desc = "This alternative link can be opened with some XMPP clients" };
	{ name = "expire"; label = "Invite valid until" };
});

local function invite_result(created, err)
	if not created then
		return { status = "completed"; error = { message = err } };
	end
	return {
		status = "completed";
		form = {
			layout = invite_result_form;
			values = {
				uri = created.uri;
				url = created.landing_url;
				expire = created.invite.expires_at and datetime.datetime(created.invite.expires_at) or nil;
			};
		};
	};
end

local function create(spec)
	local store, err = get_store();
	if not store then return nil, err; end
	return store:create_invite(spec);
end

-- Any local user: an invite to register and join their roster (the domain must let users invite).
module:provides("adhoc", new_adhoc("Create new contact invite", "urn:xmpp:invite#invite", function(_, data)
	local username, from_host = jid_split(data.from);
	if from_host ~= host or not username then
		return { status = "completed"; error = { message = "This command is only available to users of " .. host } };
	end
	local bare = username .. "@" .. host;
	return invite_result(create({ domain = host, kind = "roster", created_by = bare, inviter = bare }));
end, "local_user"));

-- Admins: an invite to create an account.
module:provides("adhoc", new_adhoc("Create new account invite", "urn:xmpp:invite#create-account", function(_, data)
	module:log("info", "%s creates an account invite", data.from);
	return invite_result(create({ domain = host, kind = "account" }));
end, "admin"));
