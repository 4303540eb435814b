-- Redeem latency through the Lua binding, as Prosody calls it, with N invites stored.
--   PROFILE=release scripts/build
--   XH_SERVER=prosody-13 benches/lua.sh benches/lua_invites.lua [N] [REDEEMS]
-- Prints create throughput and begin+finish registration latency percentiles. Figures, not a test.

local xh = require "xmpp_hosting";
local time = require "util.time"; -- Prosody's monotonic clock (util/time.so)

local stored = tonumber(arg[1]) or 100000;
local redeems = math.min(tonumber(arg[2]) or 10000, stored);
local path = os.tmpname();
local h = assert(xh.open(path));
assert(h:add_domain("bench.example"));

local t0 = time.monotonic();
local tokens = {};
for i = 1, stored do
	tokens[i] = assert(h:create_invite({ domain = "bench.example" })).token;
end
local created = time.monotonic() - t0;
print(("create: %d invites in %.2f s = %.0f/s"):format(stored, created, stored / created));

local lat = {};
local step = stored // redeems;
t0 = time.monotonic();
for i = 1, redeems do
	local s = time.monotonic();
	local d = assert(h:begin_registration({ domain = "bench.example", username = "user" .. i, token = tokens[i * step] }));
	assert(d.decision == "allowed", d.reason);
	assert(h:finish_registration(d.id, true));
	lat[i] = time.monotonic() - s;
end
local total = time.monotonic() - t0;
table.sort(lat);
local function pct(p) return lat[math.max(1, math.floor(#lat * p + 0.5))] * 1e6; end
print(("redeem via Lua with %d stored: %d in %.2f s = %.0f/s; p50 %.0f us  p99 %.0f us  max %.0f us"):format(
	stored, redeems, total, redeems / total, pct(0.50), pct(0.99), lat[#lat] * 1e6));
os.remove(path); os.remove(path .. "-wal"); os.remove(path .. "-shm");
