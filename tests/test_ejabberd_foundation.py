"""ejabberd 23.01 with mod_xmpp_hosting: the NIF-backed module, its commands, the shared store.

One node (installed with `ejabberdctl module_install`, as an admin would) serves most tests; the
`database` option and the plain `modules:` route get their own node. Run scripts/build first.
"""

import base64
import json
import sqlite3
import subprocess

import pytest

from harness.common import TARGET, run_cli
from harness.ejabberd import MODULE_SRC, Ejabberd, http_api_post

HOST = "test.example"


@pytest.fixture(scope="module")
def ej(tmp_path_factory):
    with Ejabberd(tmp_path_factory.mktemp("ejabberd"), host=HOST) as node:
        yield node


def ctl_fails(ej, *args):
    r = ej.ctl(*args, check=False)
    assert r.returncode != 0, f"ejabberdctl {args} succeeded: {r.stdout}"
    return r.stdout + r.stderr


def assert_alive(ej):
    assert ej.is_running(), ej.logs_tail()
    assert ej.ctl("status", check=False).returncode == 0, ej.logs_tail()


# ---- installation -----------------------------------------------------------------------------


def test_module_install_compiles_installs_and_starts_the_module(ej):
    installed = ej.ctl("modules_installed").stdout
    assert "mod_xmpp_hosting" in installed
    # The contrib repository's own compliance check (README.txt, COPYING, spec metadata).
    assert ej.ctl("module_check", "mod_xmpp_hosting", check=False).returncode == 0
    lib = ej.contrib / "mod_xmpp_hosting"
    assert (lib / "ebin" / "mod_xmpp_hosting.beam").is_file()
    assert (lib / "ebin" / "xmpp_hosting_nif.beam").is_file()
    assert (lib / "priv" / "lib" / "xmpp_hosting_nif.so").is_file()
    assert ej.module_loaded()
    # The NIF came from the installed module's priv dir, found through code:priv_dir/1.
    assert ej.eval("xmpp_hosting_nif:so_path().") == f'"{lib}/priv/lib/xmpp_hosting_nif"'
    assert ej.eval("xmpp_hosting_nif:version().").startswith('<<"0.')
    assert f"xmpp_hosting {HOST}: store {ej.database}" in ej.log_file.read_text()


def test_commands_are_listed_by_ejabberdctl(ej):
    help_text = ej.ctl("help", "xmpp_hosting_domain_add", check=False).stdout
    assert "xmpp_hosting_domain_add" in help_text and "domain" in help_text
    listing = ej.ctl("help", "xmpp_hosting", check=False).stdout
    for cmd in ("xmpp_hosting_domain_add", "xmpp_hosting_domain_list", "xmpp_hosting_domain_show",
                "xmpp_hosting_domain_remove"):
        assert cmd in listing


# ---- commands and the shared store ------------------------------------------------------------


def test_domain_added_through_ejabberd_is_listed_by_the_cli(ej):
    r = ej.ctl("xmpp_hosting_domain_add", "customer.example")
    assert r.stdout.strip() == "Added domain customer.example"
    assert ej.database.is_file()
    listed = json.loads(run_cli(ej.database, "domain", "list", "--json").stdout)
    assert isinstance(listed, list)
    assert "customer.example" in [d["name"] for d in listed]
    assert "customer.example" in ej.ctl("xmpp_hosting_domain_list").stdout.split()


def test_domain_added_by_the_cli_is_seen_by_the_running_module(ej):
    run_cli(ej.database, "domain", "add", "from-cli.example")
    assert "from-cli.example" in ej.ctl("xmpp_hosting_domain_list").stdout.split()
    assert ej.ctl("xmpp_hosting_domain_show", "from-cli.example").stdout.startswith("from-cli.example\t")
    ej.ctl("xmpp_hosting_domain_remove", "from-cli.example")
    listed = json.loads(run_cli(ej.database, "domain", "list", "--json").stdout)
    assert "from-cli.example" not in [d["name"] for d in listed]


