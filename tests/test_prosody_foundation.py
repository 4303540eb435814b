"""Prosody 0.12 loads our Lua module and writes the store that the CLI reads."""

import json
import subprocess

import pytest

from harness.common import LUA_CPATH_DIR, run_cli
from harness.prosody import Prosody


@pytest.fixture
def prosody(tmp_path):
    with Prosody(tmp_path) as server:
        yield server


def domain_names(db):
    return [d["name"] for d in json.loads(run_cli(db, "--json", "domain", "list").stdout)]


def test_prosody_loads_the_module_and_opens_the_store(prosody):
    # Wait for the store line itself: on 13.0 the module's roles line can be logged first.
    log = prosody.wait_for_log(f"xmpp-hosting 0.1.0: store {prosody.database}")
    assert f"xmpp-hosting 0.1.0: store {prosody.database}" in log
    assert prosody.database.exists()
    modules = prosody.shell("module:list()").stdout
    assert "Global:" in modules and "    xmpp_hosting\n" in modules.split("Global:")[1].split(":\n")[0]


def test_prosodyctl_command_writes_the_store_the_cli_reads(prosody):
    r = prosody.ctl("mod_xmpp_hosting", "domain", "add", "Customer.example")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Added customer.example" in r.stdout
    assert domain_names(prosody.database) == ["customer.example"]
    r = prosody.ctl("mod_xmpp_hosting", "domain", "add", "bücher.example")
    assert "Added xn--bcher-kva.example (bücher.example)" in r.stdout
    r = prosody.ctl("mod_xmpp_hosting", "domain", "remove", "customer.example")
    assert r.returncode == 0
    assert domain_names(prosody.database) == ["xn--bcher-kva.example"]


def test_the_store_defaults_to_the_data_directory(tmp_path):
    server = Prosody(tmp_path, options={"xmpp_hosting_database": None})
    r = server.ctl("mod_xmpp_hosting", "domain", "add", "default.example")
    assert r.returncode == 0, r.stdout + r.stderr
    assert domain_names(server.data / "xmpp_hosting.sqlite") == ["default.example"]
    assert not server.database.exists()


def test_admin_shell_commands_in_the_running_server(prosody):
    r = prosody.shell('xmpp_hosting:domain_add("shell.example")')
    assert "OK: Added shell.example" in r.stdout, r.stdout + r.stderr
    run_cli(prosody.database, "domain", "add", "cli.example")
    r = prosody.shell("xmpp_hosting:domain_list()")
    assert "cli.example" in r.stdout and "shell.example" in r.stdout and "2 domain(s)" in r.stdout
    r = prosody.shell('xmpp_hosting:domain_show("nope.example")')
    assert (r.returncode, r.stderr.strip()) == (1, "Error: Domain not hosted: nope.example")

    # Bad values built inside the server reach the module as they are: each is one error line.
    for command, message in [
        ('xmpp_hosting:domain_add(("a"):rep(10 * 1024 * 1024))', "the name is 10485760 characters long"),
        ('xmpp_hosting:domain_add("\\255.example")', "the domain name is not valid UTF-8"),
        ('xmpp_hosting:domain_add("a\\0b.example")', "invalid domain name"),
        ("xmpp_hosting:domain_add({})", "Usage: domain add NAME"),
    ]:
        r = prosody.shell(command)
        assert r.returncode == 1 and r.stderr.startswith("Error: ") and message in r.stderr, (command, r.stderr)
    assert prosody.running()
    assert "2 domain(s)" in prosody.shell("xmpp_hosting:domain_list()").stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["domain", "add", "1.2.3.4"], 'invalid domain name: "1.2.3.4" is an IP address'),
        (["domain", "add", "a..b"], "empty label"),
        (["domain", "remove", "missing.example"], "domain not found: missing.example"),
        (["domain", "add"], "Usage: domain add NAME"),
        (["domain", "frob", "x"], "Unknown command: domain frob"),
        # A name that is not UTF-8 (as a shell may pass it) is a value error, not a traceback.
        (["domain", "add", b"\xff.example".decode("utf-8", "surrogateescape")], "the domain name is not valid UTF-8"),
    ],
)
def test_bad_input_through_prosodyctl_is_a_clear_error(prosody, args, message):
    r = prosody.ctl("mod_xmpp_hosting", *args)
    assert r.returncode == 1
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr  # one line, no traceback
    assert message in r.stderr
    assert prosody.running()
    # The server keeps serving: the shell still answers.
    assert "OK:" in prosody.shell("xmpp_hosting:domain_list()").stdout


