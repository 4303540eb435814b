-- Slot decision latency (authorize_upload + commit_upload) through the Lua binding, called the way
-- mod_xmpp_hosting_uploads calls it, with 1,000 / 100,000 / 1,000,000 uploads stored.
--   PROFILE=release scripts/build
--   XH_SERVER=prosody-13 benches/lua.sh benches/lua_quotas.lua [SIZES] [DECISIONS]
-- SIZES is a comma list (default 1000,100000,1000000), DECISIONS per size (default 5000).
-- Needs the sqlite3 command. Prints a markdown table. Figures, not a test.
--
-- As crates/core/benches/quotas.rs: every limit is set (large enough that each decision is a
-- grant), so every check runs; the store is filled straight into the ledger tables with one SQL
-- statement per table (sqlite3, not the API: a million uploads through the API would take minutes
-- and measure nothing new); the measured user has the same 100 uploads of history in every run,
-- the others are spread over 1,000 users and the last 30 days. The WAL is checkpointed every
-- 100 ms between decisions (untimed), as Prosody's timer does between requests every few seconds.

local xh = require "xmpp_hosting";
local time = require "util.time"; -- Prosody's monotonic clock (util/time.so)

local sizes = {};
for n in (arg[1] or "1000,100000,1000000"):gmatch("%d+") do sizes[#sizes + 1] = tonumber(n); end
local decisions = tonumber(arg[2]) or 5000;
local DOMAIN, HISTORY = "bench.example", 100;

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'"; end

-- The ledger is filled by benches/quotas_seed.sql (shared with nif_quotas.sh).
local function seed(path, n, now)
	local params = (".parameter set :n %d\n.parameter set :now %d\n.parameter set :history %d\n"
		.. ".parameter set :domain '%s'\n.read benches/quotas_seed.sql\n"):format(n, now, HISTORY, DOMAIN);
	local p = assert(io.popen("sqlite3 -bail " .. sh_quote(path) .. " >/dev/null", "w"));
	p:write(params);
	assert(p:close(), "sqlite3 failed to seed the store");
end

local function run(n)
	local path = os.tmpname();
	local h = assert(xh.open(path));
	assert(h:add_domain(DOMAIN));
	-- A customer's domain, as in crates/core/benches/quotas.rs: decisions also read its owner's claim.
	-- Its owner follows a proof or an operator's recorded override, which only the CLI makes
	-- (XH_CLI, set by benches/lua.sh).
	assert(h:claim_domain(DOMAIN, "owner"));
	local cli = assert(os.getenv("XH_CLI"), "XH_CLI (the xmpp-hosting CLI) is not set: run through benches/lua.sh");
	assert(os.execute(("%s --db %s domain override %s --account owner --reason bench >/dev/null")
		:format(sh_quote(cli), sh_quote(path), DOMAIN)), "domain override failed");
	for k, v in pairs {
		max_file_size = "1000000000", user_storage = "1000000000000", domain_storage = "1000000000000000",
		user_daily = "1000000000000", user_weekly = "1000000000000", user_monthly = "1000000000000",
		domain_daily = "1000000000000000", domain_weekly = "1000000000000000", domain_monthly = "1000000000000000",
	} do
		assert(h:set_domain_setting(DOMAIN, "uploads." .. k, v));
	end
	local t0 = time.monotonic();
	seed(path, n, os.time());
	local seeded = time.monotonic() - t0;
	local usage = assert(h:upload_usage(DOMAIN, "measured"));
	assert(usage.stored == HISTORY * 1000 and usage.monthly == HISTORY * 1000, "the seed did not reach the ledger");

	local both, auth, commit = {}, {}, {};
	local last_checkpoint = time.monotonic();
	local start = time.monotonic();
	for i = 1, decisions do
		local a = time.monotonic();
		local d, err = h:authorize_upload(DOMAIN, "measured", "1000"); -- the size as the request's text
		local b = time.monotonic();
		assert(d, err);
		assert(d.decision == "granted", d.text);
		assert(h:commit_upload(d.id, 1000, "new" .. i));
		local c = time.monotonic();
		both[i], auth[i], commit[i] = c - a, b - a, c - b;
		if c - last_checkpoint >= 0.1 then
			assert(h:checkpoint());
			last_checkpoint = time.monotonic();
		end
	end
	local total = time.monotonic() - start;
	for _, v in ipairs { both, auth, commit } do table.sort(v); end
	local function pct(v, p) return v[math.floor((#v - 1) * p + 0.5) + 1] * 1e6; end
	h = nil; collectgarbage(); -- closes the store before its files go
	os.remove(path); os.remove(path .. "-wal"); os.remove(path .. "-shm");
	return {
		n = n, seeded = seeded, rate = decisions / total,
		p50 = pct(both, 0.5), p99 = pct(both, 0.99), max = both[#both] * 1e6,
		a50 = pct(auth, 0.5), a99 = pct(auth, 0.99), c50 = pct(commit, 0.5), c99 = pct(commit, 0.99),
	};
end

print(("Lua binding (%s), %d decisions per size: authorize_upload + commit_upload, µs"):format(xh.version(), decisions));
print();
print("| uploads stored | p50 | p99 | max | decisions/s | authorize p50 / p99 | commit p50 / p99 | seeded in |");
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
local results = {};
for _, n in ipairs(sizes) do
	local r = run(n);
	results[#results + 1] = r;
	print(("| %d | %.0f | %.0f | %.0f | %.0f | %.0f / %.0f | %.0f / %.0f | %.1f s |"):format(
		r.n, r.p50, r.p99, r.max, r.rate, r.a50, r.a99, r.c50, r.c99, r.seeded));
end
if #results > 1 then
	local first, last = results[1], results[#results];
	print();
	print(("flatness: %d stored vs %d: p50 x%.2f, p99 x%.2f (target: within x1.2, p99 < 200 µs in-process)"):format(
		last.n, first.n, last.p50 / first.p50, last.p99 / first.p99));
end
