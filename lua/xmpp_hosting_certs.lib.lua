-- Certificates of the hosted domains in Prosody (issue 14), for mod_xmpp_hosting
-- (module:require "xmpp_hosting_certs").
--
-- Where: `xmpp_hosting_certificates` (default: an `xmpp-hosting` directory inside Prosody's
-- `certificates` directory, which Prosody indexes recursively by the names in each certificate:
-- `<domain>.crt` with `<domain>.key` beside it, as certmanager pairs them). The core keeps that
-- directory equal to its store (keys 0600; files of removed domains deleted), in the server's
-- housekeeping pass and right after a command changed a certificate. Prosody reads certificates
-- when it (re)loads its TLS configuration, so a change is followed by a reload as `prosodyctl
-- cert import` does it: `prosody.reload_config()` in the server (the config-reloaded event
-- re-indexes the certificates and mod_tls makes new contexts), SIGHUP from prosodyctl.
--
-- No private key passes through Lua: the core writes the files itself.

local M = {};

function M.directory(module)
	local certs = module:get_option_path("certificates", "certs", "config");
	return module:get_option_path("xmpp_hosting_certificates", certs .. "/xmpp-hosting", "config");
end

-- Prosody re-indexes its certificates directory on config-reloaded, in a handler that runs after
-- mod_tls's (which makes the hosts' TLS contexts from the index it finds): on a reload mod_tls
-- would still use the old index, and a certificate found only through the index (ours, in a
-- subdirectory) would be served one reload late. Re-indexing first, at a higher priority, makes
-- one reload enough, whoever sent it (this module, prosodyctl's SIGHUP, the operator).
function M.reindex_before_tls(module)
	local certmanager = require "core.certmanager";
	module:hook_global("config-reloaded", function()
		certmanager.reload_ssl_config();
	end, 1000);
end

-- Makes Prosody read its certificates again: in the server, directly; from prosodyctl, by
-- signalling the running server (nothing to do when none runs: it reads them at start).
function M.reload(module)
	if prosody.process_type == "prosody" then
		local ok, err = prosody.reload_config();
		if not ok then module:log("warn", "Reloading for new certificates failed: %s", tostring(err)); end
		return ok;
	end
	local ok, pctl = pcall(require, "util.prosodyctl");
	if ok and pctl.reload then
		local reloaded, err = pctl.reload();
		return reloaded or err == "not-running";
	end
	return false;
end

-- Installs what the store holds now; reloads when something changed. Returns a line to add to
-- a command's answer (or nil), and an error. With `domain` (a command that just changed its
-- certificate), the line is there whenever that domain's files are in place, also when another
-- process (the running server's housekeeping pass) had already written them.
function M.install(module, s, domain)
	local report, err = s:install_certificates(M.directory(module), "prosody");
	if not report then return nil, err; end
	local changed = #report.installed > 0 or #report.removed > 0;
	if changed then
		M.reload(module);
		return ("Installed in %s%s"):format(M.directory(module),
			prosody.process_type == "prosody" and "; TLS reloaded" or "; the running server was told to reload");
	end
	for _, in_place in ipairs(report.in_place) do
		if in_place == domain then
			return ("Installed in %s (already in place)"):format(M.directory(module));
		end
	end
	return nil;
end

local function read_file(path)
	local f, err = io.open(path, "r");
	if not f then return nil, err; end
	local text = f:read("*a");
	f:close();
	return text;
end

-- The commands: each gets the store and its arguments, and returns ok, text. `await` waits for a
-- pending answer off the loop; `write` is mod_xmpp_hosting's store write that never waits on the
-- loop for another process's lock (the plain call's `_or_later` variant, awaited).
function M.commands(module, await, write)
	local commands = {};

	local function with_install(s, domain, text)
		local line, err = M.install(module, s, domain);
		if err then return false, text .. "\nNot installed: " .. tostring(err); end
		return true, line and (text .. "\n" .. line) or text;
	end

	-- generate DOMAIN [--key ecdsa|rsa] [--days N]; the key is made on the core's worker.
	function commands.generate(s, domain, options)
		local spec, i = {}, 1;
		while options and options[i] do
			local flag, value = options[i], options[i + 1];
			if flag == "--key" and value then spec.key = value;
			elseif flag == "--days" and value and tonumber(value) then spec.days = math.tointeger(tonumber(value)) or -1;
			else return false, "Usage: cert generate DOMAIN [--key ecdsa|rsa] [--days N]"; end
			i = i + 2;
		end
		local pending, start_err, code = s:start_generate_certificate(domain, spec);
		if pending then module:log("debug", "cert generate: the certificate of %s is made on the core's worker", domain); end
		local info, err = await(pending, start_err, code);
		if not info then return false, err; end
		return with_install(s, info.domain, info.text);
	end

	-- acme DOMAIN: a CA-signed certificate by ACME DNS-01 through the customer's CNAME (the
	-- exchange with the CA runs on the core's worker), installed at once.
	function commands.acme(s, domain)
		if not domain then return false, "Usage: cert acme DOMAIN"; end
		local info, err = await(s:start_acme_certificate(domain));
		if not info then return false, err; end
		return with_install(s, info.domain, info.text);
	end

	function commands.show(s, domain, options)
		if options and options[1] == "--pem" then
			local pem, err = s:certificate_pem(domain);
			if not pem then return false, err; end
			return true, (pem:gsub("\n$", ""));
		end
		local info, err = s:certificate(domain);
		if not info then return false, err; end
		return true, info.text;
	end

	function commands.csr(s, domain)
		local pem, err = s:certificate_csr(domain);
		if not pem then return false, err; end
		return true, (pem:gsub("\n$", ""));
	end

	function commands.import(s, domain, options)
		local file = options and options[1];
		if not file then return false, "Usage: cert import DOMAIN FILE"; end
		local pem, read_err = read_file(file);
		if not pem then return false, ("Cannot read %s: %s"):format(file, read_err); end
		local info, err = write(s, "import_certificate", domain, pem);
		if not info then return false, err; end
		return with_install(s, info.domain, info.text);
	end

	-- posh DOMAIN [--service client|server] | posh DOMAIN --check FILE
	function commands.posh(s, domain, options)
		local flag, value = options and options[1], options and options[2];
		if flag == "--check" and value then
			local text, read_err = read_file(value);
			if not text then return false, ("Cannot read %s: %s"):format(value, read_err); end
			local result, err = s:check_certificate_posh(domain, text);
			if not result then return false, err; end
			local lines = { result.matches and ("%s: the published file matches (%s)"):format(domain, result.matched)
				or ("%s: the published file does not match"):format(domain) };
			for _, p in ipairs(result.problems) do lines[#lines + 1] = "  - " .. p; end
			return result.matches, table.concat(lines, "\n");
		elseif flag ~= nil and flag ~= "--service" then
			return false, "Usage: cert posh DOMAIN [--service client|server] | cert posh DOMAIN --check FILE";
		end
		local json, err = s:certificate_posh(domain, value);
		if not json then return false, err; end
		return true, json;
	end

	-- Days left, every domain; not ok (exit 1) when one expires within a week.
	function commands.check(s)
		local result, err = s:check_certificates();
		if not result then return false, err; end
		return result.ok, result.text;
	end

	-- Brings the certificates directory in line with the store now (the housekeeping pass does
	-- it every minute).
	function commands.install(s)
		local line, err = M.install(module, s);
		if err then return false, err; end
		return true, line or ("Nothing to change in " .. M.directory(module));
	end

	return commands;
end

return M;