def test_unicode_domain_is_stored_in_ascii_and_shown_in_both_forms(ej):
    r = ej.ctl("xmpp_hosting_domain_add", "Bücher.Example")
    assert r.stdout.strip() == "Added domain xn--bcher-kva.example"
    fields = ej.ctl("xmpp_hosting_domain_show", "bücher.example").stdout.rstrip("\n").split("\t")
    name, unicode_name, created_at, updated_at, settings = fields
    assert (name, unicode_name) == ("xn--bcher-kva.example", "bücher.example")
    assert int(created_at) == int(updated_at) > 1_600_000_000
    assert json.loads(settings)["registration"]["policy"] == "invite"
    assert "xn--bcher-kva.example" in ej.ctl("xmpp_hosting_domain_list").stdout.split()


def test_remove_then_show_and_remove_again_fail(ej):
    ej.ctl("xmpp_hosting_domain_add", "gone.example")
    assert ej.ctl("xmpp_hosting_domain_remove", "gone.example").stdout.strip() == "Removed domain gone.example"
    assert "gone.example" not in ej.ctl("xmpp_hosting_domain_list").stdout.split()
    out = ctl_fails(ej, "xmpp_hosting_domain_show", "gone.example")
    assert "Error: not_exists: domain not found: gone.example" in out
    out = ctl_fails(ej, "xmpp_hosting_domain_remove", "gone.example")
    assert "Error: not_exists: domain not found: gone.example" in out


def test_invalid_domain_is_a_clear_error_and_the_node_keeps_running(ej):
    for bad, why in [
        ("bad..example", "empty label"),
        ("127.0.0.1", "IP address"),
        ("under_score.example", "only letters, digits and '-'"),
        ("x" * 300 + ".example", "at most 253"),
    ]:
        r = ej.ctl("xmpp_hosting_domain_add", bad, check=False)
        assert r.returncode == 1, r.stdout
        assert r.stdout.startswith("Error: invalid_domain: invalid domain name: "), r.stdout
        assert why in r.stdout
    assert_alive(ej)
    assert not any("bad" in line for line in ej.ctl("xmpp_hosting_domain_list").stdout.split())


def test_duplicate_domain_is_a_conflict(ej):
    ej.ctl("xmpp_hosting_domain_add", "twice.example")
    out = ctl_fails(ej, "xmpp_hosting_domain_add", "TWICE.example.")
    assert "Error: conflict: domain already exists: twice.example" in out


def test_missing_argument_is_a_usage_error(ej):
    r = ej.ctl("xmpp_hosting_domain_add", check=False)
    assert r.returncode != 0
    assert "requires 1 more argument" in r.stdout
    assert_alive(ej)


def test_http_api_uses_ejabberd_status_codes(ej):
    post = ej.api
    assert post("xmpp_hosting_domain_add", {"domain": "api.example"}) == (200, "Added domain api.example")
    status, body = post("xmpp_hosting_domain_add", {"domain": "api.example"})
    assert status == 409 and "already exists" in body["message"]
    status, body = post("xmpp_hosting_domain_show", {"domain": "absent.example"})
    assert status == 404 and "not found" in body["message"]
    status, body = post("xmpp_hosting_domain_list", {})
    assert status == 200 and "api.example" in body


def test_http_api_takes_commands_only_from_the_api_account(ej):
    """Any local process could run every command through /api when loopback alone sufficed."""
    status, _ = http_api_post(ej.http_port, "xmpp_hosting_domain_add", {"domain": "anonymous.example"})
    assert status in (401, 403)
    status, _ = http_api_post(ej.http_port, "registered_users", {"host": HOST})
    assert status in (401, 403)
    user, _ = ej.api_user
    wrong = base64.b64encode(f"{user}:wrong-password".encode()).decode()
    status, _ = http_api_post(ej.http_port, "xmpp_hosting_domain_list", {}, {"Authorization": f"Basic {wrong}"})
    assert status in (401, 403)
    assert "anonymous.example" not in ej.ctl("xmpp_hosting_domain_list").stdout


