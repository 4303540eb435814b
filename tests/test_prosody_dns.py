"""Domain verification from inside the real Prosody: DNS runs on the core's worker, and the
event loop keeps serving clients while a slow nameserver is asked."""

import asyncio
import json
import threading

import pytest

from harness import client
from harness.common import run_cli
from harness.held_dns import HeldNameserver
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
    """While a verification waits for a nameserver that does not answer, the server keeps serving
    clients. Proved by order, not by a clock: the nameserver holds the lookup's queries until a
    client has logged in and been answered several pings, and only then answers; the verification
    must still be waiting at that point and then report what the nameserver said. (The DNS
    timeout is far longer than the test holds the queries: it only guards against a hang. A loop
    that waited for DNS would answer the pings only after the verification ended.)"""
    run_cli(prosody.database, "domain", "claim", ZONE, "--account", "alice")
    shell = {}

    async def pings(c):
        c.register_plugin("xep_0199")
        for _ in range(5):
            await c.plugin["xep_0199"].send_ping(c.boundjid.host, timeout=60)
        return "result" in shell

    with HeldNameserver() as ns:
        point_store_at(prosody.database, ns.address, timeout_ms=120_000)
        worker = threading.Thread(
            target=lambda: shell.setdefault("result", prosody.shell(f'xmpp_hosting:domain_verify("{ZONE}", "alice")')))
        worker.start()
        try:
            ns.wait_for_query()  # the verification has started and waits for DNS
            finished_early = asyncio.run(client._session(prosody.c2s_port, "pinger@localhost.example", "pw-123456",
                                                         pings, 90))
        finally:
            ns.release()
            worker.join(120)
    assert not finished_early, "the verification ended before its nameserver answered"
    out = shell["result"].stdout + shell["result"].stderr
    assert f"{ZONE} for alice: pending: no TXT record at xmpp-hosting-verification.{ZONE}" in out, out


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
