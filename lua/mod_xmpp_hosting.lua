-- mod_xmpp_hosting: xmpp-hosting's store inside Prosody, and its admin commands.
--
-- Load it globally (modules_enabled). It opens the store named by `xmpp_hosting_database`
-- (default: xmpp_hosting.sqlite in Prosody's data directory) and offers:
--
--   prosodyctl mod_xmpp_hosting domain add|list|show|remove [NAME]
--   prosodyctl shell:  xmpp_hosting:domain_add("example.org")  (domain_list, domain_show, domain_remove)
--
-- The rules live in the Rust core (require "xmpp_hosting"); this file only wires them into
-- Prosody. Other xmpp-hosting modules get the open store with module:depends("xmpp_hosting").

module:set_global();

local xh = require "xmpp_hosting";

local database_path = module:get_option_path("xmpp_hosting_database", "xmpp_hosting.sqlite", "data");

-- Opened on first use, not at load: prosodyctl loads modules for commands that may never
-- touch the store, and a broken path should fail the command that needs it, loudly.
local store;
function get_store() -- luacheck: ignore 131 (exported to dependent modules)
	if not store then
		local err, code;
		store, err, code = xh.open(database_path);
		if not store then
			module:log("error", "Cannot open the xmpp-hosting store %s: %s (%s)", database_path, err, code);
			return nil, err, code;
		end
		module:log("info", "xmpp-hosting %s: store %s", xh.version, database_path);
	end
	return store;
end

function module.load()
	-- Open at start in the server so a broken store shows in the log right away.
	if prosody.process_type == "prosody" then
		get_store();
	end
end

-- Admin commands, shared by prosodyctl and the admin shell. Each returns ok, text.

local function format_domain(d)
	local name = d.name;
	if d.unicode_name ~= d.name then
		name = ("%s (%s)"):format(d.name, d.unicode_name);
	end
	return ("%s  registration=%s"):format(name, d.settings.registration.policy);
end

local domain_commands = {};

function domain_commands.add(s, name)
	local d, err = s:add_domain(name);
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

function domain_commands.remove(s, name)
	local ok, err = s:remove_domain(name);
	if not ok then return false, err; end
	return true, "Removed " .. name;
end

local needs_name = { add = true, show = true, remove = true };

local function run_domain_command(verb, name)
	local command = domain_commands[verb];
	if not command then
		return false, "Unknown command: domain " .. tostring(verb) .. " (add, list, show, remove)";
	end
	if needs_name[verb] and type(name) ~= "string" then
		return false, "Usage: domain " .. verb .. " NAME";
	end
	local s, err = get_store();
	if not s then return false, err; end
	return command(s, name);
end

-- prosodyctl mod_xmpp_hosting …
function module.command(arg)
	local group, verb, name = arg[1], arg[2], arg[3];
	if group ~= "domain" or not verb then
		print("Usage: prosodyctl mod_" .. module.name .. " domain add|list|show|remove [NAME]");
		return 2;
	end
	local ok, text = run_domain_command(verb, name);
	if not ok then
		io.stderr:write("Error: ", tostring(text), "\n");
		return 1;
	end
	print(text);
	return 0;
end

-- prosodyctl shell: xmpp_hosting:domain_add("example.org") …
local shell_env = module:shared("/*/admin_shell/env");
shell_env.xmpp_hosting = {};
for verb in pairs(domain_commands) do
	shell_env.xmpp_hosting["domain_" .. verb] = function(_, name)
		return run_domain_command(verb, name);
	end
end

function module.unload()
	shell_env.xmpp_hosting = nil;
end