# ---- the NIF inside the running node ----------------------------------------------------------

H = f'{{ok, H}} = mod_xmpp_hosting:store(<<"{HOST}">>), '


def test_nif_api_shapes(ej):
    out = ej.eval(H + 'xmpp_hosting_nif:add_domain(H, <<"shape.example">>).')
    assert out.startswith("{ok,#{") and 'name => <<"shape.example">>' in out
    for key in ("unicode_name", "settings", "created_at", "updated_at"):
        assert f"{key} =>" in out
    assert ej.eval(H + 'xmpp_hosting_nif:domain(H, <<"absent.example">>).') == "{ok,undefined}"
    assert ej.eval(H + '{ok, L} = xmpp_hosting_nif:domains(H), is_list(L) andalso length(L) > 0.') == "true"
    out = ej.eval(H + 'xmpp_hosting_nif:add_domain(H, <<"shape.example">>).')
    assert out == '{error,{already_exists,<<"domain already exists: shape.example">>}}'
    assert ej.eval(H + 'xmpp_hosting_nif:remove_domain(H, <<"shape.example">>).') == "ok"
    out = ej.eval(H + 'xmpp_hosting_nif:remove_domain(H, <<"shape.example">>).')
    assert out == '{error,{not_found,<<"domain not found: shape.example">>}}'
    out = ej.eval('xmpp_hosting_nif:open(<<"/nonexistent/dir/x.db">>).')
    assert out.startswith("{error,{store,<<") and "unable to open database file" in out


@pytest.mark.parametrize(
    "call",
    [
        'xmpp_hosting_nif:add_domain(H, "customer.example")',  # a list, not a binary
        "xmpp_hosting_nif:add_domain(H, 'customer.example')",
        "xmpp_hosting_nif:add_domain(H, 42)",
        "xmpp_hosting_nif:add_domain(H, <<255, 254, 0>>)",  # not UTF-8
        'xmpp_hosting_nif:domain(H, <<"caf", 233, ".example">>)',  # Latin-1, not UTF-8
        'xmpp_hosting_nif:add_domain(make_ref(), <<"customer.example">>)',  # not a handle
        'xmpp_hosting_nif:add_domain(self(), <<"customer.example">>)',
        "xmpp_hosting_nif:domains(not_a_handle)",
        'xmpp_hosting_nif:open("/tmp/list-path.db")',
        "xmpp_hosting_nif:open(<<1:7>>)",  # a bitstring, not a binary
        'xmpp_hosting_nif:preauthorize_subscription(H, "a@b.example", <<"c@d.example">>, <<"t">>)',
        'xmpp_hosting_nif:preauthorize_subscription(H, <<"a@b.example">>, <<255>>, <<"t">>)',
        'xmpp_hosting_nif:set_upload_limit(H, <<"b.example">>, 42, <<"daily">>, <<"1">>)',
        'xmpp_hosting_nif:set_upload_limit(H, <<"b.example">>, undefined, daily, <<"1">>)',
        'xmpp_hosting_nif:release_keyed_upload(H, <<"/k">>, <<"10">>)',
        'xmpp_hosting_nif:clear_user_upload_limits(H, <<"b.example">>, [])',
    ],
)
def test_wrong_types_raise_badarg_and_the_vm_survives(ej, call):
    out = ej.eval(H + f"try {call} of V -> {{returned, V}} catch C:R -> {{C, R}} end.")
    assert out == "{error,badarg}"
    assert_alive(ej)


