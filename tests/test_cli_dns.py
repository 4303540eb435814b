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
        assert lines[0].split() == ["NAME", "TYPE", "RESULT", "DNSSEC", "EXPECTED", "FOUND"]
        assert all(line.split()[3] == "-" for line in lines[1:]), "no DNSSEC status when the provider does not validate"
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


def test_a_failed_verification_says_what_it_found_and_exits_non_zero(provider, tmp_path):
    db = provider
    claimed = json.loads(run_cli(db, "--json", "domain", "claim", "bad.test", "--account", "alice").stdout)
    token = claimed["claim"]["token"]
    other = "a" * len(token)
    with Knot(tmp_path / "knot", {"bad.test": zone_text("bad.test", 1, f'xmpp-hosting-verification TXT "verify={other}"\n'),
                                  ZONE: zone_text(ZONE, 1, "")}) as knot:
        configure(db, knot.nameserver)
        r = run_cli(db, "domain", "verify", "bad.test", "--account", "alice", check=False)
        assert r.returncode == 3, r
        expected = (f'found TXT "verify={other}" at xmpp-hosting-verification.bad.test, '
                    f'expected TXT "verify={token}" or CNAME to {token}.v.provider.example')
        assert "pending" in r.stdout and expected in r.stdout, r.stdout
        as_json = json.loads(run_cli(db, "--json", "domain", "verify", "bad.test", "--account", "alice", check=False).stdout)
        assert as_json["state"] == "pending" and as_json["finding"] == expected
        run_cli(db, "domain", "claim", ZONE, "--account", "bob")
        r = run_cli(db, "domain", "verify", ZONE, "--account", "bob", check=False)
        assert r.returncode == 3 and f"no TXT or CNAME record at xmpp-hosting-verification.{ZONE}" in r.stdout, r.stdout
        # `domain claims` keeps saying why.
        assert f"no TXT or CNAME record at xmpp-hosting-verification.{ZONE}" in run_cli(db, "domain", "claims").stdout


def suspended(db, knot, token):
    """Verifies ZONE for alice, removes the proof and lets the (zero) grace period run out."""
    run_cli(db, "provider", "set", "dns.grace_period", "0")
    assert run_cli(db, "domain", "verify", ZONE, "--account", "alice").returncode == 0
    knot.replace(ZONE, zone_text(ZONE, 2, ""))
    for state in ("lost", "suspended"):
        r = run_cli(db, "--json", "domain", "verify", ZONE, "--account", "alice", check=False)
        assert r.returncode == 3 and json.loads(r.stdout)["state"] == state, r


def test_a_suspension_is_lifted_only_by_a_proof_or_a_recorded_override(provider, tmp_path):
    db = provider
    token = json.loads(run_cli(db, "--json", "domain", "claim", ZONE, "--account", "alice").stdout)["claim"]["token"]
    with Knot(tmp_path / "knot", {ZONE: zone_text(ZONE, 1, f'xmpp-hosting-verification TXT "verify={token}"\n')}) as knot:
        configure(db, knot.nameserver)
        suspended(db, knot, token)
    assert run_cli(db, "invite", "create", ZONE, check=False).returncode == 1
    r = run_cli(db, "domain", "set", ZONE, "owner", "nobody", check=False)
    assert r.returncode == 1 and "not allowed" in r.stderr and "domain override" in r.stderr, r.stderr
    r = run_cli(db, "invite", "create", ZONE, check=False)
    assert r.returncode == 1 and "suspended" in r.stderr, r.stderr
    r = run_cli(db, "domain", "override", ZONE, "--account", "alice", "--reason", "registrar outage, ticket 42")
    assert f"{ZONE} for alice: verified" in r.stdout
    assert run_cli(db, "invite", "create", ZONE).returncode == 0
    last = json.loads(run_cli(db, "--json", "domain", "history", ZONE).stdout)[-1]
    assert (last["from"], last["to"], last["reason"]) == ("suspended", "verified",
                                                          "operator override: registrar outage, ticket 42")


def test_removing_a_domain_ends_its_claims(provider, tmp_path):
    """Issue 11.8: an operator's `domain remove` used to be undone by the next proof change."""
    db = provider
    token = json.loads(run_cli(db, "--json", "domain", "claim", ZONE, "--account", "alice").stdout)["claim"]["token"]
    with Knot(tmp_path / "knot", {ZONE: zone_text(ZONE, 1, f'xmpp-hosting-verification TXT "verify={token}"\n')}) as knot:
        configure(db, knot.nameserver)
        run_cli(db, "provider", "set", "dns.recheck_interval", "60")
        run_cli(db, "domain", "verify", ZONE, "--account", "alice")
        run_cli(db, "domain", "remove", ZONE)
        r = run_cli(db, "domain", "verify", ZONE, "--account", "alice", check=False)
        assert r.returncode == 1 and "claim not found" in r.stderr, r
        assert json.loads(run_cli(db, "--json", "dns", "recheck").stdout) == []
        assert json.loads(run_cli(db, "--json", "domain", "list").stdout) == []
        assert json.loads(run_cli(db, "--json", "domain", "claims").stdout) == []
    history = json.loads(run_cli(db, "--json", "domain", "history", ZONE).stdout)
    assert (history[-1]["from"], history[-1]["to"], history[-1]["reason"]) == (
        "verified", "removed", "domain removed by the operator")


def test_a_previous_owner_takes_the_domain_back_only_once_the_new_owners_proof_is_gone(provider, tmp_path):
    """Issue 11 (takeover): the newer proof wins only when the current owner's proof is gone."""
    db = provider
    token = {a: json.loads(run_cli(db, "--json", "domain", "claim", ZONE, "--account", a).stdout)["claim"]["token"]
             for a in ("alice", "bob")}

    def publish(knot, serial, *accounts):
        body = "".join(f'xmpp-hosting-verification TXT "verify={token[a]}"\n' for a in accounts)
        knot.replace(ZONE, zone_text(ZONE, serial, body))

    def verify(account):
        r = run_cli(db, "--json", "domain", "verify", ZONE, "--account", account, check=False)
        return json.loads(r.stdout)

    def owner():
        return json.loads(run_cli(db, "--json", "domain", "show", ZONE).stdout)["settings"]["owner"]

    with Knot(tmp_path / "knot", {ZONE: zone_text(ZONE, 1, "")}) as knot:
        configure(db, knot.nameserver)
        publish(knot, 2, "alice")
        assert verify("alice")["state"] == "verified" and owner() == "alice"
        publish(knot, 3, "bob")  # the domain changed hands; alice's record went
        assert verify("bob")["state"] == "verified" and owner() == "bob"
        publish(knot, 4, "alice", "bob")  # alice's record is back beside bob's
        claim = verify("alice")
        assert claim["state"] == "suspended" and owner() == "bob", claim
        assert "current owner (bob) still publishes its proof" in claim["finding"], claim
        r = run_cli(db, "domain", "verify", ZONE, "--account", "alice", check=False)
        assert r.returncode == 3 and "current owner (bob)" in r.stdout, r.stdout
        publish(knot, 5, "alice")  # bob's record is gone: the newer proof wins
        assert verify("alice")["state"] == "verified" and owner() == "alice"
    states = {c["account"]: c["state"] for c in json.loads(run_cli(db, "--json", "domain", "claims", ZONE).stdout)}
    assert states == {"alice": "verified", "bob": "suspended"}
