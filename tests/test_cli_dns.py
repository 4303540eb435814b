"""The CLI's domain verification and DNS tester against a real Knot DNS on loopback."""

import json

import pytest

from harness.common import run_cli
from harness.knot import Knot, zone_text

ZONE = "customer.example"


@pytest.fixture
def provider(tmp_path):
    db = tmp_path / "store.sqlite"
    return db


def configure(db, nameserver):
    for key, value in [
        ("dns.nameservers", json.dumps([nameserver])),
        ("dns.provider_zone", "provider.example"),
        ("dns.timeout_ms", "1500"),
        ("dns.xmpp_client", json.dumps({"target": "xmpp.provider.example", "port": 5222, "priority": 5})),
        ("dns.xmpp_server", json.dumps({"target": "xmpp.provider.example", "port": 5269})),
        ("dns.cnames", json.dumps([{"label": "share", "target": "xmpp.provider.example"}])),
    ]:
        run_cli(db, "provider", "set", key, value)


def test_claim_verify_and_dns_check(provider, tmp_path):
    db = provider
    claimed = json.loads(run_cli(db, "--json", "domain", "claim", ZONE, "--account", "alice").stdout)
    token = claimed["claim"]["token"]
    assert claimed["instructions"]["txt"] == f"verify={token}"
    body = (f'xmpp-hosting-verification TXT "verify={token}"\n'
            "_xmpp-client._tcp SRV 5 1 5222 xmpp.provider.example.\n"
            "_xmpp-server._tcp SRV 1 1 5270 xmpp.provider.example.\n")
    with Knot(tmp_path / "knot", {ZONE: zone_text(ZONE, 1, body)}) as knot:
        configure(db, knot.nameserver)
        human = run_cli(db, "domain", "claim", ZONE, "--account", "alice").stdout
        assert f'xmpp-hosting-verification.{ZONE}  TXT    "verify={token}"' in human
        assert f"{token}.v.provider.example." in human
        verified = json.loads(run_cli(db, "--json", "domain", "verify", ZONE, "--account", "alice").stdout)
        assert verified["state"] == "verified"
        hosted = json.loads(run_cli(db, "--json", "domain", "show", ZONE).stdout)
        assert hosted["settings"]["owner"] == "alice"
        r = run_cli(db, "dns", "check", ZONE, check=False)
        assert r.returncode == 3, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["NAME", "TYPE", "RESULT", "EXPECTED", "FOUND"]
        rows = {line.split()[0]: line.split()[2] for line in lines[1:]}
        assert rows == {f"_xmpp-client._tcp.{ZONE}": "ok", f"_xmpp-server._tcp.{ZONE}": "wrong",
                        f"share.{ZONE}": "missing"}
        assert "1 1 5270 xmpp.provider.example" in r.stdout
        history = json.loads(run_cli(db, "--json", "domain", "history", ZONE).stdout)
        assert [(e["from"], e["to"]) for e in history] == [(None, "pending"), ("pending", "verified")]


@pytest.mark.parametrize("name, message", [
    ("co.uk", "public suffix"), ("127.0.0.1", "IP address"), ("a" * 64 + ".example", "longer than 63"),
])
def test_unclaimable_names_are_refused(provider, name, message):
    r = run_cli(provider, "domain", "claim", name, "--account", "alice", check=False)
    assert r.returncode == 1 and message in r.stderr
