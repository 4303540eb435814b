-- Which Prosody the xmpp-hosting modules run in, and the APIs they use on it.
--
-- Loaded with module:require("xmpp_hosting_server") by mod_xmpp_hosting, which refuses to load
-- (and with it every module that depends on it) on a version not listed here: the modules are
-- built and tested on these two, and a half-working module is worse than none.
--
--   0.12  admins are the `admins` option; adhoc commands for admins go through is_admin.
--   13.0  roles and permissions: admins are the accounts with the prosody:admin role (the
--         `admins` option and roles given with `prosodyctl user setrole`); adhoc commands for
--         admins are permissions (mod_adhoc's default_permission, checked with module:may).
--
-- Everything else the modules use (events, storage, timers, option readers, net.server) is the
-- same on both, so they keep one code path for it.

local usermanager = require "core.usermanager";
local jid_split = require "util.jid".split;

local SUPPORTED = "0.12 and 13.0";

local generations = {
	["0.12"] = {
		series = "0.12";
		roles = false;
		api = "admins from the admins option, adhoc permissions through is_admin";
	};
	["13.0"] = {
		series = "13.0";
		roles = true;
		api = "roles and permissions (admins have prosody:admin, adhoc permissions through module:may)";
	};
};

local _M = { supported = SUPPORTED };

-- The generation of Prosody `version` (default: this server's), or nil and the sentence to log.
function _M.detect(version)
	version = version or (prosody and prosody.version) or "unknown";
	local generation = generations[version:match("^(%d+%.%d+)") or ""];
	if not generation then
		return nil, ("xmpp-hosting supports Prosody %s; this is Prosody %s"):format(SUPPORTED, version);
	end
	return generation;
end

-- The bare JIDs of the admins whose accounts are on this server, each once, for notices meant
-- for them (sent from their own host).
function _M.admin_jids(generation)
	local seen, jids = {}, {};
	local function add(admin)
		local _, host = jid_split(admin);
		if host and prosody.hosts[host] and not seen[admin] then
			seen[admin] = true;
			jids[#jids + 1] = admin;
		end
	end
	if generation.roles then
		-- Each host's role holders, including the global and host `admins` options.
		for host, host_session in pairs(prosody.hosts) do
			if host_session.type == "local" then
				for _, admin in ipairs(usermanager.get_jids_with_role("prosody:admin", host) or {}) do add(admin); end
			end
		end
	else
		for admin in module:get_option_set("admins", {}) do add(admin); end
	end
	table.sort(jids);
	return jids;
end

return _M;