def test_huge_binary_is_refused_quickly_and_the_vm_survives(ej):
    out = ej.eval(
        H + "Big = binary:copy(<<\"a\">>, 64 * 1024 * 1024), "
        "{T, R} = timer:tc(fun() -> xmpp_hosting_nif:add_domain(H, Big) end), {T < 5000000, R}."
    )
    assert out.startswith("{true,{error,{invalid_domain,<<\"invalid domain name: the name is 67108864 characters")
    assert_alive(ej)


def test_concurrent_calls_from_many_processes(ej):
    out = ej.eval(
        H + "Self = self(), "
        "Ps = [spawn(fun() -> Self ! {done, N, xmpp_hosting_nif:add_domain(H, "
        "iolist_to_binary([\"c\", integer_to_list(N), \".example\"]))} end) || N <- lists:seq(1, 40)], "
        "Rs = [receive {done, N, R} -> R after 30000 -> timeout end || N <- lists:seq(1, 40)], "
        "{length(Ps), length([ok || {ok, _} <- Rs])}."
    )
    assert out == "{40,40}"
    names = ej.ctl("xmpp_hosting_domain_list").stdout.split()
    assert {f"c{n}.example" for n in range(1, 41)} <= set(names)


def test_store_waits_run_on_dirty_schedulers_and_fail_cleanly(ej):
    """Another process holds the store's write lock: every plain call waits out the busy timeout.

    A plain call is one nobody waits for the answer of in particular (ensure_hosted called directly here): calls
    somebody waits for (commands, registrations, slot decisions) no longer wait on any scheduler
    at all, see test_ejabberd_store_lock.py.

    More callers than there are normal schedulers wait at once. Checked by order, not by a clock:
    each caller says it is calling, then calls; once every caller has said so, the test's own
    process sleeps a few timer ticks (which needs a normal scheduler) and looks at its mailbox:
    no call may have returned yet. Had the NIF run on normal schedulers, the first callers would
    block every scheduler until the busy timeout, so the last "calling" (and the ticks) could only
    come after a call had returned. (The store's 2 s busy timeout is what the callers wait; the
    ticks take a few tens of ms.)
    """
    ej.ctl("xmpp_hosting_domain_list")  # the store file exists
    con = sqlite3.connect(ej.database, isolation_level=None, timeout=10)
    try:
        con.execute("BEGIN IMMEDIATE")
        out = ej.eval(
            H + "N = erlang:system_info(schedulers_online) + 2, Self = self(), "
            "[spawn(fun() -> Self ! {calling, I}, Self ! {nif, xmpp_hosting_nif:ensure_hosted(H, "
            "iolist_to_binary([\"locked\", integer_to_list(I), \".example\"]))} end) "
            "|| I <- lists:seq(1, N)], "
            "[receive {calling, I} -> ok after 20000 -> error({never_called, I}) end || I <- lists:seq(1, N)], "
            "_ = [timer:sleep(10) || _ <- lists:seq(1, 5)], "
            "{messages, Early} = erlang:process_info(self(), messages), "
            "Rs = [receive {nif, R} -> R after 20000 -> timeout end || _ <- lists:seq(1, N)], "
            "{[E || {nif, _} = E <- Early], lists:usort([element(1, element(2, R)) || R <- Rs]), hd(Rs)}."
        )
    finally:
        con.rollback() if con.in_transaction else None
        con.close()
    assert out.startswith("{[],[store],{error,{store,<<"), out  # no call had returned before the ticks
    assert "locked" in out
    assert_alive(ej)
    # Once the lock is gone the same handle works again.
    assert ej.ctl("xmpp_hosting_domain_add", "after-lock.example").returncode == 0


# ---- other ways in ----------------------------------------------------------------------------


