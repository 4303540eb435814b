"""Domain verification from inside the real Prosody: DNS runs on the core's worker, and the
event loop keeps serving clients while a slow nameserver is asked."""

import asyncio
import json
import socket
import threading
import time

import pytest

from harness import client
from harness.common import run_cli
from harness.clock import ServerClock
from harness.knot import Knot, point_store_at, zone_text
from harness.prosody import Prosody
from dns_scenarios import a_lost_domain_is_logged_and_told_to_the_admins, a_suspended_customer_domain_takes_no_registrations

ZONE = "customer.example"




@pytest.fixture
def prosody(tmp_path):
    with Prosody(tmp_path / "prosody", host="localhost.example") as server:
        server.create_user("pinger", "pw-123456")
        yield server


def test_verify_in_the_admin_shell_and_dns_check_with_prosodyctl(prosody, tmp_path):
    token = json.loads(run_cli(prosody.database, "--json", "domain", "claim", ZONE, "--account", "alice").stdout)["claim"]["token"]
    body = f'xmpp-hosting-verification TXT "verify={token}"\n_xmpp-client._tcp SRV 1 1 5222 xmpp.provider.example.\n'
    with Knot(tmp_path / "knot", {ZONE: zone_text(ZONE, 1, body)}) as knot:
        point_store_at(prosody.database, knot.nameserver)
        r = prosody.shell(f'xmpp_hosting:domain_verify("{ZONE}", "alice")')
        assert f"OK: {ZONE} for alice: verified" in r.stdout, r.stdout + r.stderr
        r = prosody.ctl("mod_xmpp_hosting", "dns", "check", ZONE)
        assert r.returncode == 0, r.stderr
        rows = {line.split()[0]: line.split()[2] for line in r.stdout.splitlines() if line.strip().startswith(("_", "share"))}
        assert rows == {f"_xmpp-client._tcp.{ZONE}": "ok", f"share.{ZONE}": "missing"}
        r = prosody.shell(f'xmpp_hosting:domain_claim("{ZONE}", "bob")')
        assert "xmpp-hosting-verification.customer.example  TXT" in r.stdout
        r = prosody.ctl("mod_xmpp_hosting", "domain", "claims")
        assert f"{ZONE} for alice: verified" in r.stdout and f"{ZONE} for bob: pending" in r.stdout, r.stdout
        # The bulk commands answer with summaries (Lua never receives thousands of tables).
        r = prosody.shell("xmpp_hosting:domain_verify_all()")
        assert "2 claim(s) checked: 1 pending, 1 verified" in r.stdout and f"Not verified: {ZONE}" in r.stdout, r.stdout
        r = prosody.ctl("mod_xmpp_hosting", "dns", "check_all")
        assert "1 domain(s) tested: 0 with every record right" in r.stdout and ZONE in r.stdout, r.stdout


def test_a_dead_nameserver_does_not_stall_the_server(prosody):
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # answers nothing, ever
    sink.bind(("127.0.0.1", 0))
    point_store_at(prosody.database, f"127.0.0.1:{sink.getsockname()[1]}", timeout_ms=2000)
    run_cli(prosody.database, "domain", "claim", ZONE, "--account", "alice")
    shell = {}

    def verify():
        started = time.monotonic()
        shell["result"] = prosody.shell(f'xmpp_hosting:domain_verify("{ZONE}", "alice")')
        shell["seconds"] = time.monotonic() - started

    async def session(c):
        await asyncio.sleep(0.5)  # let the verification start
        return await client.ping_until(c, lambda: "result" in shell, interval=0.05, timeout=5)

    worker = threading.Thread(target=verify)
    worker.start()
    try:
        rtts = asyncio.run(client._session(prosody.c2s_port, "pinger@localhost.example", "pw-123456", session, 60))
    finally:
        worker.join(60)
        sink.close()
    # The DNS check took the whole timeout (the TXT and CNAME lookups run at once, 2 s each) ...
    assert shell["seconds"] >= 1.8, shell
    assert "pending (DNS: Timeout)" in shell["result"].stdout, shell["result"].stdout + shell["result"].stderr
    # ... while the server answered every ping promptly.
    assert len(rtts) >= 10, rtts
    assert max(rtts) < 0.1, rtts


def test_a_lost_domain_is_logged_and_told_to_the_admins(tmp_path):
    clock = ServerClock(tmp_path)
    options = {"xmpp_hosting_recheck_interval": 1, "admins": ["admin@localhost.example"]}
    with Prosody(tmp_path / "prosody", host="localhost.example", options=options, server_env=clock.env) as server:
        server.create_user("admin", "pw-123456")
        a_lost_domain_is_logged_and_told_to_the_admins(server.database, clock, server.c2s_port,
                                                       "admin@localhost.example", "pw-123456", server.log_text,
                                                       tmp_path)


def test_a_suspended_customer_domain_takes_no_registrations(tmp_path):
    clock = ServerClock(tmp_path)
    with Prosody(tmp_path / "prosody", host=ZONE, host_modules=["xmpp_hosting_invites"],
                 options={"xmpp_hosting_recheck_interval": 1}, server_env=clock.env) as server:
        a_suspended_customer_domain_takes_no_registrations(server.database, clock, server.c2s_port, tmp_path)


def test_a_failed_verification_says_why_and_the_owner_follows_the_proof(prosody, tmp_path):
    """prosodyctl's verify says what it found instead of the proof (the core's `finding`, through the
    Lua binding); the owner of a customer's domain cannot be renamed through its settings; removing
    the domain ends its claims (issue 10.3, 11.8)."""
    token = json.loads(run_cli(prosody.database, "--json", "domain", "claim", ZONE, "--account", "alice").stdout)["claim"]["token"]
    other = "b" * len(token)
    with Knot(tmp_path / "knot", {ZONE: zone_text(ZONE, 1, f'xmpp-hosting-verification TXT "verify={other}"\n')}) as knot:
        point_store_at(prosody.database, knot.nameserver)
        r = prosody.ctl("mod_xmpp_hosting", "domain", "verify", ZONE, "alice")
        finding = f'found TXT "verify={other}" at xmpp-hosting-verification.{ZONE}, expected TXT "verify={token}"'
        assert "pending" in r.stdout and finding in r.stdout, r.stdout + r.stderr
        r = prosody.shell(f'xmpp_hosting:domain_verify("{ZONE}", "alice")')
        assert finding in r.stdout, r.stdout + r.stderr
        knot.replace(ZONE, zone_text(ZONE, 2, f'xmpp-hosting-verification TXT "verify={token}"\n'))
        r = prosody.ctl("mod_xmpp_hosting", "domain", "verify", ZONE, "alice")
        assert f"{ZONE} for alice: verified" in r.stdout and "found" not in r.stdout, r.stdout + r.stderr
    r = prosody.ctl("mod_xmpp_hosting", "domain", "set", ZONE, "owner", "nobody")
    assert r.returncode != 0 and "domain override" in r.stdout + r.stderr, r.stdout + r.stderr
    assert json.loads(run_cli(prosody.database, "--json", "domain", "show", ZONE).stdout)["settings"]["owner"] == "alice"
    r = prosody.ctl("mod_xmpp_hosting", "domain", "remove", ZONE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(run_cli(prosody.database, "--json", "domain", "claims", ZONE).stdout) == []
    last = json.loads(run_cli(prosody.database, "--json", "domain", "history", ZONE).stdout)[-1]
    assert (last["to"], last["reason"]) == ("removed", "domain removed by the operator")