LUA_BAD_INPUT = r"""
local xh = require "xmpp_hosting"
local h = assert(xh.open(arg[1]))
local function check(label, ok, ...)
  print(label, ok, ...)
end
-- Wrong types raise a Lua error; bad values give nil, message, code.
check("nil", pcall(h.add_domain, h, nil))
check("table", pcall(h.add_domain, h, {}))
check("nonutf8", true, h:add_domain("\255\254.example"))
check("nonutf8-show", true, h:domain("\255"))
check("nonutf8-remove", true, h:remove_domain("\255"))
check("number", true, h:add_domain(42))
check("remove-nil", pcall(h.remove_domain, h))
check("show-table", pcall(h.domain, h, {}))
check("version", true, xh.version())
check("open-nil", pcall(xh.open, nil))
check("open-nonutf8", true, xh.open("/tmp/\255.sqlite"))
check("open-huge", true, xh.open(string.rep("d", 10 * 1024 * 1024)))
check("huge", true, h:add_domain(string.rep("a", 10 * 1024 * 1024)))
check("nul", true, h:add_domain("a\0b.example"))
check("ip", true, h:add_domain("[::1]"))
check("missing", true, h:domain("missing.example"))
check("remove-missing", true, h:remove_domain("missing.example"))
check("invite-garbage", true, h:create_invite{domain = "missing.example", uses = "many"})
check("invite-unknown-field", true, h:create_invite{domain = "x.example", bogus = 1})
check("check-nonutf8", true, h:check_invite("x.example", "\255"))
check("preauth-nil", pcall(h.preauthorize_subscription, h, "a@x.example", nil, "t"))
check("preauth-nonutf8-token", true, h:preauthorize_subscription("a@missing.example", "c@d.example", "\255"))
check("limit-bad-value", true, h:set_upload_limit("missing.example", nil, "daily", "lots"))
check("limit-table", pcall(h.set_upload_limit, h, "x.example", {}, "daily", "1"))
check("open-empty", true, xh.open(""))
check("open-bad-path", true, xh.open("/nonexistent/dir/db.sqlite"))
check("method-on-nonhandle", pcall(h.domains, {}))
assert(h:add_domain("still-works.example"))
print("survived")
"""


def test_lua_module_bad_input_never_crashes(tmp_path):
    script = tmp_path / "bad.lua"
    script.write_text(LUA_BAD_INPUT)
    r = subprocess.run(["lua5.4", str(script), str(tmp_path / "db.sqlite")], capture_output=True, text=True,
                       env={"LUA_CPATH_5_4": f"{LUA_CPATH_DIR}/?.so;;", "PATH": "/usr/bin:/bin"}, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split("\t", 1) for line in r.stdout.splitlines() if "\t" in line)
    assert lines["nil"].startswith("false\tbad argument #2")
    assert lines["table"].startswith("false\tbad argument #2")
    assert lines["nonutf8"] == "true\tnil\tinvalid argument: the domain name is not valid UTF-8\tinvalid-argument"
    assert lines["nonutf8-show"].endswith("not valid UTF-8\tinvalid-argument")
    assert lines["nonutf8-remove"].endswith("not valid UTF-8\tinvalid-argument")
    assert lines["number"].endswith("invalid-domain")
    assert lines["remove-nil"].startswith("false\tbad argument #2")
    assert lines["show-table"].startswith("false\tbad argument #2")
    assert lines["version"] == "true\t0.1.0"
    assert lines["open-nil"].startswith("false\tbad argument #1")
    assert lines["open-nonutf8"].endswith("invalid-argument")
    assert lines["open-huge"].startswith("true\tnil\t") and lines["open-huge"].endswith("\tstore")
    assert lines["huge"].endswith("at most 253 are allowed\tinvalid-domain")
    assert lines["nul"].endswith("invalid-domain")
    assert lines["ip"].endswith("invalid-domain")
    assert lines["missing"] == "true\tnil"
    assert lines["remove-missing"] == "true\tnil\tdomain not found: missing.example\tnot-found"
    assert lines["invite-garbage"].endswith("invalid-argument")
    assert "unknown field `bogus`" in lines["invite-unknown-field"]
    assert lines["check-nonutf8"] == "true\tnil"
    assert lines["preauth-nil"].startswith("false\tbad argument #3")
    assert lines["preauth-nonutf8-token"] == "true\tnil\tdomain not found: missing.example\tnot-found"
    assert lines["limit-bad-value"].endswith("\tnot-found")
    assert lines["limit-table"].startswith("false\tbad argument #3")
    assert lines["open-empty"].endswith("invalid-argument")
    assert lines["open-bad-path"].endswith("store")
    assert lines["method-on-nonhandle"].startswith("false")
    assert r.stdout.rstrip().endswith("survived")
    assert run_cli(tmp_path / "db.sqlite", "domain", "list").stdout.count("still-works.example") == 1