def test_modules_config_with_database_option(tmp_path):
    db = tmp_path / "shared" / "hosting.db"
    db.parent.mkdir()
    with Ejabberd(tmp_path / "node", host="cfg.example", install="config", module_options={"database": db}) as node:
        assert node.module_loaded()
        # Loaded from the directory beside ebin/ (no application of that name in the code path).
        assert node.eval("xmpp_hosting_nif:so_path().") == f'"{node.dir}/priv/lib/xmpp_hosting_nif"'
        node.ctl("xmpp_hosting_domain_add", "cfg-customer.example")
        assert db.is_file()
        names = [d["name"] for d in json.loads(run_cli(db, "domain", "list", "--json").stdout)]
        assert names == ["cfg-customer.example"]
    assert not (tmp_path / "node" / "spool" / "xmpp_hosting.db").exists()


def test_missing_nif_library_fails_clearly_in_a_plain_vm(tmp_path):
    """Without the .so the stub module does not load and says where it looked."""
    ebin = tmp_path / "mod_xmpp_hosting" / "ebin"
    ebin.mkdir(parents=True)
    subprocess.run(["erlc", "-o", str(ebin), str(MODULE_SRC / "src" / "xmpp_hosting_nif.erl")], check=True)
    r = subprocess.run(
        ["erl", "-noshell", "-pa", str(ebin), "-eval",
         "io:format(\"~p~n\", [code:ensure_loaded(xmpp_hosting_nif)]), "
         "io:format(\"~p~n\", [catch xmpp_hosting_nif:version()]), halt()."],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "{error,on_load_failure}" in r.stdout
    assert f"cannot load {tmp_path}/mod_xmpp_hosting/priv/lib/xmpp_hosting_nif.so" in r.stdout + r.stderr
    assert "undef" in r.stdout


def test_plain_vm_loads_the_nif_from_priv(tmp_path):
    root = tmp_path / "mod_xmpp_hosting"
    (root / "ebin").mkdir(parents=True)
    (root / "priv" / "lib").mkdir(parents=True)
    subprocess.run(["erlc", "-o", str(root / "ebin"), str(MODULE_SRC / "src" / "xmpp_hosting_nif.erl")], check=True)
    (root / "priv" / "lib" / "xmpp_hosting_nif.so").write_bytes(
        (MODULE_SRC / "priv" / "lib" / "xmpp_hosting_nif.so").read_bytes()
    )
    db = tmp_path / "plain.db"
    r = subprocess.run(
        ["erl", "-noshell", "-pa", str(root / "ebin"), "-eval",
         f'{{ok, H}} = xmpp_hosting_nif:open(<<"{db}">>), '
         'io:format("~p~n", [xmpp_hosting_nif:add_domain(H, <<"plain.example">>)]), '
         'io:format("~p~n", [catch xmpp_hosting_nif:add_domain(H, 1)]), '
         'io:format("~p~n", [xmpp_hosting_nif:domains(H)]), halt().'],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("{ok,#{")
    assert "badarg" in r.stdout
    assert '<<"plain.example">>' in lines[-1]


def test_stop_leaves_no_processes_and_module_install_writes_nothing_into_the_installation(tmp_path):
    node = Ejabberd(tmp_path / "node")
    ejabberd_priv_before = set((node.ejabberd_lib / "priv").rglob("*"))
    epmd_before = subprocess.run(["pgrep", "-x", "epmd"], capture_output=True, text=True).stdout.split()
    with node:
        pid = node.proc.pid
        assert node.module_loaded()
        # 23.01's installer copies our priv/ into code:lib_dir(ejabberd): the node's own app
        # directory, never the installation that other nodes and the admin's server share.
        assert set((node.ejabberd_lib / "priv").rglob("*")) == ejabberd_priv_before
    assert node.proc.poll() is not None
    assert node.stray_processes() == []
    group = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout.split()
    assert group == []
    assert subprocess.run(["pgrep", "-x", "epmd"], capture_output=True, text=True).stdout.split() == epmd_before
    assert set((node.ejabberd_lib / "priv").rglob("*")) == ejabberd_priv_before


def test_module_install_builds_the_nif_with_cargo_when_it_is_not_prebuilt(tmp_path):
    """The sources carry no .so: module_install runs c_src/Makefile, which runs cargo."""
    with Ejabberd(tmp_path / "node", nif_from="make") as node:
        built = node.contrib / "sources" / "xmpp-hosting" / "mod_xmpp_hosting" / "priv" / "lib"
        # The copy of the sources had no priv/lib: the Makefile put cargo's output there.
        assert (built / "xmpp_hosting_nif.so").read_bytes() == (TARGET / "libxmpp_hosting_nif.so").read_bytes()
        assert (node.contrib / "mod_xmpp_hosting" / "priv" / "lib" / "xmpp_hosting_nif.so").is_file()
        assert node.module_loaded()
        assert node.ctl("xmpp_hosting_domain_add", "built.example").returncode == 0


def test_module_uninstall_stops_the_module_and_removes_its_commands(tmp_path):
    with Ejabberd(tmp_path / "node") as node:
        node.ctl("xmpp_hosting_domain_add", "kept.example")
        node.ctl("module_uninstall", "mod_xmpp_hosting")
        assert not node.module_loaded()
        r = node.ctl("xmpp_hosting_domain_list", check=False)
        assert r.returncode != 0 and "unknown command" in r.stdout
        assert_alive(node)
        assert node.eval("persistent_term:get({mod_xmpp_hosting, <<\"test.example\">>}, gone).") == "gone"
        # The store outlives the module: reinstalling finds the domain again.
        node.module_install()
        assert node.ctl("xmpp_hosting_domain_list").stdout.split() == ["kept.example"]


def test_unopenable_store_aborts_startup_with_a_clear_log_line(tmp_path):
    """ejabberd's rule for a module that cannot start at boot: log it and stop the node."""
    bad = tmp_path / "missing-dir" / "hosting.db"
    node = Ejabberd(tmp_path / "node", install="config", module_options={"database": bad})
    with pytest.raises((RuntimeError, TimeoutError)):
        with node:
            pass
    log = node.log_file.read_text()
    assert f"xmpp_hosting test.example: cannot open store {bad}: store error: unable to open database file" in log
    assert node.stray_processes() == []


def test_reload_config_with_another_database_switches_store(tmp_path):
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    with Ejabberd(tmp_path / "node", install="config", module_options={"database": first}) as node:
        node.ctl("xmpp_hosting_domain_add", "one.example")
        node.module_options["database"] = second
        node.write_config()
        node.ctl("reload_config")
        node.ctl("xmpp_hosting_domain_add", "two.example")
        assert node.ctl("xmpp_hosting_domain_list").stdout.split() == ["two.example"]
    assert [d["name"] for d in json.loads(run_cli(first, "domain", "list", "--json").stdout)] == ["one.example"]


def test_harness_accounts_can_log_in_over_c2s(ej):
    """The harness is reused by later features' tests: a created account logs in on the c2s port."""
    import asyncio

    import slixmpp

    ej.register("alice", "s3cret-pass")
    assert ej.ctl("check_account", "alice", HOST, check=False).returncode == 0

    async def login():
        client = slixmpp.ClientXMPP(f"alice@{HOST}", "s3cret-pass")
        # Loopback without certificates: plain TCP and PLAIN are what the test node offers.
        client.plugin["feature_mechanisms"].unencrypted_plain = True
        client.enable_starttls = False
        client.enable_direct_tls = False
        client.enable_plaintext = True
        client.use_ipv6 = False
        ok = asyncio.get_running_loop().create_future()
        client.add_event_handler("session_start", lambda _: ok.done() or ok.set_result(True))
        client.add_event_handler("failed_auth", lambda _: ok.done() or ok.set_result(False))
        client.connect(host="127.0.0.1", port=ej.c2s_port)
        try:
            return await asyncio.wait_for(ok, 20)
        finally:
            client.disconnect()
            await asyncio.sleep(0.2)

    assert asyncio.run(login()) is True
