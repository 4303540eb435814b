-- Test harness only, never shipped: writes a file once Prosody has finished starting.
--
-- An open c2s port does not say that: Prosody listens as soon as mod_c2s loads, while the hosts
-- and modules after it (ours among them, and the admin socket) are still loading. A test that
-- used the server at that moment met a store without its hosts, or no admin socket yet; the
-- official CI, busier than a workstation, saw both. "server-started" fires after every host and
-- module has loaded, on 0.12 and 13.0 alike.

local ready_file = module:get_option_string("harness_ready_file");

module:hook_global("server-started", function()
	local file = assert(io.open(ready_file, "w"));
	file:close();
end);
