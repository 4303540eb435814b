"""Domain verification from inside the real ejabberd: DNS runs on the core's worker and the answer
comes back as a message, so no scheduler waits while a slow nameserver is asked."""

import json
import threading

import pytest

from harness import client
from harness.common import run_cli
from harness.held_dns import HeldNameserver
from harness.ejabberd import Ejabberd
from harness.clock import ServerClock
from harness.knot import Knot, point_store_at, zone_text
from dns_scenarios import a_lost_domain_is_logged_and_told_to_the_admins, a_suspended_customer_domain_takes_no_registrations

ZONE = "customer.example"




@pytest.fixture(scope="module")
def ej(tmp_path_factory):
    with Ejabberd(tmp_path_factory.mktemp("ejabberd-dns"), install="config") as node:
        node.register("pinger", "pw-123456")
        yield node


def test_claim_verify_list_and_dns_check_with_ejabberdctl(ej, tmp_path):
    r = ej.ctl("xmpp_hosting_domain_claim", ZONE, "alice")
    assert r.returncode == 0, r.stdout + r.stderr
    token = r.stdout.split('"verify=')[1].split('"')[0]
    body = f'xmpp-hosting-verification TXT "verify={token}"\n_xmpp-client._tcp SRV 1 1 5222 xmpp.provider.example.\n'
    with Knot(tmp_path / "knot", {ZONE: zone_text(ZONE, 1, body)}) as knot:
        point_store_at(ej.database, knot.nameserver)
        r = ej.ctl("xmpp_hosting_domain_verify", ZONE, "alice")
        assert r.stdout.strip() == f"{ZONE} for alice: verified", r.stdout + r.stderr
        assert f"{ZONE} for alice: verified" in ej.ctl("xmpp_hosting_domain_claims").stdout
        rows = ej.ctl("xmpp_hosting_dns_check", ZONE).stdout.splitlines()
        assert f"_xmpp-client._tcp.{ZONE} SRV ok expected 1 1 5222 xmpp.provider.example, found 1 1 5222 xmpp.provider.example" in rows
        assert f"share.{ZONE} CNAME missing expected xmpp.provider.example, found nothing" in rows
    hosted = json.loads(run_cli(ej.database, "--json", "domain", "show", ZONE).stdout)
    assert hosted["settings"]["owner"] == "alice"


def test_a_dead_nameserver_does_not_stall_the_node(ej):
    """While a verification waits for a nameserver that does not answer, the node serves commands
    and clients. Proved by order, not by a clock: the nameserver holds the lookup's queries until
    another ejabberdctl command and a client login have been served, and only then answers; the
    verification must still be waiting at that point and then report what the nameserver said.
    (The DNS timeout is far longer than the test holds the queries: it only guards against a hang.)"""
    ej.ctl("xmpp_hosting_domain_claim", "slow.example", "bob")
    result = {}
    with HeldNameserver() as ns:
        point_store_at(ej.database, ns.address, timeout_ms=120_000)
        worker = threading.Thread(
            target=lambda: result.setdefault("out", ej.ctl("xmpp_hosting_domain_verify", "slow.example", "bob",
                                                    no_timeout=True, timeout=150)))
        worker.start()
        try:
            ns.wait_for_query()  # the verification has started and waits for DNS
            assert ej.ctl("xmpp_hosting_domain_claims").returncode == 0
            assert client.login(ej.c2s_port, f"pinger@{ej.host}", "pw-123456", timeout=90)
            assert "out" not in result, "the verification ended before its nameserver answered"
        finally:
            ns.release()
            worker.join(120)
    out = result["out"].stdout + result["out"].stderr
    assert "slow.example for bob: pending: no TXT record at xmpp-hosting-verification.slow.example" in out, out


def test_bad_names_are_clear_errors(ej):
    r = ej.ctl("xmpp_hosting_domain_claim", "co.uk", "alice", check=False)
    assert r.returncode == 1 and "public suffix" in r.stdout + r.stderr
    r = ej.ctl("xmpp_hosting_domain_verify", "unclaimed.example", "alice", check=False)
    assert r.returncode == 1 and "not found" in r.stdout + r.stderr
    assert ej.is_running()


def test_a_lost_domain_is_logged_and_told_to_the_admins(tmp_path):
    clock = ServerClock(tmp_path)
    with Ejabberd(tmp_path / "ejabberd", install="config", module_options={"recheck_interval": 1},
                  admins=["boss@test.example"], server_env=clock.env) as node:
        node.register("boss", "pw-123456")
        a_lost_domain_is_logged_and_told_to_the_admins(node.database, clock, node.c2s_port, "boss@test.example",
                                                       "pw-123456", lambda: node.log_file.read_text(), tmp_path)


def test_a_suspended_customer_domain_takes_no_registrations(tmp_path):
    clock = ServerClock(tmp_path)
    modules = """  mod_roster: {}
  mod_register:
    allow_modules: [mod_xmpp_hosting_invites]
  mod_xmpp_hosting_invites: {}
"""
    with Ejabberd(tmp_path / "ejabberd", host=ZONE, install="config", module_options={"recheck_interval": 1},
                  extra_modules=modules, extra_config="registration_timeout: infinity\n",
                  server_env=clock.env) as node:
        a_suspended_customer_domain_takes_no_registrations(node.database, clock, node.c2s_port, tmp_path)


def test_a_failed_verification_says_why_and_the_owner_follows_the_proof(ej, tmp_path):
    """ejabberdctl's verify says what it found instead of the proof (the core's `finding`, through the
    NIF); the owner of a customer's domain cannot be renamed through its settings; removing the domain
    ends its claims (issue 10.3, 11.8)."""
    domain = "owner.example"
    token = json.loads(run_cli(ej.database, "--json", "domain", "claim", domain, "--account", "alice").stdout)["claim"]["token"]
    other = "b" * len(token)
    with Knot(tmp_path / "knot", {domain: zone_text(domain, 1, f'xmpp-hosting-verification TXT "verify={other}"\n')}) as knot:
        point_store_at(ej.database, knot.nameserver)
        r = ej.ctl("xmpp_hosting_domain_verify", domain, "alice", check=False)
        finding = f'found TXT "verify={other}" at xmpp-hosting-verification.{domain}, expected TXT "verify={token}"'
        assert "pending" in r.stdout and finding in r.stdout, r.stdout + r.stderr
        knot.replace(domain, zone_text(domain, 2, f'xmpp-hosting-verification TXT "verify={token}"\n'))
        r = ej.ctl("xmpp_hosting_domain_verify", domain, "alice")
        assert r.stdout.strip() == f"{domain} for alice: verified", r.stdout + r.stderr
    r = ej.ctl("xmpp_hosting_domain_set", domain, "owner", "nobody", check=False)
    assert r.returncode != 0 and "domain override" in r.stdout + r.stderr, r.stdout + r.stderr
    assert json.loads(run_cli(ej.database, "--json", "domain", "show", domain).stdout)["settings"]["owner"] == "alice"
    ej.ctl("xmpp_hosting_domain_remove", domain)
    assert json.loads(run_cli(ej.database, "--json", "domain", "claims", domain).stdout) == []
    last = json.loads(run_cli(ej.database, "--json", "domain", "history", domain).stdout)[-1]
    assert (last["to"], last["reason"]) == ("removed", "domain removed by the operator")
